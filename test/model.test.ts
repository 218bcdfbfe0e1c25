import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  AdamW, Engine, ops, openCheckpoint, parseModelConfig, R1VError, VisionLanguageModel, writeCheckpoint,
  type Batch, type ModelConfig,
} from '../lib/index.js';
import { cudaAvailable, expectR1VError, expectR1VRejection, randomArray, relativeError, rng } from './helpers.js';
import { centralDifference } from './reference/diff.js';
import { referenceForward, type Params } from './reference/vlm.js';
import { IMG, makeBatch, quiet, scoredCount, tinyConfig, type Json } from './fixtures/tiny-vlm.js';


/** Three random elements of a parameter's gradient against central differences of the float64 loss. */
function assertMatchesFiniteDifferences(grad: Float32Array, params: Params, name: string, loss: (p: Params) => number, next: () => number): void {
  const base = params.get(name)!;
  let num2 = 0, den2 = 0;
  for (let k = 0; k < 3; k++) {
    const i = Math.floor(next() * base.length);
    const fd = centralDifference(() => loss(params), base, i, 1e-5 * Math.max(1, Math.abs(base[i]!)));
    num2 += (grad[i]! - fd) ** 2;
    den2 += fd ** 2;
  }
  const rel = Math.sqrt(num2 / Math.max(den2, 1e-12));
  assert.ok(rel <= 2e-3 || Math.sqrt(num2) <= 1e-5, `${name}: gradient vs finite differences, relative error ${rel}`);
}

/** Sets every parameter to random values of a sensible scale; returns them in float64 for the reference. */
function randomize(m: VisionLanguageModel, next: () => number): Params {
  const params: Params = new Map();
  for (const p of m.parameters()) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const u = next() * 2 - 1;
      values[i] = p.kind === 'norm' ? 1 + 0.3 * u : p.kind === 'layerScale' ? 0.5 + 0.4 * u : p.kind === 'bias' ? 0.2 * u
        : p.kind === 'embedding' ? 0.8 * u : (1.6 * u) / Math.sqrt(p.shape.length > 2 ? p.shape.slice(1).reduce((a, b) => a * b, 1) : p.shape[p.shape.length - 1]!);
    }
    m.setParameter(p.name, values);
    params.set(p.name, Float64Array.from(values));
  }
  return params;
}

/** Two sequences: one with `tiles` images (tokens per tile from the config) and a text-only one. */
async function tmpDir(label: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), `r1v-${label}-`));
}

