import assert from 'node:assert/strict';

import { ops, R1VError } from '../lib/index.js';
import { expectR1VError, forEachDevice, randomArray, relativeError, rng } from './helpers.js';
import { mulberry32, softmaxStats } from './reference/math.js';

// ---- float64 references, written from the definitions ----

interface Truncation {
  t: number;
  topK: number;
  topP: number;
  banned?: number[];
}

/** The renormalised kept distribution of one row (0 outside the kept set), in float64. */
function keptDistribution(z: ArrayLike<number>, o: Truncation): Float64Array {
  const v = z.length;
  const banned = new Set(o.banned ?? []);
  let m = -Infinity;
  for (let j = 0; j < v; j++) if (!banned.has(j)) m = Math.max(m, z[j]! / o.t);
  const w = new Float64Array(v);
  for (let j = 0; j < v; j++) w[j] = banned.has(j) ? 0 : Math.exp(z[j]! / o.t - m);
  const order = [...Array(v).keys()].filter((j) => w[j]! > 0).sort((a, b) => w[b]! - w[a]! || a - b);
  let kept = o.topK > 0 ? order.slice(0, o.topK) : order;
  if (o.topP < 1) {
    const total = kept.reduce((s, j) => s + w[j]!, 0);
    let before = 0;
    let n = 0;
    while (n < kept.length && before < o.topP * total) before += w[kept[n++]!]!;
    kept = kept.slice(0, n);
  }
  const p = new Float64Array(v);
  const total = kept.reduce((s, j) => s + w[j]!, 0);
  for (const j of kept) p[j] = w[j]! / total;
  return p;
}

/** Upper 0.001 quantile of χ²(k) by the Wilson–Hilferty approximation (z = 3.0902). */
function chiSquareCritical(k: number): number {
  const a = 2 / (9 * k);
  return k * (1 - a + 3.0902 * Math.sqrt(a)) ** 3;
}

function repeatRow(row: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n * row.length);
  for (let i = 0; i < n; i++) out.set(row, i * row.length);
  return out;
}

function range(n: number, start = 0): number[] {
  return [...Array(n).keys()].map((i) => i + start);
}

