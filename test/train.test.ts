// The RL trainer end to end on a toy task (copy the second digit) with a tiny model on the CPU:
// cold-start SFT then GRPO raises the held-out reward; PPO with a critic learns too; a
// micro-batched update equals the one-batch update; a run stopped and resumed reaches bitwise
// the parameters of an uninterrupted one; a non-finite loss skips the step; bad rows are
// skipped and counted; the event loop stays responsive.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  AdamW, Engine, loadTrainConfig, parseTrainConfig, policyUpdate, readMetrics, rollout, score, advantages, Trainer,
  VisionLanguageModel, type TrainConfigInput,
} from '../lib/index.js';
import { toyTask, type ToyTask } from './fixtures/toy-task.js';
import { cudaAvailable, expectR1VError, expectR1VRejection, relativeError } from './helpers.js';

function stages(rl: Partial<TrainConfigInput['stages'][number]> = {}, rlSteps = 60, sftSteps = 40): TrainConfigInput['stages'] {
  return [
    { name: 'warmup', kind: 'sft', steps: sftSteps, optimizer: { lr: 3e-3, weightDecay: 0 }, batch: { prompts: 32, microBatchTokens: 4096 } },
    {
      name: 'grpo', kind: 'rl', steps: rlSteps, optimizer: { lr: 2e-3, weightDecay: 0, maxGradNorm: 1 },
      batch: { prompts: 16, samplesPerPrompt: 8, microBatchTokens: 4096 },
      rollout: { maxNewTokens: 2, temperature: 1 }, rewards: [{ name: 'copy', weight: 1 }], ...rl,
    },
  ];
}

async function heldOutReward(t: Trainer, task: ToyTask): Promise<number> {
  const r = await rollout(t.model, task.heldOut, { tokenizer: task.tokenizer, samplesPerPrompt: 4, maxNewTokens: 2, temperature: 1, seed: 99 });
  await score(r.samples, [{ name: 'copy', weight: 1, fn: task.reward }], { step: 0 });
  return r.samples.reduce((a, s) => a + s.reward, 0) / r.samples.length;
}

