import assert from 'node:assert/strict';

import { Engine } from '../lib/index.js';
import { relativeError } from './helpers.js';
import { philox, randnReference } from './reference/math.js';

describe('randn', () => {
  it('the reference Philox matches the published known-answer vectors', () => {
    assert.deepEqual(philox([0n, 0n, 0n, 0n], [0n, 0n]), [0x6627e8d5n, 0xe169c58dn, 0xbc57ac4cn, 0x9b00dbd8n]);
    assert.deepEqual(
      philox([0xffffffffn, 0xffffffffn, 0xffffffffn, 0xffffffffn], [0xffffffffn, 0xffffffffn]),
      [0x408f276dn, 0x41c83b0en, 0xa20bc7c6n, 0x6d5451fdn],
    );
  });

  it('matches the Philox + Box-Muller definition (seeded draws and engine draws)', async () => {
    using e = Engine.create({ device: 'cpu', seed: 123456789 });
    const seed = 2 ** 40 + 987654321; // exercises the high key word
    using seeded = e.randn([3, 37], { seed });
    assert.ok(relativeError(await seeded.toArray(), randnReference(111, seed, 0)) < 1e-6);
    using first = e.randn([50]);
    using second = e.randn([50]);
    assert.ok(relativeError(await first.toArray(), randnReference(50, 123456789, 0)) < 1e-6);
    assert.ok(relativeError(await second.toArray(), randnReference(50, 123456789, 1)) < 1e-6);
  });

  it('is reproducible from the seed and fresh between calls', async () => {
    using a = Engine.create({ device: 'cpu', seed: 99 });
    using b = Engine.create({ device: 'cpu', seed: 99 });
    const a1 = await a.randn([1000]).toArray();
    const a2 = await a.randn([1000]).toArray();
    const b1 = await b.randn([1000]).toArray();
    assert.deepEqual(a1, b1);
    assert.notDeepEqual(a1, a2);
    assert.deepEqual(await a.randn([64], { seed: 5 }).toArray(), await b.randn([64], { seed: 5 }).toArray());
  });

  it('has mean 0 and variance 1 over many samples; bf16/f16 are the rounded f32 draws', async () => {
    using e = Engine.create({ device: 'cpu', seed: Math.floor(Math.random() * 2 ** 32) });
    const n = 1 << 20;
    const x = await e.randn([n]).toArray();
    let sum = 0, sq = 0;
    for (const v of x) {
      sum += v;
      sq += v * v;
    }
    const mean = sum / n;
    const variance = sq / n - mean * mean;
    assert.ok(Math.abs(mean) < 5 / Math.sqrt(n), `mean ${mean}`);
    assert.ok(Math.abs(variance - 1) < 5 * Math.sqrt(2 / n), `variance ${variance}`);

    const f32 = await e.randn([257], { seed: 3 }).toArray();
    using bf = e.tensor(f32, [257], { dtype: 'bf16' });
    using hf = e.tensor(f32, [257], { dtype: 'f16' });
    assert.deepEqual(await e.randn([257], { seed: 3, dtype: 'bf16' }).toArray(), await bf.toArray());
    assert.deepEqual(await e.randn([257], { seed: 3, dtype: 'f16' }).toArray(), await hf.toArray());
  });
});
