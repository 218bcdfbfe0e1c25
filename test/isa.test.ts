// The hand-vectorised CPU helpers (vec_math: exp, max, dot, axpy; AdamW's AVX2 path) choose
// AVX-512, AVX2 or portable code from R1V_CPU_ISA. This runs the test files of the ops built
// on them again in child processes forced onto each lower path, on one thread (attention,
// matmul and the norms have their own checks; plain loops compiled with R1V_VECTOR_CLONES
// follow the CPU itself).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const files = ['token_stats.test.ts', 'connector.test.ts', 'elementwise.test.ts', 'optimizer.test.ts'].map((f) => fileURLToPath(new URL(`./${f}`, import.meta.url)));
const mocha = fileURLToPath(new URL('../node_modules/mocha/bin/mocha.js', import.meta.url));

describe('CPU ISA paths of the row kernels', () => {
  for (const isa of ['avx2', 'generic']) {
    it(`token statistics, connector, elementwise and optimizer tests pass on the ${isa} path, 1 thread`, function () {
      this.timeout(300_000);
      const result = spawnSync(
        process.execPath,
        [mocha, '--no-config', '--node-option', 'import=tsx', '--timeout', '120000', '--reporter', 'dot', ...files],
        { env: { ...process.env, R1V_CPU_ISA: isa, R1V_NUM_THREADS: '1' }, encoding: 'utf8' },
      );
      assert.equal(result.status, 0, `R1V_CPU_ISA=${isa}:\n${result.stdout}\n${result.stderr}`);
      const passing = Number(/(\d+) passing/.exec(result.stdout)?.[1] ?? 0);
      assert.ok(passing >= 30, `only ${passing} tests ran on ${isa}`);
      assert.doesNotMatch(result.stdout, /failing/);
    });
  }
});
