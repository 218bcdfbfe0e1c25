// Worker threads that load r1v and end in every state (nothing made, an engine, tensors,
// work queued, awaited, failed, collected, disposed; ending on their own, by process.exit
// or terminated mid-work; 30 cycles; two at once), with the main thread idle (the addon is
// then unloaded with the worker) or using r1v itself. Each plan runs in child processes
// (fixtures/worker-lifecycle.mjs), which must exit with code 0 and no signal.
//
// Starting tsx in every worker costs about half a second, so the workers load the package
// from a transpiled copy of lib/ made once here (TypeScript's transpileModule, no checks).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import ts from 'typescript';

import { addonCandidates } from '../lib/core/native.js';
import { rng } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const fixture = fileURLToPath(new URL('./fixtures/worker-lifecycle.mjs', import.meta.url));
const RUNS = 5;
const PARALLEL = 2;

/** lib/ as JavaScript under a temporary directory that resolves packages from ours. */
function transpileLib(): string {
  const dir = mkdtempSync(join(tmpdir(), 'r1v-worker-lib-'));
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  const compilerOptions = { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 };
  for (const file of readdirSync(join(root, 'lib'), { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts')) continue;
    const { outputText } = ts.transpileModule(readFileSync(join(root, 'lib', file), 'utf8'), { compilerOptions });
    const out = join(dir, 'lib', file.replace(/\.ts$/, '.js'));
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, outputText);
  }
  return dir;
}

interface Report {
  codes: number[];
  messages?: Array<{ scenario: string; error?: number }>;
  mainError?: number;
}

interface ChildRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runChild(args: string[], env: NodeJS.ProcessEnv): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', fixture, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
}

describe('worker threads that load r1v end without taking the process down', function () {
  this.timeout(120_000);
  let libDir: string;
  let env: NodeJS.ProcessEnv;
  const next = rng('worker lifecycle');

  before(function () {
    this.timeout(60_000);
    const addon = addonCandidates().find((p) => existsSync(p));
    assert.ok(addon, 'the addon is built');
    libDir = transpileLib();
    env = { ...process.env, R1V_ADDON: addon };
  });

  after(() => {
    if (libDir) rmSync(libDir, { recursive: true, force: true });
  });

  /** RUNS child processes of one plan, PARALLEL at a time; returns their reports. */
  async function runPlan(plan: string, main: 'idle' | 'loads'): Promise<Report[]> {
    const lib = pathToFileURL(join(libDir, 'lib') + '/').href;
    const reports: Report[] = [];
    const queue = Array.from({ length: RUNS }, () => Math.floor(next() * 2 ** 30));
    const lanes = Array.from({ length: PARALLEL }, async () => {
      for (let seed = queue.pop(); seed !== undefined; seed = queue.pop()) {
        const run = await runChild([lib, plan, main, String(seed)], env);
        const what = `${plan} (main ${main}, seed ${seed}): status ${run.status}, signal ${run.signal}\n${run.stderr}`;
        assert.equal(run.signal, null, what);
        assert.equal(run.status, 0, what);
        const last = run.stdout.trim().split('\n').at(-1) ?? '';
        reports.push(JSON.parse(last) as Report);
      }
    });
    await Promise.all(lanes);
    assert.equal(reports.length, RUNS);
    return reports;
  }

  function checkErrors(reports: Report[], scenario: string): void {
    for (const r of reports) {
      const m = r.messages?.find((x) => x.scenario === scenario);
      assert.ok(m && typeof m.error === 'number', `${scenario} reported its product: ${JSON.stringify(r)}`);
      assert.ok(m.error < 1e-5, `${scenario}: relative error ${m.error}`);
      if (r.mainError !== undefined) assert.ok(r.mainError < 1e-5, `main thread: relative error ${r.mainError}`);
    }
  }

  for (const scenario of ['import', 'engine', 'tensors', 'queued', 'failed', 'exit']) {
    it(`${scenario}: the worker ends on its own (main thread idle), ${RUNS} runs`, async () => {
      for (const r of await runPlan(scenario, 'idle')) {
        assert.deepEqual(r.codes, [0]);
        assert.equal(r.messages?.[0]?.scenario, scenario);
      }
    });
  }

  for (const scenario of ['awaited', 'disposed', 'collected']) {
    it(`${scenario}: the worker's product is right and it ends on its own (main thread idle), ${RUNS} runs`, async () => {
      const reports = await runPlan(scenario, 'idle');
      for (const r of reports) assert.deepEqual(r.codes, [0]);
      checkErrors(reports, scenario);
    });
  }

  it(`busy: a worker terminated mid-work (main thread idle), ${RUNS} runs`, async () => {
    for (const r of await runPlan('busy', 'idle')) assert.deepEqual(r.codes, [1]);
  });

  it(`concurrent: one worker terminated mid-work while another computes (main thread idle), ${RUNS} runs`, async () => {
    const reports = await runPlan('concurrent', 'idle');
    for (const r of reports) assert.deepEqual(r.codes, [1, 0]);
    checkErrors(reports, 'awaited');
  });

  it(`cycles: 30 workers created and terminated mid-work in one process (main thread idle), ${RUNS} runs`, async () => {
    for (const r of await runPlan('cycles', 'idle')) assert.deepEqual(r.codes, Array(30).fill(1));
  });

  for (const scenario of ['queued', 'collected', 'busy', 'cycles']) {
    it(`${scenario} while the main thread uses r1v too, ${RUNS} runs`, async () => {
      const reports = await runPlan(scenario, 'loads');
      for (const r of reports) {
        assert.ok(r.codes.every((c) => c === (scenario === 'busy' || scenario === 'cycles' ? 1 : 0)), JSON.stringify(r.codes));
        assert.ok(r.mainError !== undefined && r.mainError < 1e-5, `main thread: relative error ${r.mainError}`);
      }
      if (scenario === 'collected') checkErrors(reports, scenario);
    });
  }
});
