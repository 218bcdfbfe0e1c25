import assert from 'node:assert/strict';

import { Engine, ops, type Tensor } from '../lib/index.js';
import { expectR1VRejection, randomArray, rng } from './helpers.js';

describe('asynchronous execution', () => {
  it('keeps the event loop responsive while heavy work runs', async () => {
    using e = Engine.create({ device: 'cpu', cpuGemm: 'builtin' });
    const a = e.randn([1024, 1024]);
    let result = a;
    const started = performance.now();
    for (let i = 0; i < 12; i++) result = ops.matmul(result, a, { transB: true });
    const queuedIn = performance.now() - started;

    let maxLag = 0;
    let ticks = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxLag = Math.max(maxLag, now - last - 2);
      last = now;
      ticks++;
    }, 2);
    const values = await result.toArray();
    clearInterval(timer);
    const total = performance.now() - started;

    assert.ok(values.length === 1024 * 1024);
    // Queueing 12 GEMMs of 2 GFLOP each must not wait for them.
    assert.ok(queuedIn < total / 4, `queueing took ${queuedIn.toFixed(1)} ms of ${total.toFixed(1)} ms`);
    assert.ok(ticks >= 5, `only ${ticks} timer ticks in ${total.toFixed(0)} ms`);
    assert.ok(maxLag < 100, `event loop stalled for ${maxLag.toFixed(1)} ms`);
  });

  it('runs work in order: reads see every earlier op', async () => {
    using e = Engine.create({ device: 'cpu' });
    const x = e.tensor([1, 2, 3, 4], [2, 2]);
    const eye = e.tensor([1, 0, 0, 1], [2, 2]);
    let y = x;
    for (let i = 0; i < 20; i++) y = ops.matmul(y, eye);
    const reads = await Promise.all([y.toArray(), x.toArray(), y.toArray()]);
    assert.deepEqual(Array.from(reads[0]), [1, 2, 3, 4]);
    assert.deepEqual(Array.from(reads[2]), [1, 2, 3, 4]);
    await e.synchronize();
  });

  it('a tensor disposed while queued work still uses it is freed only after that work', async () => {
    using e = Engine.create({ device: 'cpu' });
    const a = e.randn([256, 256], { seed: 1 });
    const b = e.randn([256, 256], { seed: 2 });
    const c = ops.matmul(a, b);
    a.dispose();
    b.dispose();
    const expected = ops.matmul(e.randn([256, 256], { seed: 1 }), e.randn([256, 256], { seed: 2 }));
    assert.deepEqual(await c.toArray(), await expected.toArray());
  });

  it('synchronize resolves after queued work and a disposed engine rejects it', async () => {
    const e = Engine.create({ device: 'cpu' });
    ops.matmul(e.randn([300, 300]), e.randn([300, 300]));
    await e.synchronize();
    e.dispose();
    await assert.rejects(e.synchronize(), { code: 'DISPOSED' });
  });

  it('engines run side by side, and dispose keeps the readbacks already asked for', async () => {
    const engines = [Engine.create({ device: 'cpu', seed: 1 }), Engine.create({ device: 'cpu', seed: 1 })];
    const reads = engines.map((e) => {
      let x = e.randn([200, 200], { seed: 4 });
      const w = e.randn([200, 200], { seed: 5 });
      for (let i = 0; i < 10; i++) x = ops.matmul(x, w, { transB: true });
      return x.toArray();
    });
    engines[1]!.dispose(); // finishes its queued work (and the pending read) first
    const [first, second] = await Promise.all(reads);
    assert.deepEqual(first, second);
    assert.ok(first!.every(Number.isFinite));
    engines[0]!.dispose();
  });
});


