import assert from 'node:assert/strict';

import { Engine, ops } from '../lib/index.js';

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

