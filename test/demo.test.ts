// The demo (r1v demo): its world (disjoint train/test digits, answers, traces the rewards accept,
// text prompts laid out like the image's tokens), its configs (the example's YAML, scaled; the
// control sees as many samples as GRPO), and a miniature run of the whole pipeline with a report.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { accuracyReward, formatReward } from '../lib/index.js';
import { demoConfigs, demoModelConfig, demoTokenizer } from '../lib/cli/demo/configs.js';
import { runDemo } from '../lib/cli/demo/index.js';
import { PRESETS, STAGES } from '../lib/cli/demo/pipeline.js';
import { answerOf, drawProblem, makeRows, traceOf, TRAIN_SAMPLES_PER_DIGIT } from '../lib/cli/demo/world.js';
import { rng } from './helpers.js';

describe('demo: visual arithmetic on MNIST', function () {
  this.timeout(300_000);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'r1v-demo-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('draws train and test problems from disjoint digit samples, with answers and traces the rewards accept', async () => {
    const next = rng('demo-world');
    for (const split of ['train', 'test'] as const) {
      for (let i = 0; i < 50; i++) {
        const p = drawProblem(next, split);
        assert.ok(p.digits.length === 2 || p.digits.length === 3);
        for (const s of p.samples) assert.ok(split === 'train' ? s < TRAIN_SAMPLES_PER_DIGIT : s >= TRAIN_SAMPLES_PER_DIGIT);
        assert.equal(p.image.width * p.image.height, p.image.data.length);
        // The cells of the grid hold the digits: an occupied cell has ink, a blank one none.
        for (let cell = 0; cell < 4; cell++) {
          let ink = 0;
          for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) ink += p.image.data[(Math.floor(cell / 2) * 28 + y) * 56 + (cell % 2) * 28 + x]!;
          assert.equal(ink > 0, cell < p.digits.length, `cell ${cell} of ${p.digits}`);
        }
      }
    }
    assert.equal(answerOf('sum', [7, 3, 5]), '15');
    assert.equal(answerOf('largest', [2, 9, 0]), '9');
    assert.equal(traceOf('sum', [7, 3, 5], true), '<think>The digits are 7, 3 and 5. 7 + 3 = 10. 10 + 5 = 15. Check: 15 - 5 = 10.</think> \\boxed{15}');
    const accuracy = accuracyReward(), format = formatReward();
    for (const row of makeRows(40, 3, { split: 'train', kinds: ['sum', 'largest', 'transcribe'], mode: 'image', withResponse: true })) {
      const sample = { text: row.response!, row, step: 0 };
      assert.equal(await accuracy.fn(sample), 1, row.response);
      assert.equal(await format.fn(sample), 1, row.response);
    }
    const text = makeRows(5, 4, { split: 'train', kinds: ['sum'], mode: 'text', withResponse: false });
    for (const row of text) {
      const digits = row.digits as number[];
      assert.equal(row.question, `<img>${digits.join('')}${'.'.repeat(4 - digits.length)}</img>\nWhat is the sum of the digits?`);
      assert.equal(row.images, undefined);
    }
  });

  it("scales the example's configs; the control sees as many samples as GRPO; the model config fits the tokenizer", async () => {
    const tokenizer = await demoTokenizer(join(dir, 'tok'));
    const model = await demoModelConfig(tokenizer);
    assert.equal((model.llm_config as { vocab_size: number }).vocab_size, tokenizer.vocabSize);
    for (const preset of [PRESETS.quick, PRESETS.full]) {
      const c = await demoConfigs(preset, 'cpu');
      assert.deepEqual(Object.keys(c).sort(), STAGES.map((s) => s.name).sort());
      const grpo = c['4-grpo'].stages[0]!, control = c['control-sft'].stages[0]!;
      assert.ok(Math.abs(control.steps * control.batch.prompts - grpo.steps * grpo.batch.prompts * grpo.batch.samplesPerPrompt) <= control.batch.prompts);
      assert.deepEqual(c['2-align'].stages[0]!.trainable, { vision: true, connector: true, language: false });
      assert.deepEqual(c['5-connector'].stages[0]!.trainable, { vision: false, connector: true, language: false });
    }
  });

  it('runs every stage in miniature and writes the report', async () => {
    const out = join(dir, 'run');
    const r = await runDemo({
      device: 'cpu', out, seeds: 1,
      preset: { name: 'quick', stepsScale: 0.01, rows: { text: 32, align: 32, coldStart: 16, rl: 16, test: 8 } },
    });
    assert.equal(r.stopped, false);
    assert.deepEqual(r.table.map((row) => row.stage), STAGES.map((s) => s.name));
    for (const row of r.table) assert.ok(row.mean >= 0 && row.mean <= 1);
    assert.ok(existsSync(r.reportPath));
    const html = await readFile(r.reportPath, 'utf8');
    for (const s of STAGES) assert.match(html, new RegExp(s.name));
    for (const s of STAGES) assert.ok(existsSync(join(out, 'seed-1', s.name, 'metrics.jsonl')), s.name);
  });
});