forEachDevice('sampleTokens', { seed: 3 }, ({ device, dtypes, it }) => {
  const COMBOS: Array<[number, Truncation]> = [
    [7, { t: 1, topK: 0, topP: 1 }],
    [13, { t: 0.7, topK: 5, topP: 1 }],
    [17, { t: 1.3, topK: 0, topP: 0.8 }],
    [20, { t: 1, topK: 8, topP: 0.7, banned: [0, 3, 11] }],
    [11, { t: 0.5, topK: 0, topP: 0.95, banned: [2] }],
  ];

  for (const [v, o] of COMBOS) {
    it(`χ² goodness of fit: V=${v} T=${o.t} topK=${o.topK} topP=${o.topP} banned=${o.banned?.length ?? 0}`, async (e) => {
      const next = mulberry32(1000 + v);  // a fixed generator (not the run's seed): a deterministic test
      const row = randomArray(v, next).map((x) => x * 3);
      const n = 20000;
      using logits = e.tensor(repeatRow(row, n), [n, v]);
      const seeds = range(n).map((i) => 17 + (i % 5));
      const offsets = range(n).map((i) => Math.floor(i / 5));
      const r = ops.sampleTokens(logits, {
        seeds, offsets, temperature: o.t, topK: o.topK, topP: o.topP, bannedTokenIds: o.banned,
      });
      const tokens = await r.tokens.toArray();
      r.logprobs.dispose();
      r.entropy.dispose();
      r.tokens.dispose();
      const p = keptDistribution(row, o);
      const counts = new Float64Array(v);
      for (const tok of tokens) counts[tok]! += 1;
      for (let j = 0; j < v; j++) if (p[j] === 0) assert.equal(counts[j], 0, `token ${j} is outside the kept set`);
      // Bins with an expected count < 5 are pooled into one.
      let stat = 0;
      let bins = 0;
      let pooledObs = 0;
      let pooledExp = 0;
      for (let j = 0; j < v; j++) {
        if (p[j] === 0) continue;
        const expected = p[j]! * n;
        if (expected < 5) {
          pooledObs += counts[j]!;
          pooledExp += expected;
          continue;
        }
        stat += (counts[j]! - expected) ** 2 / expected;
        bins++;
      }
      if (pooledExp > 0) {
        stat += (pooledObs - pooledExp) ** 2 / pooledExp;
        bins++;
      }
      if (bins > 1) assert.ok(stat < chiSquareCritical(bins - 1), `χ² = ${stat} with ${bins - 1} dof`);
    });
  }

  it('ties at the top-k / top-p cut go to the lower ids', async (e) => {
    const n = 2000;
    const cases: Array<[number[], { topK: number; topP: number }, number[]]> = [
      [[1, 2, 2, 2, 0, 2], { topK: 2, topP: 1 }, [1, 2]],
      [[3, 3, 3, 3, 3, 3, 3, 3, 3, 3], { topK: 0, topP: 0.35 }, [0, 1, 2, 3]],
      [[0, 5, 5, 5, 5, 1], { topK: 3, topP: 0.6 }, [1, 2]],
    ];
    for (const [row, o, kept] of cases) {
      using logits = e.tensor(repeatRow(Float32Array.from(row), n), [n, row.length]);
      const r = ops.sampleTokens(logits, { seeds: range(n), offsets: range(n), ...o });
      const seen = new Set(await r.tokens.toArray());
      assert.deepEqual([...seen].sort((a, b) => a - b), kept, `${JSON.stringify(row)} ${JSON.stringify(o)}`);
      for (const t of [r.tokens, r.logprobs, r.entropy]) t.dispose();
    }
  });

  for (const dtype of dtypes) {
    it(`${dtype}: greedy is the argmax of the non-banned logits; stats are tokenStats at T = 1`, async (e) => {
      const next = rng(`sample-greedy-${device}-${dtype}`);
      const n = 9;
      const v = 1001;
      using logits = e.tensor(randomArray(n * v, next).map((x) => x * 4), [n, v], { dtype });
      const z = await logits.toArray();  // the values as stored (rounded for 16-bit dtypes)
      // Ban every row's argmax in the first row, so greedy must skip it there.
      let first = 0;
      for (let j = 1; j < v; j++) if (z[j]! > z[first]!) first = j;
      const r = ops.sampleTokens(logits, { seeds: range(n), offsets: range(n), temperature: 0, bannedTokenIds: [first] });
      const tokens = await r.tokens.toArray();
      const logp = await r.logprobs.toArray();
      const ent = await r.entropy.toArray();
      const refLogp: number[] = [];
      const refEnt: number[] = [];
      for (let i = 0; i < n; i++) {
        let best = -1;
        for (let j = 0; j < v; j++) if (j !== first && (best < 0 || z[i * v + j]! > z[i * v + best]!)) best = j;
        assert.equal(tokens[i], best, `row ${i}`);
        const s = softmaxStats(z.subarray(i * v, (i + 1) * v), 1, v, [best], 1);
        refLogp.push(s.logp[0]!);
        refEnt.push(s.entropy[0]!);
      }
      const tol = dtype === 'f32' ? 1e-4 : 2e-2;
      assert.ok(relativeError(logp, refLogp) <= tol, 'logprobs');
      assert.ok(relativeError(ent, refEnt) <= tol, 'entropy');
      for (const t of [r.tokens, r.logprobs, r.entropy]) t.dispose();
    });

    it(`${dtype}: logprobs/entropy of softmax(z/T) over all tokens match float64 and tokenStats`, async (e) => {
      const next = rng(`sample-stats-${device}-${dtype}`);
      const n = 6;
      const v = 4099;
      const t = 0.7;
      using logits = e.tensor(randomArray(n * v, next).map((x) => x * 5), [n, v], { dtype });
      const z = await logits.toArray();
      const r = ops.sampleTokens(logits, { seeds: range(n, 100), offsets: range(n), temperature: t, topK: 40, topP: 0.9, bannedTokenIds: [1, 2] });
      const tokens = await r.tokens.toArray();
      const refLogp: number[] = [];
      const refEnt: number[] = [];
      for (let i = 0; i < n; i++) {
        const zi = z.subarray(i * v, (i + 1) * v);
        const p = keptDistribution(zi, { t, topK: 40, topP: 0.9, banned: [1, 2] });
        assert.ok(p[tokens[i]!]! > 0, `row ${i}: token ${tokens[i]} outside the kept set`);
        const s = softmaxStats(zi, 1, v, [tokens[i]!], t);
        refLogp.push(s.logp[0]!);
        refEnt.push(s.entropy[0]!);
      }
      const tol = dtype === 'f32' ? 1e-4 : 2e-2;
      assert.ok(relativeError(await r.logprobs.toArray(), refLogp) <= tol, 'logprobs');
      assert.ok(relativeError(await r.entropy.toArray(), refEnt) <= tol, 'entropy');
      using targets = e.tensor(tokens, [n], { dtype: 'i32' });
      const ts = ops.tokenStats(logits, targets, { temperature: t });
      assert.ok(relativeError(await r.logprobs.toArray(), await ts.logprobs.toArray()) <= 1e-6, 'vs tokenStats');
      for (const x of [r.tokens, r.logprobs, r.entropy, ts.logprobs, ts.entropy]) x.dispose();
    });
  }

  it('a row draws the same token whatever its batch and position (same seed and offset)', async (e) => {
    const next = rng(`sample-repro-${device}`);
    const v = 997;
    const rows = [0, 1, 2, 3].map(() => randomArray(v, next).map((x) => x * 2));
    const seeds = [5n, 2n ** 63n + 9n, 0n, 123456789n];
    const offsets = [0, 7, 3, 1];
    const opts = { temperature: 1.1, topK: 100, topP: 0.95 };
    const all = new Float32Array(4 * v);
    rows.forEach((row, i) => all.set(row, i * v));
    using a = e.tensor(all, [4, v]);
    const ra = ops.sampleTokens(a, { seeds: BigUint64Array.from(seeds), offsets, ...opts });
    const ta = await ra.tokens.toArray();
    // Reversed, inside a larger batch with other rows around.
    const order = [3, 2, 1, 0];
    const bigger = new Float32Array(6 * v);
    bigger.set(randomArray(v, next), 0);
    order.forEach((src, i) => bigger.set(rows[src]!, (i + 1) * v));
    bigger.set(randomArray(v, next), 5 * v);
    using b = e.tensor(bigger, [6, v]);
    const rb = ops.sampleTokens(b, {
      seeds: BigUint64Array.from([1n, ...order.map((i) => seeds[i]!), 4n]),
      offsets: [9, ...order.map((i) => offsets[i]!), 9],
      ...opts,
    });
    const tb = await rb.tokens.toArray();
    order.forEach((src, i) => assert.equal(tb[i + 1], ta[src], `row ${src}`));
    // A different offset changes the draw for at least one of many rows.
    const n = 64;
    using many = e.tensor(repeatRow(rows[0]!, n), [n, v]);
    const rc = ops.sampleTokens(many, { seeds: range(n).map(() => 5), offsets: range(n), ...opts });
    assert.ok(new Set(await rc.tokens.toArray()).size > 1, 'offsets must change the draw');
    for (const x of [ra, rb, rc]) for (const t of [x.tokens, x.logprobs, x.entropy]) t.dispose();
  });

  it('V = 151674: tokens stay in the float64 kept set; banned never drawn', async (e) => {
    const next = rng(`sample-large-${device}`);
    const n = 3;
    const v = 151674;
    const z = randomArray(n * v, next).map((x) => x * 8);
    using logits = e.tensor(z, [n, v]);
    for (const o of [{ t: 1, topK: 0, topP: 1 }, { t: 0.8, topK: 50, topP: 0.9 }, { t: 1, topK: 0, topP: 0.5 }]) {
      const banned = range(n).map((i) => {
        let best = 0;
        for (let j = 1; j < v; j++) if (z[i * v + j]! > z[i * v + best]!) best = j;
        return best;
      });
      const r = ops.sampleTokens(logits, { seeds: [1, 2, 3], offsets: [4, 5, 6], temperature: o.t, topK: o.topK, topP: o.topP, bannedTokenIds: banned });
      const tokens = await r.tokens.toArray();
      for (let i = 0; i < n; i++) {
        assert.ok(!banned.includes(tokens[i]!), `row ${i} drew a banned token`);
        if (o.topK > 0 || o.topP < 1) {
          const p = keptDistribution(z.subarray(i * v, (i + 1) * v), { ...o, banned });
          assert.ok(p[tokens[i]!]! > 0, `row ${i}: token ${tokens[i]} outside the kept set`);
        }
      }
      for (const t of [r.tokens, r.logprobs, r.entropy]) t.dispose();
    }
  });

  it('bad options are R1VError(ARGUMENT) naming the option', (e) => {
    using logits = e.tensor(randomArray(2 * 5, rng(`sample-bad-${device}`)), [2, 5]);
    const ok = { seeds: [1, 2], offsets: [0, 0] };
    const bad: Array<[object, RegExp]> = [
      [{ ...ok, topP: 0 }, /topP/],
      [{ ...ok, topP: 1.5 }, /topP/],
      [{ ...ok, topK: -1 }, /topK/],
      [{ ...ok, topK: 1.5 }, /topK/],
      [{ ...ok, temperature: -1 }, /temperature/],
      [{ ...ok, seeds: [1] }, /seeds/],
      [{ ...ok, seeds: [1, -1] }, /seeds/],
      [{ ...ok, seeds: [1, 2 ** 53] }, /seeds/],
      [{ ...ok, offsets: [0, 0, 0] }, /offsets/],
      [{ ...ok, offsets: [0, -1] }, /offsets/],
      [{ ...ok, bannedTokenIds: [5] }, /bannedTokenIds/],
      [{ ...ok, topk: 3 }, /topk/],
      [{ offsets: [0, 0] }, /seeds/],
    ];
    for (const [options, pattern] of bad) {
      expectR1VError(() => ops.sampleTokens(logits, options as never), 'ARGUMENT', pattern);
    }
    expectR1VError(() => ops.sampleTokens(logits, undefined as never), 'ARGUMENT', /sampleTokens/);
  });

  it('a row where every token is banned rejects at readback', async (e) => {
    using logits = e.tensor(randomArray(2 * 4, rng(`sample-banned-${device}`)), [2, 4]);
    const r = ops.sampleTokens(logits, { seeds: [1, 2], offsets: [0, 0], bannedTokenIds: [0, 1, 2, 3] });
    await assert.rejects(r.tokens.toArray(), (error: unknown) => {
      assert.ok(error instanceof R1VError, String(error));
      assert.equal(error.code, 'ARGUMENT');
      assert.match(error.message, /nothing to sample/);
      return true;
    });
    for (const t of [r.tokens, r.logprobs, r.entropy]) t.dispose();
  });
});
