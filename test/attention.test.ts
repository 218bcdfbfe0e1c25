import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { Engine, ops } from '../lib/index.js';
import { expectR1VError, forEachDevice, randomArray, relativeError, rng } from './helpers.js';
import { centralDifferenceAlong } from './reference/diff.js';
import { type AttentionProblem, attentionReference, offsets } from './reference/layers.js';
import { dot } from './reference/math.js';

// One attention problem of the tests: the packed form of the reference, and whether it is
// passed dense ([B, S, H, D]: the same memory; only lse is laid out differently).
interface Case extends AttentionProblem {
  title: string;
  dense: boolean; // all lengths equal and passed as [B, S, H, D]
}

function denseCase(title: string, b: number, sq: number, sk: number, hq: number, hkv: number, d: number,
  causal: boolean, scale?: number): Case {
  return { title, hq, hkv, d, causal, scale, lensQ: Array(b).fill(sq), lensK: Array(b).fill(sk), dense: true };
}

function shapes(c: Case): { q: number[]; kv: number[]; lse: number[] } {
  const tq = c.lensQ.reduce((a, b) => a + b, 0);
  const tk = c.lensK.reduce((a, b) => a + b, 0);
  if (!c.dense) return { q: [tq, c.hq, c.d], kv: [tk, c.hkv, c.d], lse: [c.hq, tq] };
  const b = c.lensQ.length;
  return { q: [b, c.lensQ[0]!, c.hq, c.d], kv: [b, c.lensK[0]!, c.hkv, c.d], lse: [b, c.hq, c.lensQ[0]!] };
}

function options(c: Case): ops.AttentionOptions {
  return {
    causal: c.causal,
    ...(c.scale !== undefined ? { scale: c.scale } : {}),
    ...(c.dense ? {} : { cuSeqlensQ: Int32Array.from(offsets(c.lensQ)), cuSeqlensK: offsets(c.lensK) }),
  };
}

// The packed [Hq, Tq] reference lse in the op's layout ([B, Hq, Sq] when dense).
function lseInLayout(c: Case, lse: Float64Array): Float64Array {
  if (!c.dense) return lse;
  const b = c.lensQ.length;
  const sq = c.lensQ[0]!;
  const out = new Float64Array(lse.length);
  for (let h = 0; h < c.hq; h++) {
    for (let bi = 0; bi < b; bi++) {
      for (let i = 0; i < sq; i++) out[(bi * c.hq + h) * sq + i] = lse[h * b * sq + bi * sq + i]!;
    }
  }
  return out;
}

// −∞ exactly where the reference has it; relative error over the rest.
function lseError(got: Float32Array, ref: Float64Array): number {
  const finite: number[] = [];
  const finiteRef: number[] = [];
  for (let i = 0; i < ref.length; i++) {
    if (ref[i] === -Infinity) assert.equal(got[i], -Infinity, `lse[${i}] should be -inf (no visible key)`);
    else {
      finite.push(got[i]!);
      finiteRef.push(ref[i]!);
    }
  }
  return relativeError(finite, finiteRef);
}

const CASES: Case[] = [
  denseCase('dense 2×37, D=64', 2, 37, 37, 2, 2, 64, false),
  denseCase('dense causal 2×37, D=64', 2, 37, 37, 2, 2, 64, true),
  denseCase('decode Sq=1, Sk=45, causal, GQA 4/2', 2, 1, 45, 4, 2, 64, true),
  denseCase('causal Sq=70 > Sk=33 (rows without keys), D=8', 1, 70, 33, 2, 1, 8, true),
  denseCase('Sq=70 > Sk=33, not causal, D=8', 1, 70, 33, 2, 1, 8, false),
  denseCase('Sq=33 < Sk=150 causal, two key blocks, D=72', 1, 33, 150, 2, 2, 72, true),
  denseCase('Sq=33 < Sk=150, D=72', 1, 33, 150, 2, 2, 72, false),
  denseCase('one-row batch causal 1×130 (not a tile multiple), GQA 3/1, D=128', 1, 130, 130, 3, 1, 128, true),
  denseCase('D=256, 9×17', 1, 9, 17, 1, 1, 256, false),
  denseCase('scale 0.3, 3×19×23, D=64', 3, 19, 23, 2, 1, 64, false, 0.3),
  denseCase('Sq=1, Sk=1', 1, 1, 1, 1, 1, 16, true),
  denseCase('no keys at all (Sk=0)', 2, 3, 0, 2, 1, 8, false),
  denseCase('no queries (Sq=0)', 2, 0, 5, 2, 1, 8, true),
  {
    title: 'packed, lengths incl. 1 and 0, GQA 4/2, D=64', hq: 4, hkv: 2, d: 64, causal: false,
    lensQ: [1, 0, 39, 5, 2], lensK: [3, 0, 37, 100, 0], dense: false,
  },
  {
    title: 'packed causal, lengths incl. 1 and 0, GQA 4/2, D=64', hq: 4, hkv: 2, d: 64, causal: true,
    lensQ: [1, 0, 39, 5, 2, 70], lensK: [3, 0, 37, 100, 0, 66], dense: false,
  },
  {
    title: 'packed causal, scale 0.5, D=24', hq: 2, hkv: 2, d: 24, causal: true, scale: 0.5,
    lensQ: [65, 1], lensK: [65, 1], dense: false,
  },
];

