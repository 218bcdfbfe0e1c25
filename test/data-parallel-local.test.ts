// Data parallelism's pieces in one process: rank 0 of a world of 2 whose peer contributes nothing
// (its collectives are the world of one's). The mpirun tests (train-distributed.test.ts) check
// the whole; these check what a real peer would hide.
//
// GradientBuckets (lib/train/gradient-buckets.ts): the summed gradients must be exactly this
// process's own, and a parameter without a gradient here has none anywhere. Against a plain
// backward of the same model and batches:
// - the gradients after finish() are bitwise those of the plain run, and the same parameters
//   have one (vision and connector have none after a text-only batch);
// - every bucket starts only once its gradients are final: a copy queued at its start equals the
//   final gradient (a tied LM head is the embedding table, final only after the embeddings);
// - with overlap, most buckets start during backward, in plan order, every one exactly once;
//   without (the CPU's default), all in finish(), with the same sums;
// - when the ranks do not agree (a rank stopped early), no bucket starts.
//
// A sharded AdamW (ZeRO-1, DataParallel.shardOptimizer): it updates exactly the parameters it owns
// (bitwise as an unsharded AdamW), leaves the others to their owner's broadcast (here: unchanged),
// and holds about half the state. (gatherShards needs the owners' step counts: the mpirun test
// checks it, through the size of the saved state and a resume at world size 1.)
import assert from 'node:assert/strict';

import {
  AdamW, Communicator, DataParallel, Engine, GradientBuckets, ops, VisionLanguageModel, type Batch, type Collectives, type Tensor,
} from '../lib/index.js';
import { makeBatch, quiet, scoredCount, tinyConfig } from './fixtures/tiny-vlm.js';
import { rng } from './helpers.js';

/** Rank 0 of 2 with a silent peer; records what each started all-reduce held when it started. */
class SilentPeer implements Collectives {
  readonly rank = 0;
  readonly worldSize = 2;
  readonly localRank = 0;
  readonly starts: Array<{ tensors: Tensor[]; copies: Tensor[] }> = [];
  readonly #world = Communicator.world();
  allReduce(tensors: readonly Tensor[], options?: { op?: 'sum' | 'max' | 'min' }): void {
    this.#world.allReduce(tensors, options);
  }
  allReduceStart(tensors: readonly Tensor[], options?: { op?: 'sum' | 'max' | 'min' }): { wait(): void } {
    this.starts.push({ tensors: [...tensors], copies: tensors.map((t) => ops.copy(t)) });
    return this.#world.allReduceStart(tensors, options);
  }
  broadcast(tensors: readonly Tensor[], options: { root: number }): void {
    this.#world.broadcast(tensors, { root: 0 });  // from either rank: this rank's own values
  }
  allReduceValues(values: Float64Array | readonly number[], op?: 'sum' | 'max' | 'min'): Promise<Float64Array> {
    return this.#world.allReduceValues(values, op);
  }
  allGatherBytes(bytes: Uint8Array): Promise<Uint8Array[]> {
    return this.#world.allGatherBytes(bytes);
  }
  broadcastBytes(bytes: Uint8Array | undefined, root: number): Promise<Uint8Array> {
    return this.#world.broadcastBytes(bytes, root);
  }
  barrier(): Promise<void> {
    return this.#world.barrier();
  }
}

async function gradients(m: VisionLanguageModel): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const p of m.parameters()) {
    const g = await m.getGradient(p.name);
    if (g) out.set(p.name, g);
  }
  return out;
}

/** Two micro-batches' backward; the last one reports to `buckets` when given. */
async function backwardTwice(m: VisionLanguageModel, batches: Batch[], coefficients: Float32Array[], buckets?: GradientBuckets): Promise<void> {
  for (const [i, batch] of batches.entries()) {
    const f = await m.forward(batch, { grad: true });
    const last = i === batches.length - 1;
    await f.backward({ dLogprobs: coefficients[i]! }, last && buckets ? await buckets.lastBackward() : undefined);
  }
}

