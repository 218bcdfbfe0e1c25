// `r1v demo` is the main job: it must run on the CPU and report correct results.
import assert from 'node:assert/strict';

import { runDemo } from '../lib/cli/demo.js';

describe('r1v demo', () => {
  it('runs on the CPU: GEMM matches float64, the fused LM head matches the materialised one', async () => {
    const lines: string[] = [];
    const report = await runDemo({ device: 'cpu', size: 128, modelSteps: 25, log: (line) => lines.push(line) });
    assert.equal(report.device, 'cpu');
    assert.ok(report.maxRelativeError < 1e-5, `GEMM error ${report.maxRelativeError}`);
    assert.ok(report.fusedHeadRelativeError < 1e-4, `fused head error ${report.fusedHeadRelativeError}`);
    assert.deepEqual(Object.keys(report.kernelMs).sort(),
      ['attention', 'attentionBackward', 'connector', 'linearTokenStats', 'linearTokenStatsBackward']);
    assert.ok(Object.values(report.gflops).every((g) => g > 0));
    assert.ok(lines.some((l) => l.includes('(ok)')) && !lines.some((l) => l.includes('TOO LARGE')));
    // the tiny VLM's SFT on MNIST digits lowers the answer loss (from ≈ ln V) and generation runs
    assert.ok(report.model.lossBefore > 10 && report.model.lossAfter < report.model.lossBefore / 3,
      `answer loss ${report.model.lossBefore} → ${report.model.lossAfter}`);
    assert.ok(lines.some((l) => /greedy answers after SFT: \d+\/10 digits right/.test(l)));
  });
});