describe('VisionLanguageModel (CPU)', function () {
  this.timeout(120_000);
  let e: Engine;
  beforeEach(() => {
    e = Engine.create({ device: 'cpu', seed: 1, poisonNewTensors: true });
  });
  afterEach(() => e.dispose());

  for (const variant of [{}, { visionNorm: 'rms_norm' as const, qkNorm: false, tied: true }]) {
    it(`forward matches the float64 reference (${JSON.stringify(variant)})`, async () => {
      const next = rng(`model-forward-${JSON.stringify(variant)}`);
      const m = VisionLanguageModel.create(e, tinyConfig(variant), { seed: 3, ...quiet });
      const params = randomize(m, next);
      const batch = makeBatch(m.config, next);
      for (const temperature of [1, 0.7]) {
        const f = await m.forward(batch, { temperature });
        const ref = referenceForward(params, m.config, batch, IMG, temperature);
        assert.equal(f.logprobs.length, scoredCount(batch));
        const errs = [relativeError(f.logprobs, ref.logprobs), relativeError(f.entropy, ref.entropy)];
        assert.ok(errs.every((x) => x <= 1e-4), `T=${temperature}: relative errors ${errs}`);
      }
      const s = await m.tokenStats(batch);
      const ref = referenceForward(params, m.config, batch, IMG);
      assert.ok(relativeError(s.logprobs, ref.logprobs) <= 1e-4);
      m.dispose();
    });
  }

  it('a text-only Qwen2 config is the same class with no vision part', async () => {
    const next = rng('model-qwen2');
    const lm = (tinyConfig().llm_config as Json);
    const m = VisionLanguageModel.create(e, lm, { seed: 1, ...quiet });
    assert.equal(m.config.vision, undefined);
    const names = m.parameters().map((p) => p.name);
    assert.ok(names.includes('model.layers.1.self_attn.k_proj.bias') && names.includes('lm_head.weight'));
    assert.ok(names.every((n) => !n.startsWith('language_model.') && !n.startsWith('vision_model.')));
    const params = randomize(m, next);
    const inputIds = Int32Array.from({ length: 9 }, () => Math.floor(next() * 64));
    const targets = Int32Array.from(inputIds, (_, i) => (i + 1 < 9 ? inputIds[i + 1]! : -100));
    const batch = { inputIds, targets, cuSeqlens: Int32Array.from([0, 4, 9]) };
    const f = await m.forward(batch);
    const ref = referenceForward(params, m.config, batch, undefined);
    assert.ok(relativeError(f.logprobs, ref.logprobs) <= 1e-4 && relativeError(f.entropy, ref.entropy) <= 1e-4);
    await assert.rejects(m.forward({ ...batch, pixelValues: new Float32Array(3 * 28 * 28) }), (err: R1VError) => err.code === 'ARGUMENT' && /text-only/.test(err.message));
    m.dispose();
  });

  for (const mode of ['all', 'connector-only'] as const) {
    it(`backward matches central finite differences of the float64 reference (${mode} trainable)`, async () => {
      const next = rng(`model-grad-${mode}`);
      const m = VisionLanguageModel.create(e, tinyConfig({ tied: mode === 'all' }), { seed: 5, ...quiet });
      const params = randomize(m, next);
      if (mode === 'connector-only') m.setTrainable({ vision: false, connector: true, language: false });
      const batch = makeBatch(m.config, next, 1);
      const n = scoredCount(batch);
      const dLogprobs = Float32Array.from({ length: n }, () => next() * 2 - 1);
      const dEntropy = Float32Array.from({ length: n }, () => next() * 2 - 1);
      const f = await m.forward(batch, { grad: true, temperature: 0.9 });
      await f.backward({ dLogprobs, dEntropy });
      const loss = (p: Params) => {
        const r = referenceForward(p, m.config, batch, IMG, 0.9);
        let s = 0;
        for (let i = 0; i < n; i++) s += dLogprobs[i]! * r.logprobs[i]! + dEntropy[i]! * r.entropy[i]!;
        return s;
      };
      // one parameter of every kind in every module part, a few elements each
      const picked = new Map<string, string>();
      for (const p of m.parameters()) {
        const key = `${p.part}/${p.kind}/${p.name.includes('layers.1.') ? 'last' : 'other'}`;
        if (!picked.has(key) || next() < 0.3) picked.set(key, p.name);
      }
      for (const name of [...picked.values(), 'vision_model.encoder.layers.0.attn.q_norm.weight', 'language_model.model.layers.0.self_attn.k_proj.bias']) {
        const info = m.parameters().find((p) => p.name === name)!;
        const grad = await m.getGradient(name);
        if (!info.trainable) {
          assert.equal(grad, undefined, `${name} is frozen but has a gradient`);
          continue;
        }
        assert.ok(grad, `${name} has no gradient`);
        assertMatchesFiniteDifferences(grad, params, name, loss, next);
      }
      if (mode === 'connector-only') {
        const trained = m.parameters().filter((p) => p.trainable).map((p) => p.part);
        assert.ok(trained.length === 6 && trained.every((p) => p === 'connector'));
        assert.equal(m.numParameters({ trainableOnly: true }), 4 * 16 * 2 + 64 * 16 + 16 + 16 * 16 + 16);
      }
      m.dispose();
    });
  }

  it('a value head (critic): values and dValues gradients against the float64 reference; tokenStats: false skips the LM head', async () => {
    const next = rng('model-value-head');
    const m = VisionLanguageModel.create(e, tinyConfig(), { seed: 5, valueHead: true, ...quiet });
    const params = randomize(m, next);
    assert.deepEqual(m.parameters().filter((p) => p.part === 'value').map((p) => [p.name, p.shape]), [['value_head.weight', [1, 16]], ['value_head.bias', [1]]]);
    const batch = makeBatch(m.config, next, 1);
    const n = scoredCount(batch);
    const dValues = Float32Array.from({ length: n }, () => next() * 2 - 1);
    const f = await m.forward(batch, { grad: true, tokenStats: false });
    assert.equal(f.logprobs.length, 0);
    const ref = referenceForward(params, m.config, batch, IMG);
    assert.ok(relativeError(f.values!, ref.values) < 1e-4, `values vs float64: ${relativeError(f.values!, ref.values)}`);
    await f.backward({ dValues });
    assert.equal(await m.getGradient('language_model.lm_head.weight'), undefined, 'the LM head gets no gradient from values');
    const loss = (p: Params) => referenceForward(p, m.config, batch, IMG).values.reduce((a, v, i) => a + dValues[i]! * v, 0);
    for (const name of ['value_head.weight', 'value_head.bias', 'language_model.model.norm.weight', 'language_model.model.layers.1.mlp.down_proj.weight', 'mlp1.1.weight']) {
      assertMatchesFiniteDifferences((await m.getGradient(name))!, params, name, loss, next);
    }
    // With token statistics too, both coefficient kinds add up.
    const g = await m.forward(batch, { grad: true });
    assert.equal(g.logprobs.length, n);
    await assert.rejects(g.backward({ dValues: new Float32Array(n + 1) }), (err: unknown) => err instanceof R1VError && err.code === 'SHAPE');
    g.dispose();
    // A policy checkpoint loads as a critic: the head is initialised, the rest is the policy's.
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'r1v-critic-'));
    const policy = VisionLanguageModel.create(e, tinyConfig(), { seed: 5, ...quiet });
    await policy.save(dir);
    const critic = await VisionLanguageModel.load(e, dir, { valueHead: true, ...quiet });
    assert.deepEqual(await critic.getParameter('mlp1.1.weight'), await policy.getParameter('mlp1.1.weight'));
    assert.deepEqual(Array.from(await critic.getParameter('value_head.bias')), [0]);
    await critic.save(dir);
    const warnings: string[] = [];
    const asPolicy = await VisionLanguageModel.load(e, dir, { warn: (w) => warnings.push(w) });
    assert.ok(warnings.some((w) => /value_head\.weight/.test(w)), 'loading a critic as a policy warns that the value head is ignored');
    assert.equal(asPolicy.parameters().some((p) => p.part === 'value'), false);
    for (const x of [critic, policy, asPolicy, m]) x.dispose();
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('recompute gives the same gradients as keeping activations', async () => {
    const next = rng('model-recompute');
    const m = VisionLanguageModel.create(e, tinyConfig(), { seed: 2, ...quiet });
    randomize(m, next);
    const batch = makeBatch(m.config, next, 1);
    const n = scoredCount(batch);
    const dLogprobs = Float32Array.from({ length: n }, () => next() - 0.5);
    const grads = async () => {
      m.zeroGrad();
      const f = await m.forward(batch, { grad: true });
      await f.backward({ dLogprobs });
      return Promise.all(m.parameters().map((p) => m.getGradient(p.name)));
    };
    const kept = await grads();
    m.recompute = true;
    const recomputed = await grads();
    kept.forEach((g, i) => assert.deepEqual(recomputed[i], g));
    m.dispose();
  });

  /** A random tiny model, a one-image batch, dLogprobs for it, and one forward + backward's gradient of `name`. */
  async function afterOneBackward(label: string, seed: number, name: string) {
    const next = rng(label);
    const m = VisionLanguageModel.create(e, tinyConfig(), { seed, ...quiet });
    randomize(m, next);
    const batch = makeBatch(m.config, next, 1);
    const dLogprobs = Float32Array.from({ length: scoredCount(batch) }, () => next() - 0.5);
    await (await m.forward(batch, { grad: true })).backward({ dLogprobs });
    return { next, m, batch, dLogprobs, once: (await m.getGradient(name))! };
  }

  it('gradients accumulate over backward calls until zeroGrad', async () => {
    const name = 'mlp1.1.weight';
    const { m, batch, dLogprobs, once } = await afterOneBackward('model-accumulate', 2, name);
    await (await m.forward(batch, { grad: true })).backward({ dLogprobs });
    const twice = (await m.getGradient(name))!;
    assert.ok(relativeError(twice, Float64Array.from(once, (x) => 2 * x)) <= 1e-6);
    m.zeroGrad();
    assert.equal(await m.getGradient(name), undefined);
    m.dispose();
  });

  it('an op error already read back on the model\'s engine does not fail the next backward (gradients added once)', async () => {
    const name = 'mlp1.1.weight';
    const { next, m, batch, dLogprobs, once } = await afterOneBackward('model-error-once', 3, name);
    m.zeroGrad();
    const f = await m.forward(batch, { grad: true });
    // Between forward and backward, an LM-head op on the same engine fails (a target outside
    // the vocabulary, found when it runs); its readback rejects and the caller catches it.
    const hidden = e.tensor(randomArray(2 * 16, next), [2, 16]);
    const head = e.tensor(randomArray(64 * 16, next), [64, 16]);
    const stats = ops.linearTokenStats(hidden, head, e.tensor(Int32Array.from([3, 64]), [2]));
    await expectR1VRejection(stats.logprobs.toArray(), 'ARGUMENT', /targets\[1\] = 64 is outside \[0, 64\)/);
    await f.backward({ dLogprobs });
    assert.ok(relativeError((await m.getGradient(name))!, once) <= 1e-6);
    m.dispose();
  });

  it('save → load gives an identical forward (single file and sharded); HF names', async () => {
    const next = rng('model-save');
    const m = VisionLanguageModel.create(e, tinyConfig(), { seed: 4, ...quiet });
    randomize(m, next);
    const batch = makeBatch(m.config, next);
    const before = await m.forward(batch);
    for (const maxShardBytes of [undefined, 20_000]) {
      const dir = await tmpDir('save');
      await m.save(dir, maxShardBytes ? { maxShardBytes } : {});
      const files = await fsp.readdir(dir);
      assert.ok(files.includes('config.json'));
      assert.ok(maxShardBytes ? files.includes('model.safetensors.index.json') : files.includes('model.safetensors'), files.join());
      const loaded = await VisionLanguageModel.load(e, dir, quiet);
      assert.deepEqual(loaded.parameters(), m.parameters());
      const after = await loaded.forward(batch);
      assert.deepEqual(after.logprobs, before.logprobs);
      assert.deepEqual(after.entropy, before.entropy);
      await using ckpt = await openCheckpoint(dir);
      assert.ok(ckpt.has('language_model.lm_head.weight') && ckpt.has('mlp1.3.bias') && ckpt.has('vision_model.encoder.layers.1.ls2'));
      loaded.dispose();
      await fsp.rm(dir, { recursive: true });
    }
    m.dispose();
  });

  it('a checkpoint that does not match its config fails with one error listing every problem', async () => {
    const m = VisionLanguageModel.create(e, tinyConfig(), { seed: 4, ...quiet });
    const dir = await tmpDir('bad');
    await m.save(dir);
    const good = await openCheckpoint(dir);
    const tensors = await Promise.all(good.names().map(async (name) => ({ name, ...(await good.readTensor(name)) })));
    await good.close();
    const broken = tensors
      .filter((t) => t.name !== 'mlp1.1.bias' && t.name !== 'vision_model.encoder.layers.0.ls1')
      .map((t) => (t.name === 'language_model.model.norm.weight' ? { ...t, shape: [4, 4] } : t));
    broken.push({ name: 'language_model.model.layers.7.mlp.up_proj.weight', dtype: 'F32', shape: [2], data: new Float32Array(2) } as never);
    await writeCheckpoint(dir, broken as never);
    await assert.rejects(VisionLanguageModel.load(e, dir, quiet), (err: R1VError) => {
      assert.equal(err.code, 'IO');
      for (const re of [/missing mlp1\.1\.bias/, /missing vision_model\.encoder\.layers\.0\.ls1/, /model\.norm\.weight has shape \[4,4\]/, /unexpected language_model\.model\.layers\.7/, /4 problems/]) {
        assert.match(err.message, re);
      }
      return true;
    });
    // a truncated file is an IO error naming the file
    const file = path.join(dir, 'model.safetensors');
    const { size } = await fsp.stat(file);
    await fsp.truncate(file, size - 100);
    await assert.rejects(VisionLanguageModel.load(e, dir, quiet), (err: R1VError) => err.code === 'IO' && err.message.includes('model.safetensors'));
    await fsp.rm(dir, { recursive: true });
    m.dispose();
  });

  it('rejects bad batches, naming the arrays', async () => {
    const next = rng('model-bad-batch');
    const m = VisionLanguageModel.create(e, tinyConfig(), { seed: 4, ...quiet });
    const b = makeBatch(m.config, next);
    const reject = (batch: unknown, code: string, re: RegExp) =>
      assert.rejects(m.forward(batch as Batch), (err: R1VError) => err instanceof R1VError && err.code === code && re.test(err.message));
    await reject({ ...b, targets: b.targets.slice(1) }, 'SHAPE', /targets.*inputIds/);
    await reject({ ...b, cuSeqlens: Int32Array.from([0, 3]) }, 'SHAPE', /cuSeqlens/);
    await reject({ ...b, cuSeqlens: Int32Array.from([0, 20, 10, b.inputIds.length]) }, 'SHAPE', /cuSeqlens decreases/);
    await reject({ ...b, pixelValues: b.pixelValues!.slice(3 * 28 * 28) }, 'SHAPE', /IMG_CONTEXT.*1 tiles/);
    await reject({ ...b, pixelValues: b.pixelValues!.slice(5) }, 'SHAPE', /pixelValues/);
    await reject({ ...b, inputIds: Int32Array.from(b.inputIds, (x, i) => (i === 2 ? 64 : x)) }, 'ARGUMENT', /inputIds\[2\] = 64/);
    await reject({ ...b, targets: Int32Array.from(b.targets, (x, i) => (i === 0 ? -5 : x)) }, 'ARGUMENT', /targets\[0\] = -5/);
    await reject({ ...b, inputIds: Array.from(b.inputIds) }, 'ARGUMENT', /inputIds must be an Int32Array/);
    const f = await m.forward(b);
    await assert.rejects(f.backward({ dLogprobs: new Float32Array(f.logprobs.length) }), /without \{ grad: true \}/);
    const g = await m.forward(b, { grad: true });
    await assert.rejects(g.backward({ dLogprobs: new Float32Array(3) }), (err: R1VError) => err.code === 'SHAPE' && /dLogprobs/.test(err.message));
    await g.backward({ dLogprobs: new Float32Array(g.logprobs.length).fill(0.5) });
    expectR1VError(() => m.setTrainable({ eyes: true } as never), 'ARGUMENT', /unknown part 'eyes'/);
    expectR1VError(() => VisionLanguageModel.create(e, tinyConfig(), { dtype: 'bf16' }), 'DTYPE', /CUDA/);
    // a misspelt option is refused, naming it, not silently ignored (a seed that did not take)
    expectR1VError(() => VisionLanguageModel.create(e, tinyConfig(), { sed: 1 } as never), 'ARGUMENT', /unknown option 'sed'.*seed/);
    expectR1VError(() => VisionLanguageModel.create(e, tinyConfig(), { recompute: 'yes' } as never), 'ARGUMENT', /recompute must be a boolean/);
    m.dispose();
    await assert.rejects(m.forward(b), (err: R1VError) => err.code === 'DISPOSED');
  });

  it('frozen parts get no gradients and a frozen vision tower runs forward only', async () => {
    const next = rng('model-frozen');
    const m = VisionLanguageModel.create(e, tinyConfig(), { seed: 4, ...quiet });
    randomize(m, next);
    m.setTrainable((name) => name.startsWith('language_model.model.layers.1.'));
    const batch = makeBatch(m.config, next, 1);
    e.resetPeakMemory();
    const f = await m.forward(batch, { grad: true });
    await f.backward({ dLogprobs: new Float32Array(f.logprobs.length).fill(-1) });
    for (const p of m.parameters()) {
      const g = await m.getGradient(p.name);
      assert.equal(g !== undefined, p.trainable, p.name);
    }
    m.dispose();
  });
});