describe('train: data parallel in one process (a silent peer)', function () {
  this.timeout(120_000);
  let e: Engine;
  beforeEach(() => {
    e = Engine.create({ device: 'cpu', seed: 1, poisonNewTensors: true });
  });
  afterEach(() => e.dispose());

  for (const variant of [{ tied: false, tiles: 1, overlap: true }, { tied: true, tiles: 0, overlap: true }, { tied: false, tiles: 1, overlap: undefined }]) {
    it(`sums exactly the own gradients, starting each bucket once its gradients are final ${JSON.stringify(variant)}`, async () => {
      const next = rng(`buckets-${JSON.stringify(variant)}`);
      const m = VisionLanguageModel.create(e, tinyConfig({ tied: variant.tied }), { seed: 7, ...quiet });
      const batches = [makeBatch(m.config, next, variant.tiles), makeBatch(m.config, next, variant.tiles)];
      const coefficients = batches.map((b) => Float32Array.from({ length: scoredCount(b) }, () => next() - 0.5));

      await backwardTwice(m, batches, coefficients);
      const plain = await gradients(m);
      m.zeroGrad();

      const peer = new SilentPeer();
      const buckets = new GradientBuckets(peer, m, { bucketBytes: 2048, ...(variant.overlap ? { overlap: true } : {}) });
      assert.equal(buckets.overlap, variant.overlap === true, 'overlap is on by default on CUDA only');
      await backwardTwice(m, batches, coefficients, buckets);
      await buckets.agree(true);
      await buckets.finish();
      const summed = await gradients(m);

      assert.deepEqual([...summed.keys()].sort(), [...plain.keys()].sort(), 'the same parameters have a gradient');
      if (variant.tiles === 0) assert.ok(![...summed.keys()].some((n) => n.startsWith('vision_model.') || n.startsWith('mlp1.')), 'no vision gradient after text only');
      for (const [name, g] of plain) assert.deepEqual(summed.get(name), g, name);

      const { buckets: count, startedDuringBackward } = buckets.stats;
      assert.equal(peer.starts.length, count, 'every bucket started once');
      if (variant.overlap) assert.ok(count >= 8 && startedDuringBackward >= count / 2, JSON.stringify(buckets.stats));
      else assert.equal(startedDuringBackward, 0, 'without overlap every bucket starts in finish()');
      // each start holds its parameters' gradients (the last one then the flags); a gradient
      // replaced after its start (added to) would no longer be the parameter's, so each one must be found here
      const final = new Map<Tensor, string>(m.parameterStates().flatMap((p) => (p.grad ? [[p.grad, p.name] as [Tensor, string]] : [])));
      const found = new Set<string>();
      for (const start of peer.starts) {
        for (const [i, t] of start.tensors.entries()) {
          const name = final.get(t);
          if (name === undefined) continue;  // the flags, or a parameter without a gradient (its zeros, since dropped)
          found.add(name);
          assert.deepEqual(await start.copies[i]!.toArray(), await t.toArray(), `${name}: final when its bucket started`);
        }
      }
      assert.equal(found.size, plain.size, 'every gradient is the one its bucket reduced');
      buckets.dispose();
      m.dispose();
    });
  }

  it('a sharded AdamW updates its own parameters only (bitwise as unsharded) and holds about half the state', async () => {
    const next = rng('shard-adamw');
    const [m1, m2] = [VisionLanguageModel.create(e, tinyConfig(), { seed: 9, ...quiet }), VisionLanguageModel.create(e, tinyConfig(), { seed: 9, ...quiet })];
    const batch = makeBatch(m1.config, next, 1);
    const dLogprobs = Float32Array.from({ length: scoredCount(batch) }, () => next() - 0.5);
    const values = async (m: VisionLanguageModel) => new Map(await Promise.all(m.parameters().map(async (p) => [p.name, await m.getParameter(p.name)] as const)));
    const before = await values(m2);
    const [plain, sharded] = [new AdamW(m1, { lr: 1e-2 }), new AdamW(m2, { lr: 1e-2 })];
    new DataParallel(new SilentPeer(), { shardOptimizer: true }).shardOptimizer(sharded);
    for (const m of [m1, m2]) await (await m.forward(batch, { grad: true })).backward({ dLogprobs });
    const [a, b] = [await plain.step({ maxGradNorm: 0.5 }), await sharded.step({ maxGradNorm: 0.5 })];
    assert.equal(b.gradNorm, a.gradNorm, 'the norm is over every gradient');
    const [after1, after2] = [await values(m1), await values(m2)];
    let own = 0, total = 0, owned = 0;
    for (const [name, x] of after2) {
      total += x.length;
      if (before.get(name)!.every((v, i) => v === x[i])) continue;  // another rank's: its broadcast is this rank's own here
      assert.deepEqual(x, after1.get(name), `${name}: updated as unsharded`);
      own += x.length;
      owned++;
    }
    assert.equal(owned, b.updated);
    assert.equal(sharded.stateElements, 2 * own, 'state for the own parameters only');
    assert.equal(plain.stateElements, 2 * total);
    assert.ok(own > 0.3 * total && own < 0.7 * total, `rank 0 owns ${own} of ${total} elements`);
    for (const o of [plain, sharded]) o.dispose();
    for (const m of [m1, m2]) m.dispose();
  });

  it('starts nothing when the ranks do not agree (a rank stopped early)', async () => {
    const next = rng('buckets-disagree');
    const m = VisionLanguageModel.create(e, tinyConfig(), { seed: 7, ...quiet });
    const peer = new SilentPeer();
    const buckets = new GradientBuckets(peer, m, { bucketBytes: 2048, overlap: true });
    assert.equal(await buckets.agree(false), false);
    assert.equal(await buckets.lastBackward(), undefined);
    assert.equal(await buckets.agree(true), false, 'the first answer stands');
    const batch = makeBatch(m.config, next, 1);
    await (await m.forward(batch, { grad: true })).backward({ dLogprobs: new Float32Array(scoredCount(batch)).fill(0.25) }, { onGradients: buckets.final });
    assert.equal(peer.starts.length, 0);
    buckets.dispose();
    m.dispose();
  });
});