describe('train: RL trainer on a toy task (CPU)', function () {
  this.timeout(600_000);
  let task: ToyTask;
  let runs: string;
  before(async () => {
    task = await toyTask();
    runs = await mkdtemp(join(tmpdir(), 'r1v-runs-'));
  });
  after(async () => {
    await task.cleanup();
    await rm(runs, { recursive: true, force: true });
  });

  function config(name: string, extra: Partial<TrainConfigInput> = {}, rl: Partial<TrainConfigInput['stages'][number]> = {}, rlSteps?: number, sftSteps?: number): TrainConfigInput {
    return {
      seed: 3, device: 'cpu', model: { config: task.modelConfig }, run: { dir: join(runs, name) }, stages: stages(rl, rlSteps, sftSteps),
      checkpoint: { every: 1000, validation: { prompts: 0 } }, ...extra,
    };
  }

  it('cold-start SFT then GRPO raises the held-out reward', async () => {
    const t = await Trainer.create({ config: config('grpo'), tokenizer: task.tokenizer, dataset: task.train, stageDatasets: { warmup: task.warmup }, rewards: { copy: task.reward } });
    try {
      let before = -1;
      const seen: number[] = [];
      for await (const m of t.run()) {
        if (m.stage === 'warmup' && m.stageStep === 40) before = await heldOutReward(t, task);
        if (m.kind === 'rl') seen.push(m.reward_mean as number);
      }
      const after = await heldOutReward(t, task);
      console.log(`      held-out reward: ${before.toFixed(3)} after SFT → ${after.toFixed(3)} after ${seen.length} GRPO steps`);
      assert.ok(before < 0.4, `the short SFT should not solve the task (held-out ${before})`);
      assert.ok(after > before + 0.2, `GRPO should raise the held-out reward clearly: ${before} → ${after}`);
      const metrics = await readMetrics(join(t.runDir, 'metrics.jsonl'));
      assert.equal(metrics.length, 40 + seen.length);
      for (const key of ['reward_mean', 'reward_std', 'entropy', 'critical_entropy', 'critical_count', 'grad_norm', 'clip_frac_low', 'clip_frac_high',
        'response_length_mean', 'response_length_max', 'truncation_rate', 'zero_std_groups', 'tokens_per_second', 'time_rollout_ms', 'time_reward_ms', 'time_update_ms']) {
        assert.ok(typeof metrics[metrics.length - 1]![key] === 'number', `metric ${key}`);
      }
    } finally {
      t.dispose();
    }
  });

  it('a micro-batched update equals the one-batch update (every aggregation mode)', async () => {
    for (const aggregation of ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'] as const) {
      const grads: Float32Array[][] = [];
      for (const microBatchTokens of [100_000, 20]) {
        using e = Engine.create({ device: 'cpu', seed: 1 });
        using m = VisionLanguageModel.create(e, task.modelConfig, { seed: 5 });
        const r = await rollout(m, task.train.slice(0, 4), { tokenizer: task.tokenizer, samplesPerPrompt: 4, maxNewTokens: 3, temperature: 1, seed: 7 });
        await score(r.samples, [{ name: 'copy', weight: 1, fn: (s) => (s.text.length % 3) / 2 }], { step: 1 });
        const cfg = parseTrainConfig(config('x', {}, { algorithm: { aggregation, entropyCoef: 0.01 } })).stages[1]!;
        advantages(r.samples, cfg.algorithm, 4);
        // An optimizer that records the accumulated gradients instead of stepping.
        const recorder = {
          step: async () => {
            grads.push(await Promise.all(m.parameters().map(async (p) => (await m.getGradient(p.name))!)));
            return { gradNorm: 1, updated: 0, skipped: false };
          },
        };
        const u = await policyUpdate(m, recorder, r.samples, { algorithm: cfg.algorithm, microBatchTokens, temperature: 1, maxLength: 3 });
        assert.equal(u.skipped, false);
        if (microBatchTokens === 20) assert.ok(r.samples.length > 4, 'the small budget splits the batch');
      }
      // Per parameter: ‖g_micro − g_one‖ / ‖g_one‖ (f32 sums in another order differ by rounding only).
      const worst = Math.max(...grads[0]!.map((g, i) => relativeError(grads[1]![i]!, g)));
      assert.ok(worst <= 1e-6, `${aggregation}: micro-batched gradients differ by ${worst} (relative)`);
    }
  });

  it('a non-finite loss or gradient skips the step: weights and optimizer state untouched', async () => {
    using e = Engine.create({ device: 'cpu', seed: 1 });
    using m = VisionLanguageModel.create(e, task.modelConfig, { seed: 5 });
    const r = await rollout(m, task.train.slice(0, 2), { tokenizer: task.tokenizer, samplesPerPrompt: 2, maxNewTokens: 2, temperature: 1, seed: 1 });
    const cfg = parseTrainConfig(config('x')).stages[1]!;
    const opt = new AdamW(m, { lr: 1e-2 });
    const dir = await mkdtemp(join(tmpdir(), 'r1v-opt-'));
    const snapshot = () => Promise.all(m.parameters().map((p) => m.getParameter(p.name)));
    try {
      // A gradient too large for f32 (finite advantages, infinite norm).
      for (const s of r.samples) s.advantages = new Float32Array(s.responseIds.length).fill(3e38);
      let before = await snapshot();
      let u = await policyUpdate(m, opt, r.samples, { algorithm: cfg.algorithm, microBatchTokens: 4096, temperature: 1, maxLength: 2 });
      assert.equal(u.skipped, true);
      assert.ok(!Number.isFinite(u.gradNorm));
      assert.deepEqual(await snapshot(), before);
      // A NaN weight makes the logprobs NaN: the loss is not even computed.
      for (const s of r.samples) s.advantages = new Float32Array(s.responseIds.length).fill(1);
      const name = m.parameters().find((p) => p.name.endsWith('model.norm.weight'))!.name;
      m.setParameter(name, new Float32Array(64).fill(NaN));
      before = await snapshot();
      u = await policyUpdate(m, opt, r.samples, { algorithm: cfg.algorithm, microBatchTokens: 4096, temperature: 1, maxLength: 2 });
      assert.equal(u.skipped, true);
      assert.ok(Number.isNaN(u.loss));
      assert.deepEqual(await snapshot(), before);
      await opt.save(dir);
      const header = await readFile(join(dir, 'optimizer.safetensors'));
      const json = JSON.parse(header.subarray(8, 8 + Number(header.readBigUInt64LE(0))).toString('utf8')) as { __metadata__: { steps: string } };
      assert.deepEqual(JSON.parse(json.__metadata__.steps), {}, 'no parameter took an optimizer step');
    } finally {
      await rm(dir, { recursive: true, force: true });
      opt.dispose();
    }
  });

  it('stopped at step k and resumed, reaches bitwise the parameters of an uninterrupted run', async () => {
    const base = (name: string) => config(name, { checkpoint: { every: 3, validation: { prompts: 4 } } }, { algorithm: { kl: { coef: 0.01 } } }, 6, 4);
    const data = { tokenizer: task.tokenizer, dataset: task.train, stageDatasets: { warmup: task.warmup }, rewards: { copy: task.reward } };
    const full = await Trainer.create({ config: base('full'), ...data });
    await full.train();
    const expected = await Promise.all(full.model.parameters().map((p) => full.model.getParameter(p.name)));
    full.dispose();

    const stop = new AbortController();
    const first = await Trainer.create({ config: base('split'), ...data, signal: stop.signal });
    const summary = await first.train({ onStep: (m) => { if (m.step === 7) stop.abort(); } });
    assert.equal(summary.stopped, true);
    assert.equal(summary.steps, 7);
    first.dispose();
    const resumed = await Trainer.resume(join(runs, 'split'), data);
    assert.equal(resumed.state.step, 7);
    await resumed.train();
    const got = await Promise.all(resumed.model.parameters().map((p) => resumed.model.getParameter(p.name)));
    resumed.dispose();
    expected.forEach((p, i) => assert.deepEqual(got[i], p, `parameter ${i} differs after resume`));
    const metrics = await readMetrics(join(runs, 'split', 'metrics.jsonl'));
    assert.deepEqual(metrics.map((m) => m.step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('PPO with a critic (GAE) also learns', async () => {
    const c = config('ppo', {}, { algorithm: { advantage: 'gae' }, critic: { lr: 2e-3 } });
    const t = await Trainer.create({ config: c, tokenizer: task.tokenizer, dataset: task.train, stageDatasets: { warmup: task.warmup }, rewards: { copy: task.reward } });
    try {
      let before = -1;
      for await (const m of t.run()) if (m.stage === 'warmup' && m.stageStep === 40) before = await heldOutReward(t, task);
      const after = await heldOutReward(t, task);
      console.log(`      PPO + GAE held-out reward: ${before.toFixed(3)} after SFT → ${after.toFixed(3)}`);
      assert.ok(after > before + 0.2, `PPO with a critic should learn: ${before} → ${after}`);
    } finally {
      t.dispose();
    }
  });

  it('skips and counts rows without an answer and rows whose image cannot be read', async () => {
    const c = config('bad-rows', {}, {}, 1, 1);
    const rows = [{ question: 'copy 1 2' }, { question: 'copy 1 2', answer: '' }, ...task.train.slice(0, 8)];
    const t = await Trainer.create({ config: c, tokenizer: task.tokenizer, dataset: rows, rewards: { copy: task.reward } });
    assert.equal(t.trainData.skipped.length, 2);
    assert.match(t.trainData.skipped.map((s) => s.reason).join(), /no answer/);
    t.dispose();
    const vlmDir = await mkdtemp(join(tmpdir(), 'r1v-bad-image-'));
    using e = Engine.create({ device: 'cpu' });
    using m = VisionLanguageModel.create(e, vlmConfig(task.tokenizer.vocabSize, task.tokenizer.imageContextTokenId), { seed: 1, imageContextTokenId: task.tokenizer.imageContextTokenId });
    const r = await rollout(m, [{ question: 'what?', answer: '1', images: [join(vlmDir, 'missing.png')] }, task.train[0]!], { tokenizer: task.tokenizer, samplesPerPrompt: 2, maxNewTokens: 2, temperature: 1, seed: 1 });
    assert.equal(r.skipped.length, 1);
    assert.match(r.skipped[0]!.error.message, /images\[0\]/);
    assert.equal(r.samples.length, 2);
    await rm(vlmDir, { recursive: true, force: true });
  });

  it('keeps the event loop responsive while training', async () => {
    const t = await Trainer.create({ config: config('loop', {}, {}, 6, 4), tokenizer: task.tokenizer, dataset: task.train, stageDatasets: { warmup: task.warmup }, rewards: { copy: task.reward } });
    let last = performance.now(), worst = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last);
      last = now;
    }, 5);
    try {
      await t.train();
    } finally {
      clearInterval(timer);
      t.dispose();
    }
    assert.ok(worst < 100, `worst timer gap ${worst.toFixed(1)} ms`);
  });

  it('rejects bad configs naming the key, and a run directory that already has checkpoints', async () => {
    expectR1VError(() => parseTrainConfig({ ...config('x'), stages: [{ name: 'a', kind: 'rl', steps: 1, algorithm: { clipHigh: -1 } }] }), 'CONFIG', /stages\[0\]\.algorithm\.clipHigh/);
    expectR1VError(() => parseTrainConfig({ ...config('x'), stages: [{ name: 'a', kind: 'rl', steps: 1, rollout: { maxNewToken: 4 } }] }), 'CONFIG', /stages\[0\]\.rollout\.maxNewToken: unknown key/);
    expectR1VError(() => parseTrainConfig({ ...config('x'), stages: [{ name: 'a', kind: 'rl', steps: 1, algorithm: { advantage: 'gae' } }] }), 'CONFIG', /critic/);
    expectR1VError(() => parseTrainConfig({ ...config('x'), sead: 1 }), 'CONFIG', /sead: unknown key/);
    const file = join(runs, 'bad.yaml');
    await writeFile(file, 'seed: 1\nstages:\n  - name: a\n    kind: rl\n    steps: 0\n');
    await expectR1VRejection(loadTrainConfig(file), 'CONFIG', /stages\[0\]\.steps/);
    await writeFile(file, 'seed: [1\n');
    await expectR1VRejection(loadTrainConfig(file), 'CONFIG', /not valid YAML/);
    await expectR1VRejection(Trainer.create({ config: config('grpo'), tokenizer: task.tokenizer, dataset: task.train }), 'IO', /already holds checkpoints/);
  });
});

function vlmConfig(vocab: number, imageContextTokenId: number): Record<string, unknown> {
  return {
    model_type: 'internvl_chat', downsample_ratio: 0.5, ps_version: 'v2', select_layer: -1, force_image_size: 28, template: 'internvl2_5',
    img_context_token_id: imageContextTokenId, dynamic_image_size: false, use_thumbnail: false,
    vision_config: {
      model_type: 'intern_vit_6b', hidden_size: 16, intermediate_size: 32, num_attention_heads: 2, num_hidden_layers: 1, image_size: 28,
      patch_size: 7, num_channels: 3, norm_type: 'layer_norm', layer_norm_eps: 1e-6, qkv_bias: true, hidden_act: 'gelu', initializer_factor: 1,
    },
    llm_config: {
      model_type: 'qwen2', vocab_size: vocab, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4,
      num_key_value_heads: 2, max_position_embeddings: 128, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: true, hidden_act: 'silu',
    },
  };
}

describe('train: GRPO updates on CUDA agree with the CPU @cuda', function () {
  this.timeout(600_000);
  if (!cudaAvailable()) return;
  it('three bf16 GRPO updates from one set of rollouts match the f32 CPU updates within bf16 tolerance', async () => {
    const task = await toyTask();
    const dir = await mkdtemp(join(tmpdir(), 'r1v-cuda-grpo-'));
    try {
      using cpu = Engine.create({ device: 'cpu', seed: 1 });
      using gpu = Engine.create({ device: 'cuda:0', seed: 1 });
      using a = VisionLanguageModel.create(cpu, task.modelConfig, { seed: 5 });
      await a.save(dir);
      using b = await VisionLanguageModel.load(gpu, dir, { dtype: 'bf16' });
      const r = await rollout(a, task.train.slice(0, 8), { tokenizer: task.tokenizer, samplesPerPrompt: 8, maxNewTokens: 2, temperature: 1, seed: 3 });
      await score(r.samples, [{ name: 'copy', weight: 1, fn: task.reward }, { name: 'len', weight: 0.1, fn: (s) => s.text.length % 2 }], { step: 1 });
      const cfg = parseTrainConfig({ model: { config: task.modelConfig }, stages: [{ name: 'rl', kind: 'rl', steps: 1 }] }).stages[0]!;
      advantages(r.samples, cfg.algorithm, 8);
      const oa = new AdamW(a, { lr: 1e-3 }), ob = new AdamW(b, { lr: 1e-3 });
      for (let step = 0; step < 3; step++) {
        await policyUpdate(a, oa, r.samples, { algorithm: cfg.algorithm, microBatchTokens: 4096, temperature: 1, maxLength: 2 });
        await policyUpdate(b, ob, r.samples, { algorithm: cfg.algorithm, microBatchTokens: 4096, temperature: 1, maxLength: 2 });
      }
      for (const p of a.parameters()) {
        const err = relativeError(await b.getParameter(p.name), await a.getParameter(p.name));
        assert.ok(err < 2e-2, `${p.name}: bf16 CUDA vs f32 CPU after 3 updates, relative error ${err}`);
      }
      oa.dispose();
      ob.dispose();
    } finally {
      await task.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