describe('AdamW', function () {
  this.timeout(60_000);
  let e: Engine;
  beforeEach(() => {
    e = Engine.create({ device: 'cpu', seed: 1, poisonNewTensors: true });
  });
  afterEach(() => e.dispose());

  it('matches a float64 AdamW (weight decay, bias correction, clipping by global norm) over 3 steps', async () => {
    const next = rng('adamw');
    const cfg = tinyConfig().llm_config as Json;
    const m = VisionLanguageModel.create(e, cfg, { seed: 1, ...quiet });
    randomize(m, next);
    m.setTrainable((name) => !name.includes('layers.1.mlp'));
    const lr = 3e-3, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
    const opt = new AdamW(m, { lr, betas: [b1, b2], eps, weightDecay: wd });
    const names = m.parameters().filter((p) => p.trainable).map((p) => p.name);
    const kinds = new Map(m.parameters().map((p) => [p.name, p.kind]));
    const w = new Map<string, Float64Array>();
    for (const n of names) w.set(n, Float64Array.from(await m.getParameter(n)));
    const mm = new Map<string, Float64Array>(), vv = new Map<string, Float64Array>();
    const inputIds = Int32Array.from({ length: 12 }, () => Math.floor(next() * 64));
    const batch = { inputIds, targets: Int32Array.from(inputIds, (_, i) => (i < 11 ? inputIds[i + 1]! : -100)), cuSeqlens: Int32Array.from([0, 12]) };
    for (let step = 1; step <= 3; step++) {
      m.zeroGrad();
      const f = await m.forward(batch, { grad: true });
      await f.backward({ dLogprobs: new Float32Array(f.logprobs.length).fill(-3) });
      const grads = new Map<string, Float32Array>();
      for (const n of names) grads.set(n, (await m.getGradient(n))!);
      let sq = 0;
      for (const g of grads.values()) for (const x of g) sq += x * x;
      const norm = Math.sqrt(sq);
      const maxGradNorm = step === 2 ? norm / 4 : 1e6;  // step 2 clips
      const { gradNorm } = await opt.step({ maxGradNorm });
      assert.ok(Math.abs(gradNorm - norm) <= 1e-5 * norm, `gradNorm ${gradNorm} vs ${norm}`);
      const scale = norm > maxGradNorm ? maxGradNorm / (norm + 1e-6) : 1;
      for (const n of names) {
        const p = w.get(n)!, g = grads.get(n)!;
        const m1 = mm.get(n) ?? new Float64Array(p.length), v1 = vv.get(n) ?? new Float64Array(p.length);
        const decay = kinds.get(n) === 'weight' || kinds.get(n) === 'embedding' ? wd : 0;
        for (let i = 0; i < p.length; i++) {
          const gi = g[i]! * scale;
          p[i]! -= lr * decay * p[i]!;
          m1[i] = b1 * m1[i]! + (1 - b1) * gi;
          v1[i] = b2 * v1[i]! + (1 - b2) * gi * gi;
          p[i]! -= (lr * (m1[i]! / (1 - b1 ** step))) / (Math.sqrt(v1[i]! / (1 - b2 ** step)) + eps);
        }
        mm.set(n, m1);
        vv.set(n, v1);
        const got = await m.getParameter(n);
        const worst = got.reduce((a, x, i) => Math.max(a, Math.abs(x - p[i]!)), 0);
        assert.ok(worst <= 1e-6, `step ${step} ${n}: max |Δ| ${worst}`);
      }
    }
    // frozen parameters never moved
    for (const p of m.parameters().filter((q) => !q.trainable)) assert.equal(await m.getGradient(p.name), undefined);
    // save → load of the optimizer state continues identically
    const dir = await tmpDir('adamw');
    await opt.save(dir);
    const opt2 = new AdamW(m, { lr, betas: [b1, b2], eps, weightDecay: wd });
    await opt2.load(dir);
    const f = await m.forward(batch, { grad: true });
    await f.backward({ dLogprobs: new Float32Array(f.logprobs.length).fill(-1) });
    const snapshot = await Promise.all(names.map((n) => m.getParameter(n)));
    await opt2.step();
    const viaLoaded = await Promise.all(names.map((n) => m.getParameter(n)));
    names.forEach((n, i) => m.setParameter(n, snapshot[i]!));
    await opt.step();
    const viaOriginal = await Promise.all(names.map((n) => m.getParameter(n)));
    viaOriginal.forEach((x, i) => assert.deepEqual(viaLoaded[i], x));
    await fsp.writeFile(path.join(dir, 'optimizer.safetensors'), 'garbage');
    await assert.rejects(opt2.load(dir), (err: R1VError) => err.code === 'IO');
    await fsp.rm(dir, { recursive: true });
    opt.dispose();
    opt2.dispose();
    m.dispose();
  });

  it('a few hundred SFT steps memorise a fixed batch (loss → ~0)', async () => {
    const next = rng('sft-memorise');
    const m = VisionLanguageModel.create(e, tinyConfig(), { seed: 7, ...quiet });
    const batch = makeBatch(m.config, next, 1);
    const n = scoredCount(batch);
    const opt = new AdamW(m, { lr: 1e-2, weightDecay: 0 });
    let first = 0, loss = 0;
    for (let step = 0; step < 300; step++) {
      m.zeroGrad();
      const f = await m.forward(batch, { grad: true });
      loss = -f.logprobs.reduce((a, x) => a + x, 0) / n;
      if (step === 0) first = loss;
      await f.backward({ dLogprobs: new Float32Array(n).fill(-1 / n) });
      await opt.step({ maxGradNorm: 1 });
      if (loss < 0.01) break;
    }
    assert.ok(first > 3, `initial loss ${first} (≈ ln 64)`);
    assert.ok(loss < 0.05, `loss after training ${loss}`);
    opt.dispose();
    m.dispose();
  });
});

