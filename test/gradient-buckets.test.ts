// GradientBuckets (lib/train/gradient-buckets.ts) in one process: rank 0 of a world of 2 whose
// peer contributes nothing (its collectives are the world of one's), so the summed gradients must
// be exactly this process's own, and a parameter without a gradient here has none anywhere. What
// is checked against a plain backward of the same model and batches:
// - the gradients after finish() are bitwise those of the plain run, and the same parameters
//   have one (vision and connector have none after a text-only batch);
// - every bucket starts only once its gradients are final: a copy queued at its start equals the
//   final gradient (a tied LM head is the embedding table, final only after the embeddings);
// - with overlap, most buckets start during backward, in plan order, every one exactly once;
//   without (the CPU's default), all in finish(), with the same sums;
// - when the ranks do not agree (a rank stopped early), no bucket starts.
import assert from 'node:assert/strict';

import {
  Communicator, Engine, GradientBuckets, ops, VisionLanguageModel, type Batch, type Collectives, type Tensor,
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
    this.#world.broadcast(tensors, options);
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

describe('train: gradient buckets (one process, a silent peer)', function () {
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
      // each start holds its parameters' gradients, then the flags; a gradient replaced after its
      // start (added to) would no longer be the parameter's, so each one must be found here
      const final = new Map<Tensor, string>(m.parameterStates().flatMap((p) => (p.grad ? [[p.grad, p.name] as [Tensor, string]] : [])));
      const found = new Set<string>();
      for (const start of peer.starts) {
        for (const [i, t] of start.tensors.slice(0, -1).entries()) {
          const name = final.get(t);
          if (name === undefined) continue;  // a parameter without a gradient (its zeros, since dropped)
          found.add(name);
          assert.deepEqual(await start.copies[i]!.toArray(), await t.toArray(), `${name}: final when its bucket started`);
        }
      }
      assert.equal(found.size, plain.size, 'every gradient is the one its bucket reduced');
      buckets.dispose();
      m.dispose();
    });
  }

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