forEachDevice('attention', { seed: 5 }, ({ device, dtypes, it }) => {
  for (const dtype of dtypes) {
    const tol = dtype === 'f32' ? 1e-4 : 2e-2;
    for (const c of CASES) {
      it(`${dtype} ${c.title}: out, lse, dq, dk, dv against float64`, async (e) => {
        const next = rng(`attention-${device}-${dtype}-${c.title}`);
        const sh = shapes(c);
        const n = (s: number[]) => s.reduce((a, b) => a * b, 1);
        const q = randomArray(n(sh.q), next);
        const k = randomArray(n(sh.kv), next);
        const v = randomArray(n(sh.kv), next);
        const dOut = randomArray(n(sh.q), next);
        // Scores of a useful size: scale the inputs so softmax is neither uniform nor one-hot.
        for (const x of [q, k]) for (let i = 0; i < x.length; i++) x[i]! *= 2;
        using tq = e.tensor(q, sh.q, { dtype });
        using tk = e.tensor(k, sh.kv, { dtype });
        using tv = e.tensor(v, sh.kv, { dtype });
        using tdo = e.tensor(dOut, sh.q, { dtype });
        // 16-bit runs compare with the reference on the rounded inputs.
        const [qr, kr, vr, dor] = await Promise.all([tq.toArray(), tk.toArray(), tv.toArray(), tdo.toArray()]);
        const ref = attentionReference(c, qr, kr, vr, dor);

        const { out, lse } = ops.attention(tq, tk, tv, options(c));
        using _o = out;
        using _l = lse;
        assert.deepEqual(out.shape, sh.q);
        assert.deepEqual(lse.shape, sh.lse);
        assert.equal(lse.dtype, 'f32');
        const outErr = relativeError(await out.toArray(), ref.out);
        assert.ok(outErr <= tol, `out rel err ${outErr}`);
        const lseErr = lseError(await lse.toArray(), lseInLayout(c, ref.lse));
        assert.ok(lseErr <= tol, `lse rel err ${lseErr}`);

        const g = ops.attentionBackward(tq, tk, tv, out, lse, tdo, options(c));
        using dq = g.dq;
        using dk = g.dk;
        using dv = g.dv;
        assert.deepEqual(dq.shape, sh.q);
        assert.deepEqual(dk.shape, sh.kv);
        assert.deepEqual(dv.shape, sh.kv);
        for (const [name, t, r] of [['dq', dq, ref.dq], ['dk', dk, ref.dk], ['dv', dv, ref.dv]] as const) {
          const err = relativeError(await t.toArray(), r);
          assert.ok(err <= tol, `${name} rel err ${err}`);
        }
      });
    }
  }

  it('rows without keys: out 0, lse -inf, zero gradients', async (e) => {
    const c = denseCase('', 1, 6, 2, 1, 1, 8, true);
    const next = rng(`attention-nokeys-${device}`);
    using q = e.tensor(randomArray(48, next), [1, 6, 1, 8]);
    using k = e.tensor(randomArray(16, next), [1, 2, 1, 8]);
    using v = e.tensor(randomArray(16, next), [1, 2, 1, 8]);
    using dOut = e.tensor(randomArray(48, next), [1, 6, 1, 8]);
    const { out, lse } = ops.attention(q, k, v, options(c));
    using _o = out;
    using _l = lse;
    const o = await out.toArray();
    const l = await lse.toArray();
    // Query i sees keys j ≤ i − 4: rows 0..3 see none.
    for (let i = 0; i < 4; i++) {
      assert.equal(l[i], -Infinity);
      for (let x = 0; x < 8; x++) assert.equal(o[i * 8 + x], 0);
    }
    assert.ok(Number.isFinite(l[4]) && Number.isFinite(l[5]));
    const g = ops.attentionBackward(q, k, v, out, lse, dOut, options(c));
    using dq = g.dq;
    using _k = g.dk;
    using _v = g.dv;
    const dqa = await dq.toArray();
    for (let x = 0; x < 32; x++) assert.equal(dqa[x], 0);
  });

  it('gradients match central finite differences of the float64 forward', async (e) => {
    const next = rng(`attention-fd-${device}`);
    const cases: Case[] = [
      denseCase('', 2, 5, 7, 4, 2, 8, true),
      denseCase('', 1, 7, 3, 2, 1, 16, true, 0.7),
      { title: '', hq: 2, hkv: 1, d: 8, causal: false, lensQ: [3, 0, 1, 4], lensK: [2, 5, 0, 4], dense: false },
    ];
    for (const c of cases) {
      const sh = shapes(c);
      const n = (s: number[]) => s.reduce((a, b) => a * b, 1);
      const q = randomArray(n(sh.q), next);
      const k = randomArray(n(sh.kv), next);
      const v = randomArray(n(sh.kv), next);
      const w = randomArray(n(sh.q), next); // L = Σ w·out, so dOut = w
      using tq = e.tensor(q, sh.q);
      using tk = e.tensor(k, sh.kv);
      using tv = e.tensor(v, sh.kv);
      using tw = e.tensor(w, sh.q);
      const { out, lse } = ops.attention(tq, tk, tv, options(c));
      using _o = out;
      using _l = lse;
      const g = ops.attentionBackward(tq, tk, tv, out, lse, tw, options(c));
      using dq = g.dq;
      using dk = g.dk;
      using dv = g.dv;
      const grads = [await dq.toArray(), await dk.toArray(), await dv.toArray()];
      const dirs = [q, k, v].map((x) => randomArray(x.length, next));
      const fd = centralDifferenceAlong(([qe, ke, ve]) => dot(attentionReference(c, qe!, ke!, ve!).out, w), [q, k, v], dirs, 1e-4);
      let analytic = 0;
      for (let t = 0; t < 3; t++) for (let i = 0; i < grads[t]!.length; i++) analytic += grads[t]![i]! * dirs[t]![i]!;
      assert.ok(Math.abs(fd - analytic) <= 1e-4 * Math.max(1, Math.abs(fd)), `fd ${fd} vs backward ${analytic}`);
    }
  });

  if (device === 'cpu') {
    it('every CPU ISA path (AVX-512, AVX2, portable), 1 and 2 threads, agrees with float64', function () {
      this.timeout(300_000);
      const checks = [
        denseCase('', 2, 70, 150, 4, 2, 72, true), // key block + tile tails, GQA, Sq < Sk
        denseCase('', 1, 9, 5, 2, 2, 8, true), // rows without keys
        { title: '', hq: 2, hkv: 1, d: 40, causal: false, lensQ: [1, 0, 66, 3], lensK: [4, 2, 0, 130], dense: false },
      ];
      const arg = JSON.stringify(checks.map((c) => ({ ...shapes(c), options: options(c) })), (_, x: unknown) =>
        x instanceof Int32Array ? Array.from(x) : x);
      const script = fileURLToPath(new URL('./fixtures/attention-check.ts', import.meta.url));
      for (const isa of ['avx512', 'avx2', 'generic']) {
        for (const threads of ['1', '2']) {
          const run = spawnSync(process.execPath, ['--import', 'tsx', script, arg], {
            env: { ...process.env, R1V_CPU_ISA: isa, R1V_NUM_THREADS: threads },
            encoding: 'utf8',
            maxBuffer: 1 << 28,
          });
          assert.equal(run.status, 0, `isa=${isa} threads=${threads}: ${run.stderr}`);
          type Arrays = Record<string, Array<number | null>>;
          const report = JSON.parse(run.stdout.trim().split('\n').pop()!) as {
            isa: string; results: Array<{ inputs: Arrays; outputs: Arrays }>;
          };
          checks.forEach((c, i) => {
            const { inputs, outputs } = report.results[i]!;
            const ref = attentionReference(c, inputs.q as number[], inputs.k as number[], inputs.v as number[], inputs.dOut as number[]);
            const lse = Float32Array.from(outputs.lse!, (x) => x ?? -Infinity);
            const errors = {
              out: relativeError(outputs.out as number[], ref.out), lse: lseError(lse, lseInLayout(c, ref.lse)),
              dq: relativeError(outputs.dq as number[], ref.dq), dk: relativeError(outputs.dk as number[], ref.dk),
              dv: relativeError(outputs.dv as number[], ref.dv),
            };
            for (const [name, err] of Object.entries(errors)) {
              assert.ok(err <= 1e-4, `isa=${isa} (ran ${report.isa}) threads=${threads} case ${i}: ${name} rel err ${err}`);
            }
          });
        }
      }
    });
  }

  it('rejects bad input naming the argument', (e) => {
    const t = (shape: number[]) => e.randn(shape);
    using q = t([2, 5, 4, 8]);
    using k = t([2, 6, 2, 8]);
    using v = t([2, 6, 2, 8]);
    expectR1VError(() => ops.attention(q, t([2, 6, 2, 16]), t([2, 6, 2, 16])), 'SHAPE', /attention: k has head dim 16/);
    expectR1VError(() => ops.attention(q, k, t([2, 6, 1, 8])), 'SHAPE', /attention: v must have shape/);
    expectR1VError(() => ops.attention(q, t([3, 6, 2, 8]), t([3, 6, 2, 8])), 'SHAPE', /k has batch 3/);
    expectR1VError(() => ops.attention(q, t([2, 6, 3, 8]), t([2, 6, 3, 8])), 'SHAPE', /multiple of k's/);
    expectR1VError(() => ops.attention(t([5, 4, 8]), k, v), 'SHAPE', /q must be 4-D/);
    expectR1VError(() => ops.attention(t([1, 2, 1, 12]), t([1, 2, 1, 12]), t([1, 2, 1, 12])), 'SHAPE', /head dim/);
    expectR1VError(() => ops.attention(t([1, 2, 1, 264]), t([1, 2, 1, 264]), t([1, 2, 1, 264])), 'SHAPE', /head dim/);
    expectR1VError(() => ops.attention(q, k, v, { scale: Infinity }), 'ARGUMENT', /scale/);
    expectR1VError(() => ops.attention(q, k, v, { causl: true } as never), 'ARGUMENT', /causl/);
    using b16 = e.randn([2, 6, 2, 8], { dtype: 'bf16' });
    expectR1VError(() => ops.attention(q, b16 as never, v), 'DTYPE', /attention: k has dtype bf16/);
    using qb = e.randn([2, 5, 4, 8], { dtype: 'bf16' });
    expectR1VError(() => ops.attention(qb, b16, b16), 'DTYPE', /attention: q is bf16/);
    using other = Engine.create({ device: 'cpu' });
    using vo = other.randn([2, 6, 2, 8]);
    expectR1VError(() => ops.attention(q, k, vo), 'DEVICE', /attention: v .* different engines/);
    expectR1VError(() => ops.attention(q, k, {} as never), 'ARGUMENT', /attention: v must be a Tensor/);

    // Packed layout.
    using pq = t([6, 2, 8]);
    using pk = t([7, 1, 8]);
    using pv = t([7, 1, 8]);
    const ok = { cuSeqlensQ: [0, 2, 6], cuSeqlensK: [0, 3, 7] };
    expectR1VError(() => ops.attention(pq, pk, pv, { cuSeqlensQ: ok.cuSeqlensQ }), 'ARGUMENT', /cuSeqlensK/);
    expectR1VError(() => ops.attention(pq, pk, pv, { ...ok, cuSeqlensQ: [0, 4, 2, 6] }), 'ARGUMENT', /cuSeqlensQ must be non-decreasing/);
    expectR1VError(() => ops.attention(pq, pk, pv, { ...ok, cuSeqlensK: [1, 3, 7] }), 'ARGUMENT', /cuSeqlensK\[0\]/);
    expectR1VError(() => ops.attention(pq, pk, pv, { ...ok, cuSeqlensK: [0, 3, 8] }), 'SHAPE', /cuSeqlensK ends at 8 but k has 7/);
    expectR1VError(() => ops.attention(pq, pk, pv, { ...ok, cuSeqlensQ: [0, 6] }), 'SHAPE', /cuSeqlensQ has 2 entries/);
    expectR1VError(() => ops.attention(pq, pk, pv, { ...ok, cuSeqlensQ: [0, 2.5, 6] }), 'ARGUMENT', /cuSeqlensQ\[1\]/);
    expectR1VError(() => ops.attention(q, k, v, ok), 'SHAPE', /q must be 3-D/);

    // Backward: the extra tensors.
    const { out, lse } = ops.attention(q, k, v);
    using _o = out;
    using _l = lse;
    expectR1VError(() => ops.attentionBackward(q, k, v, out, t([2, 4, 4]), out), 'SHAPE', /attentionBackward: lse must have shape \[2, 4, 5\]/);
    expectR1VError(() => ops.attentionBackward(q, k, v, out, lse, t([2, 5, 4, 16])), 'SHAPE', /dOut must have shape/);
    expectR1VError(() => ops.attentionBackward(q, k, v, t([2, 5, 4, 16]), lse, out), 'SHAPE', /out must have shape/);
    expectR1VError(() => ops.attentionBackward(q, k, v, out, lse, qb as never), 'DTYPE', /dOut has dtype bf16/);
    expectR1VError(() => ops.attentionBackward(q, k, v, out, out as never, out), 'SHAPE', /lse/);
    expectR1VError(() => ops.attentionBackward(q, k, v, out, lse, out, { causal: true, cuSeqlensK: [0, 6, 12] }), 'ARGUMENT', /cuSeqlensQ/);
  });
});

// ---- KV cache: seqUsedK ----

interface CacheCase {
  title: string;
  hq: number;
  hkv: number;
  d: number;
  causal: boolean;
  lensQ: number[];
  used: number[];
  maxLen: number;
}

const CACHE_CASES: CacheCase[] = [
  { title: 'decode Sq=1, GQA 4/2, D=64', hq: 4, hkv: 2, d: 64, causal: true, lensQ: [1, 1, 1], used: [5, 17, 40], maxLen: 48 },
  { title: 'chunked prefill, causal, GQA 4/1, D=64', hq: 4, hkv: 1, d: 64, causal: true, lensQ: [7, 20, 1], used: [30, 20, 9], maxLen: 40 },
  { title: 'chunked prefill over key blocks, causal, D=128', hq: 2, hkv: 2, d: 128, causal: true, lensQ: [65, 3], used: [130, 77], maxLen: 150 },
  { title: 'not causal, used = 0 and a full slot, D=24', hq: 2, hkv: 1, d: 24, causal: false, lensQ: [3, 2, 4], used: [0, 9, 5], maxLen: 9 },
  { title: 'decode with used = 0, causal, D=8', hq: 2, hkv: 2, d: 8, causal: true, lensQ: [1, 1], used: [0, 3], maxLen: 6 },
];

/** Rows [b·maxLen, b·maxLen + used[b]) of a cache [B·maxLen, H, D], packed into [Σused, H, D]. */
function compactCache(cache: ArrayLike<number>, c: CacheCase, heads: number): Float32Array {
  const row = heads * c.d;
  const out = new Float32Array(c.used.reduce((a, b) => a + b, 0) * row);
  let at = 0;
  c.used.forEach((u, b) => {
    for (let i = 0; i < u * row; i++) out[at + i] = cache[b * c.maxLen * row + i]!;
    at += u * row;
  });
  return out;
}

/** A cache whose used rows are random and whose other rows are huge garbage (a kernel reading them fails). */
function cacheWithGarbage(c: CacheCase, heads: number, next: () => number): Float32Array {
  const row = heads * c.d;
  const out = randomArray(c.used.length * c.maxLen * row, next);
  c.used.forEach((u, b) => {
    for (let i = u * row; i < c.maxLen * row; i++) out[b * c.maxLen * row + i] = (next() < 0.5 ? -1 : 1) * 1e30 * (1 + next());
  });
  return out;
}

forEachDevice('attention with a KV cache (seqUsedK)', { seed: 6 }, ({ device, dtypes, it }) => {
  for (const dtype of dtypes) {
    const tol = dtype === 'f32' ? 1e-4 : 2e-2;
    for (const c of CACHE_CASES) {
      it(`${dtype} ${c.title}: equals attention on the compacted cache and float64`, async (e) => {
        const next = rng(`attention-cache-${device}-${dtype}-${c.title}`);
        const tq = c.lensQ.reduce((a, b) => a + b, 0);
        const q = randomArray(tq * c.hq * c.d, next).map((x) => 2 * x);
        const kCache = cacheWithGarbage(c, c.hkv, next);
        const vCache = cacheWithGarbage(c, c.hkv, next);
        for (let i = 0; i < kCache.length; i++) if (Math.abs(kCache[i]!) < 1e29) kCache[i]! *= 2;
        const slots = c.used.length * c.maxLen;
        using qt = e.tensor(q, [tq, c.hq, c.d], { dtype });
        using kt = e.tensor(kCache, [slots, c.hkv, c.d], { dtype });
        using vt = e.tensor(vCache, [slots, c.hkv, c.d], { dtype });
        const cuSeqlensQ = offsets(c.lensQ);
        const cuSeqlensK = offsets(c.used.map(() => c.maxLen));
        const r = ops.attention(qt, kt, vt, { causal: c.causal, cuSeqlensQ, cuSeqlensK, seqUsedK: Int32Array.from(c.used) });
        using out = r.out;
        using lse = r.lse;

        // The same problem on compacted K/V (the cache rows as stored, rounded for 16-bit).
        const kc = compactCache(await kt.toArray(), c, c.hkv);
        const vc = compactCache(await vt.toArray(), c, c.hkv);
        const used = c.used.reduce((a, b) => a + b, 0);
        using kct = e.tensor(kc, [used, c.hkv, c.d], { dtype });
        using vct = e.tensor(vc, [used, c.hkv, c.d], { dtype });
        const plain = ops.attention(qt, kct, vct, { causal: c.causal, cuSeqlensQ, cuSeqlensK: offsets(c.used) });
        using plainOut = plain.out;
        using plainLse = plain.lse;
        const ref = attentionReference(
          { hq: c.hq, hkv: c.hkv, d: c.d, causal: c.causal, lensQ: c.lensQ, lensK: c.used },
          await qt.toArray(), kc, vc,
        );
        const o = await out.toArray();
        const l = await lse.toArray();
        assert.ok(relativeError(o, ref.out) <= tol, `out vs float64: ${relativeError(o, ref.out)}`);
        assert.ok(lseError(l, ref.lse) <= tol, `lse vs float64: ${lseError(l, ref.lse)}`);
        assert.ok(relativeError(o, await plainOut.toArray()) <= 1e-5, 'out vs compacted attention');
        assert.ok(lseError(l, Float64Array.from(await plainLse.toArray())) <= 1e-5, 'lse vs compacted attention');
        // A sequence with no used keys: out 0, lse −inf.
        c.used.forEach((u, b) => {
          if (u > 0) return;
          for (let i = cuSeqlensQ[b]!; i < cuSeqlensQ[b + 1]!; i++) {
            for (let x = 0; x < c.hq * c.d; x++) assert.equal(o[i * c.hq * c.d + x], 0);
            for (let h = 0; h < c.hq; h++) assert.equal(l[h * tq + i], -Infinity);
          }
        });
      });
    }
  }

  it('checks seqUsedK and rejects it in attentionBackward', (e) => {
    const next = rng(`attention-cache-bad-${device}`);
    using q = e.tensor(randomArray(2 * 2 * 8, next), [2, 2, 8]);
    using k = e.tensor(randomArray(8 * 1 * 8, next), [8, 1, 8]);
    using v = e.tensor(randomArray(8 * 1 * 8, next), [8, 1, 8]);
    const ok = { cuSeqlensQ: [0, 1, 2], cuSeqlensK: [0, 4, 8] };
    expectR1VError(() => ops.attention(q, k, v, { ...ok, seqUsedK: [1] }), 'SHAPE', /seqUsedK has 1 entries/);
    expectR1VError(() => ops.attention(q, k, v, { ...ok, seqUsedK: [1, 5] }), 'ARGUMENT', /seqUsedK\[1\] = 5 is outside \[0, 4\]/);
    expectR1VError(() => ops.attention(q, k, v, { ...ok, seqUsedK: [-1, 2] }), 'ARGUMENT', /seqUsedK\[0\]/);
    expectR1VError(() => ops.attention(q, k, v, { ...ok, seqUsedK: [1.5, 2] }), 'ARGUMENT', /seqUsedK\[0\]/);
    using qd = e.tensor(randomArray(16, next), [1, 2, 1, 8]);
    using kd = e.tensor(randomArray(16, next), [1, 2, 1, 8]);
    expectR1VError(() => ops.attention(qd, kd, kd, { seqUsedK: [1] }), 'ARGUMENT', /seqUsedK needs the packed layout/);
    const { out, lse } = ops.attention(q, k, v, { ...ok, seqUsedK: [2, 3] });
    using _o = out;
    using _l = lse;
    expectR1VError(() => ops.attentionBackward(q, k, v, out, lse, out, { ...ok, seqUsedK: [2, 3] }), 'ARGUMENT',
      /attentionBackward: seqUsedK .* forward only/);
  });
});