describe('VisionLanguageModel on CUDA @cuda', function () {
  this.timeout(300_000);
  before(function () {
    if (!cudaAvailable()) this.skip();
  });

  for (const dtype of ['f32', 'bf16'] as const) {
    it(`${dtype}: forward, gradients and AdamW agree with the CPU model loaded from the same checkpoint`, async () => {
      const next = rng(`model-cuda-${dtype}`);
      using cpu = Engine.create({ device: 'cpu', seed: 1 });
      using gpu = Engine.create({ device: 'cuda:0', seed: 1, poisonNewTensors: true });
      const ref = VisionLanguageModel.create(cpu, tinyConfig(), { seed: 3, ...quiet });
      randomize(ref, next);
      const dir = await tmpDir(`cuda-${dtype}`);
      await ref.save(dir);
      const m = await VisionLanguageModel.load(gpu, dir, { dtype, ...quiet });
      assert.ok(m.parameters().every((p) => p.dtype === dtype));
      const batch = makeBatch(ref.config, next);
      const tol = dtype === 'f32' ? 1e-4 : 3e-2;
      const [a, b] = [await ref.forward(batch, { grad: true }), await m.forward(batch, { grad: true })];
      assert.ok(relativeError(b.logprobs, a.logprobs) <= tol && relativeError(b.entropy, a.entropy) <= tol,
        `logprobs ${relativeError(b.logprobs, a.logprobs)}, entropy ${relativeError(b.entropy, a.entropy)}`);
      const dLogprobs = Float32Array.from({ length: a.logprobs.length }, () => next() - 0.5);
      await a.backward({ dLogprobs });
      await b.backward({ dLogprobs });
      for (const p of ref.parameters()) {
        const [ga, gb] = [(await ref.getGradient(p.name))!, (await m.getGradient(p.name))!];
        assert.ok(relativeError(gb, ga) <= (dtype === 'f32' ? 1e-3 : 1e-1), `${p.name}: ${relativeError(gb, ga)}`);
      }
      // a few SFT steps lower the loss on the device too (bf16 weights, f32 masters and state)
      const opt = new AdamW(m, { lr: 1e-2, weightDecay: 0 });
      const n = scoredCount(batch);
      let first = 0, last = 0;
      for (let step = 0; step < 20; step++) {
        m.zeroGrad();
        const f = await m.forward(batch, { grad: true });
        last = -f.logprobs.reduce((x, y) => x + y, 0) / n;
        if (step === 0) first = last;
        await f.backward({ dLogprobs: new Float32Array(n).fill(-1 / n) });
        await opt.step({ maxGradNorm: 1 });
      }
      assert.ok(last < first * 0.8, `loss ${first} → ${last}`);
      opt.dispose();
      m.dispose();
      ref.dispose();
      await fsp.rm(dir, { recursive: true });
    });
  }
});
