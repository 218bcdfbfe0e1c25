// The trainer's small pieces against hand-computed values: learning-rate schedules, DAPO's
// overlong penalty and dynamic-sampling filter, the data order (reproducible, curriculum),
// micro-batching, and the packing of prompt + response sequences (scored rows = responses).
import assert from 'node:assert/strict';

import { readFileSync } from 'node:fs';

import {
  configKeys, Engine, informativeGroups, learningRateSchedule, microBatchShare, microBatches, overlongPenalty, packSequences, responseOffsets,
  VisionLanguageModel, type RolloutSample,
} from '../lib/index.js';
import { RowSampler } from '../lib/train/state.js';
import { expectR1VError, rng } from './helpers.js';

describe('train: pieces', () => {
  it('learning-rate schedules: warmup, then constant, linear or cosine decay to minLr', () => {
    const next = rng('schedule');
    const lr = 0.1 + next(), minLr = lr * next() * 0.5, warmup = 3, total = 13;
    const constant = learningRateSchedule({ kind: 'constant', lr, warmupSteps: warmup });
    const linear = learningRateSchedule({ kind: 'linear', lr, warmupSteps: warmup, totalSteps: total, minLr });
    const cosine = learningRateSchedule({ kind: 'cosine', lr, warmupSteps: warmup, totalSteps: total, minLr });
    for (let s = 0; s < 20; s++) {
      const warm = s < warmup ? (lr * (s + 1)) / (warmup + 1) : undefined;
      const p = Math.min(1, Math.max(0, (s - warmup) / (total - warmup)));
      assert.ok(Math.abs(constant(s) - (warm ?? lr)) < 1e-15);
      assert.ok(Math.abs(linear(s) - (warm ?? lr - (lr - minLr) * p)) < 1e-12, `linear(${s})`);
      assert.ok(Math.abs(cosine(s) - (warm ?? minLr + (lr - minLr) * (1 + Math.cos(Math.PI * p)) / 2)) < 1e-12, `cosine(${s})`);
    }
    assert.ok(Math.abs(cosine(warmup) - lr) < 1e-12 && Math.abs(cosine(total) - minLr) < 1e-12);
    expectR1VError(() => learningRateSchedule({ kind: 'linear', lr: 1, warmupSteps: 5, totalSteps: 5 }), 'ARGUMENT', /totalSteps/);
    expectR1VError(() => learningRateSchedule({ kind: 'cosine', lr: 1 }), 'ARGUMENT', /totalSteps/);
    expectR1VError(() => learningRateSchedule({ lr: 1, minLr: 2 }), 'ARGUMENT', /minLr/);
  });

  it("DAPO's overlong penalty ramps over the buffer; dynamic sampling keeps groups whose rewards differ", () => {
    const o = { buffer: 4, penalty: 0.5, maxNewTokens: 10 };
    assert.deepEqual([6, 7, 8, 10].map((l) => overlongPenalty(l, o)), [0, -0.125, -0.25, -0.5]);
    const sample = (group: number, reward: number) => ({ group, reward } as RolloutSample);
    const groups = informativeGroups([sample(0, 1), sample(0, 1), sample(1, 0), sample(1, 1), sample(2, 0.5), sample(2, 0.5), sample(3, 0), sample(3, 1e-9)]);
    assert.deepEqual([...groups].sort(), [1, 3]);
  });

  it('the data order is reproducible per (seed, epoch), covers every row once per epoch, and the curriculum goes easy to hard', () => {
    const rows = Array.from({ length: 11 }, (_, i) => ({ question: `q${i}`, answer: String(i), difficulty: (i * 7) % 5 }));
    const a = new RowSampler(rows, 4, 'none'), b = new RowSampler(rows, 4, 'none');
    const first = a.next(11).map((r) => r.answer), again = b.next(11).map((r) => r.answer);
    assert.deepEqual(first, again);
    assert.deepEqual([...first].sort(), rows.map((r) => r.answer).sort());
    assert.notDeepEqual(a.next(11).map((r) => r.answer), first, 'the next epoch is another permutation');
    const c = new RowSampler(rows, 4, 'none');
    c.next(5);
    const resumed = new RowSampler(rows, 4, 'none');
    resumed.restore(c.cursor);
    assert.deepEqual(resumed.next(9).map((r) => r.answer), c.next(9).map((r) => r.answer));
    const easy = new RowSampler(rows, 4, 'difficulty').next(11).map((r) => r.difficulty);
    assert.deepEqual(easy, [...easy].sort((x, y) => x! - y!));
  });

  it('micro-batches hold whole sequences within the token budget; shares add up to 1', () => {
    const next = rng('micro');
    const sizes = Array.from({ length: 20 }, () => 1 + Math.floor(next() * 30));
    const budget = 40;
    const parts = microBatches(sizes, (n) => n, budget);
    assert.deepEqual(parts.flat(), sizes);
    for (const p of parts) assert.ok(p.length === 1 || p.reduce((a, b) => a + b, 0) <= budget);
    const whole = { sequences: sizes.length, tokens: sizes.reduce((a, b) => a + b, 0) };
    for (const mode of ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'] as const) {
      const total = parts.reduce((a, p) => a + microBatchShare(mode, { sequences: p.length, tokens: p.reduce((x, y) => x + y, 0) }, whole), 0);
      assert.ok(Math.abs(total - 1) < 1e-12, mode);
    }
  });

  it('a packed prompt + response batch scores exactly the response tokens, in order', async () => {
    const next = rng('pack');
    const seqs = Array.from({ length: 4 }, () => ({
      promptIds: Int32Array.from({ length: 1 + Math.floor(next() * 5) }, () => Math.floor(next() * 50)),
      responseIds: Int32Array.from({ length: 1 + Math.floor(next() * 4) }, () => Math.floor(next() * 50)),
    }));
    const batch = packSequences(seqs);
    const scored = Array.from(batch.targets).filter((t) => t !== -100);
    assert.deepEqual(scored, seqs.flatMap((s) => Array.from(s.responseIds)));
    const cu = responseOffsets(seqs);
    assert.equal(cu[cu.length - 1], scored.length);
    // The model scores those rows: logprobs come out in the same order.
    using e = Engine.create({ device: 'cpu', seed: 1 });
    using m = VisionLanguageModel.create(e, {
      model_type: 'qwen2', vocab_size: 50, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2,
      num_key_value_heads: 1, max_position_embeddings: 32, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: true, hidden_act: 'silu',
    }, { seed: 2 });
    const f = await m.forward(batch);
    assert.equal(f.logprobs.length, scored.length);
    for (const [i, s] of seqs.entries()) {
      const alone = await m.forward(packSequences([s]));
      assert.deepEqual(Array.from(f.logprobs.slice(cu[i]!, cu[i + 1]!)).map((x) => x.toFixed(4)), Array.from(alone.logprobs).map((x) => x.toFixed(4)));
    }
  });

  it('docs/config.md lists every key of the training config (npm run docs:config)', () => {
    const page = readFileSync(new URL('../docs/config.md', import.meta.url), 'utf8');
    const keys = configKeys();
    assert.ok(keys.length > 50);
    for (const k of keys) assert.ok(page.includes(`| \`${k.path}\` |`), `docs/config.md lacks ${k.path} (run npm run docs:config)`);
  });
});