describe('errors surface once', () => {
  const n = 5, hd = 8, vocab = 16;

  /** log p[target] of softmax(hidden · weightᵀ) per row, in float64. */
  function referenceLogprobs(hidden: Float32Array, weight: Float32Array, targets: Int32Array): Float64Array {
    const out = new Float64Array(n);
    for (let r = 0; r < n; r++) {
      const z = Array.from({ length: vocab }, (_, j) => {
        let dot = 0;
        for (let k = 0; k < hd; k++) dot += hidden[r * hd + k]! * weight[j * hd + k]!;
        return dot;
      });
      const m = Math.max(...z);
      const lse = m + Math.log(z.reduce((a, x) => a + Math.exp(x - m), 0));
      out[r] = z[targets[r]!]! - lse;
    }
    return out;
  }

  /** An engine with random hidden [n, hd] and weight [vocab, hd], and a fresh set of valid targets. */
  function setup(label: string) {
    const next = rng(label);
    const e = Engine.create({ device: 'cpu', poisonNewTensors: true });
    const hostHidden = randomArray(n * hd, next);
    const hostWeight = randomArray(vocab * hd, next);
    const hidden = e.tensor(hostHidden, [n, hd]);
    const weight = e.tensor(hostWeight, [vocab, hd]);
    const validTargets = () => Int32Array.from({ length: n }, () => Math.floor(next() * vocab));
    /** linearTokenStats with targets[row] = vocab + row (outside [0, vocab)), all else valid. */
    const failing = (row: number) => {
      const t = validTargets();
      t[row] = vocab + row;
      return ops.linearTokenStats(hidden, weight, e.tensor(t, [n]));
    };
    /** A valid linearTokenStats whose logprobs must match the float64 reference. */
    const checkValid = async () => {
      const t = validTargets();
      const got = await ops.linearTokenStats(hidden, weight, e.tensor(t, [n])).logprobs.toArray();
      const ref = referenceLogprobs(hostHidden, hostWeight, t);
      for (let r = 0; r < n; r++) assert.ok(Math.abs(got[r]! - ref[r]!) < 1e-5, `row ${r}: ${got[r]} vs ${ref[r]}`);
    };
    return { e, failing, checkValid };
  }

  const badTarget = (row: number) => new RegExp(`targets\\[${row}\\] = ${vocab + row} is outside \\[0, ${vocab}\\)`);

  it('a readback that rejects delivers the error: synchronize() then resolves and later work reads back', async () => {
    const { e, failing, checkValid } = setup('errors-readback');
    const stats = failing(2);
    await expectR1VRejection(stats.logprobs.toArray(), 'ARGUMENT', badTarget(2));
    await e.synchronize();
    await checkValid();
    await e.synchronize();
    // The failed op's outputs keep their error: reading them (again) still rejects.
    await expectR1VRejection(stats.logprobs.toArray(), 'ARGUMENT', badTarget(2));
    await expectR1VRejection(stats.entropy.toArray(), 'ARGUMENT', badTarget(2));
    assert.throws(() => stats.logprobs.toArraySync(), badTarget(2));
    await e.synchronize();
    e.dispose();
  });

  it('synchronize() rejects once with an error nobody read, then resolves', async () => {
    const { e, failing, checkValid } = setup('errors-unread');
    const stats = failing(3);
    await expectR1VRejection(e.synchronize(), 'ARGUMENT', badTarget(3));
    await e.synchronize();
    await checkValid();
    // Delivered by synchronize(), yet still the state of the tensors it should have written.
    await expectR1VRejection(stats.logprobs.toArray(), 'ARGUMENT', badTarget(3));
    await e.synchronize();
    // The blocking form (synchronizeSync) follows the same rule.
    failing(1);
    assert.throws(() => e.handle.synchronizeSync(), badTarget(1));
    e.handle.synchronizeSync();
    e.dispose();
  });

  it('an op fed with a failed tensor carries the error on, without raising a delivered error again', async () => {
    const { e, failing, checkValid } = setup('errors-propagated');
    const stats = failing(0);
    await expectR1VRejection(stats.logprobs.toArray(), 'ARGUMENT', badTarget(0));
    const downstream: Tensor<'f32'> = ops.scale(ops.add(stats.logprobs, stats.entropy), 2);
    await e.synchronize();
    await expectR1VRejection(downstream.toArray(), 'ARGUMENT', badTarget(0));
    await checkValid();
    await e.synchronize();
    e.dispose();
  });

  it('of two failures, the one a readback delivered is skipped and synchronize() raises the other', async () => {
    const { e, failing, checkValid } = setup('errors-two');
    const first = failing(1);
    failing(4);
    await expectR1VRejection(first.logprobs.toArray(), 'ARGUMENT', badTarget(1));
    await expectR1VRejection(e.synchronize(), 'ARGUMENT', badTarget(4));
    await e.synchronize();
    await checkValid();
    e.dispose();
  });
});
