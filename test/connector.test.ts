import assert from 'node:assert/strict';

import { Engine, type FloatDType, ops, type Tensor } from '../lib/index.js';
import type { ConnectorParams } from '../lib/ops/connector.js';
import { expectR1VError, forEachDevice, randomArray, relativeError, rng } from './helpers.js';
import { centralDifferenceAlong } from './reference/diff.js';
import { linearReference, normBackwardReference, normReference, pixelShuffleReference } from './reference/layers.js';
import { dot, gelu, geluDerivative } from './reference/math.js';

// ---------------------------------------------------------------- float64 reference

interface Dims { B: number; h: number; w: number; C: number; H: number }
type Arrays = Record<'x' | 'lnWeight' | 'lnBias' | 'w1' | 'b1' | 'w2' | 'b2', Float64Array>;
type Grads = Record<'dx' | 'dLnWeight' | 'dLnBias' | 'dW1' | 'dB1' | 'dW2' | 'dB2', Float64Array>;
const PARAMS = ['lnWeight', 'lnBias', 'w1', 'b1', 'w2', 'b2'] as const;

// y = GELU(LayerNorm(pixelShuffle(x))·W1ᵀ + b1)·W2ᵀ + b2, with the intermediates the backward needs.
function forwardRef(v: Arrays, d: Dims, eps: number) {
  const T = d.B * (d.h / 2) * (d.w / 2);
  const K = 4 * d.C;
  const s = pixelShuffleReference(v.x, d);
  const n = normReference(s, v.lnWeight, v.lnBias, K, eps).y;
  const z1 = linearReference(n, T, K, false, v.w1, d.H, K, true, v.b1, 'none');
  const a1 = z1.map(gelu);
  const y = linearReference(a1, T, d.H, false, v.w2, d.H, d.H, true, v.b2, 'none');
  return { T, K, s, n, z1, a1, y };
}

function backwardRef(v: Arrays, d: Dims, eps: number, dY: Float64Array): Grads {
  const { T, K, s, n, z1, a1 } = forwardRef(v, d, eps);
  const H = d.H;
  const dW2 = new Float64Array(H * H), dB2 = new Float64Array(H), dW1 = new Float64Array(H * K), dB1 = new Float64Array(H);
  const dz1 = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < H; o++) {
      const dy = dY[t * H + o]!;
      dB2[o]! += dy;
      for (let q = 0; q < H; q++) dW2[o * H + q]! += dy * a1[t * H + q]!;
    }
    for (let q = 0; q < H; q++) {
      let da = 0;
      for (let o = 0; o < H; o++) da += dY[t * H + o]! * v.w2[o * H + q]!;
      dz1[t * H + q] = da * geluDerivative(z1[t * H + q]!);
    }
  }
  const dn = new Float64Array(T * K);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < H; o++) {
      const dz = dz1[t * H + o]!;
      dB1[o]! += dz;
      for (let q = 0; q < K; q++) {
        dW1[o * K + q]! += dz * n[t * K + q]!;
        dn[t * K + q]! += dz * v.w1[o * K + q]!;
      }
    }
  }
  const ln = normBackwardReference(s, v.lnWeight, true, K, eps, dn);
  // Inverse shuffle: the index map of the pixel shuffle, applied to position numbers.
  const dx = new Float64Array(v.x.length);
  const positions = pixelShuffleReference(Float64Array.from(v.x, (_, i) => i), d);
  positions.forEach((xi, q) => {
    dx[xi] = ln.dx[q]!;
  });
  return { dx, dLnWeight: ln.dWeight, dLnBias: ln.dBias, dW1, dB1, dW2, dB2 };
}

// ---------------------------------------------------------------- engine helpers

function randomInputs(d: Dims, next: () => number): Record<keyof Arrays, Float32Array> {
  const K = 4 * d.C;
  const scaled = (n: number, scale: number) => randomArray(n, next).map((u) => u * scale);
  return {
    x: scaled(d.B * d.h * d.w * d.C, 2),
    lnWeight: randomArray(K, next).map((u) => 1 + 0.5 * u),
    lnBias: scaled(K, 0.3),
    // ~unit pre-activations, so both sides of the GELU are exercised
    w1: scaled(d.H * K, Math.sqrt(3 / K)),
    b1: scaled(d.H, 0.5),
    w2: scaled(d.H * d.H, Math.sqrt(3 / d.H)),
    b2: scaled(d.H, 0.5),
  };
}

function upload<D extends FloatDType>(e: Engine, a: Record<keyof Arrays, Float32Array>, d: Dims, dtype: D) {
  const K = 4 * d.C;
  const x = e.tensor(a.x, [d.B, d.h, d.w, d.C], { dtype });
  const p: ConnectorParams<D> = {
    lnWeight: e.tensor(a.lnWeight, [K], { dtype }), lnBias: e.tensor(a.lnBias, [K], { dtype }),
    w1: e.tensor(a.w1, [d.H, K], { dtype }), b1: e.tensor(a.b1, [d.H], { dtype }),
    w2: e.tensor(a.w2, [d.H, d.H], { dtype }), b2: e.tensor(a.b2, [d.H], { dtype }),
  };
  return { x, p, dispose: () => [x, ...Object.values(p)].forEach((t) => t.dispose()) };
}

// The values the engine holds (rounded to its dtype), as float64 reference inputs.
async function held(x: Tensor, p: ConnectorParams): Promise<Arrays> {
  const out = { x: Float64Array.from(await x.toArray()) } as Arrays;
  for (const k of PARAMS) out[k] = Float64Array.from(await p[k].toArray());
  return out;
}

const CASES: Dims[] = [
  { B: 1, h: 2, w: 2, C: 3, H: 5 },
  { B: 2, h: 4, w: 6, C: 5, H: 7 },
  { B: 1, h: 6, w: 2, C: 9, H: 3 },
  { B: 3, h: 2, w: 4, C: 17, H: 33 },
  { B: 2, h: 12, w: 10, C: 6, H: 11 }, // T = 60
  { B: 3, h: 10, w: 12, C: 2, H: 9 }, // T = 90: more than one 64-row partial block
];
const label = (d: Dims) => `[${d.B}, ${d.h}, ${d.w}, ${d.C}] H=${d.H}`;

forEachDevice('connector', { seed: 7 }, ({ device, dtypes, it }) => {
  it('pixel shuffle matches hand-computed rows (C = 1, h ≠ w)', async (e) => {
    // x[0, r, c, 0] = (4r + c)², so the two shuffled rows are not affine images of each
    // other (LayerNorm would hide that) and any reordering inside a row changes the result.
    const x = e.tensor(Float32Array.from({ length: 8 }, (_, i) => i * i), [1, 2, 4, 1]);
    const eye = Float32Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? 1 : 0));
    // w1 = w2 = I, b1 = 10 keeps GELU(z + 10) = z + 10 to 1e-15, b2 = −10 removes it: y = LayerNorm(s).
    const p: ConnectorParams<'f32'> = {
      lnWeight: e.ones([4]), lnBias: e.zeros([4]), w1: e.tensor(eye, [4, 4]), b1: e.full([4], 10),
      w2: e.tensor(eye, [4, 4]), b2: e.full([4], -10),
    };
    const rows = [[0, 1, 16, 25], [4, 9, 36, 49]]; // (x[0,0], x[0,1], x[1,0], x[1,1]) and (x[0,2], x[0,3], x[1,2], x[1,3])
    const expected = rows.flatMap((r) => {
      const mean = r.reduce((a, b) => a + b) / 4;
      const variance = r.reduce((a, b) => a + (b - mean) ** 2, 0) / 4;
      return r.map((v) => (v - mean) / Math.sqrt(variance + 1e-5));
    });
    using y = ops.connector(x, p);
    assert.deepEqual(y.shape, [1, 2, 4]);
    const err = relativeError(await y.toArray(), expected);
    assert.ok(err < 1e-5, `rel err ${err}`);
    x.dispose();
    Object.values(p).forEach((t) => t.dispose());
  });

  for (const dtype of dtypes) {
    const tol = dtype === 'f32' ? 1e-4 : 2e-2;

    it(`${dtype}: forward and backward against float64 at odd sizes`, async (e) => {
      const next = rng(`connector-${device}-${dtype}`);
      for (const d of CASES) {
        for (const eps of [1e-5, 0.3]) {
          const inputs = randomInputs(d, next);
          const { x, p, dispose } = upload(e, inputs, d, dtype);
          const T = d.B * (d.h / 2) * (d.w / 2);
          using dY = e.tensor(randomArray(T * d.H, next), [d.B, T / d.B, d.H], { dtype });
          const v = await held(x, p);
          const dYHeld = Float64Array.from(await dY.toArray());
          const options = eps === 1e-5 ? undefined : { eps };

          using y = ops.connector(x, p, options);
          assert.deepEqual(y.shape, [d.B, T / d.B, d.H]);
          assert.equal(y.dtype, dtype);
          const yErr = relativeError(await y.toArray(), forwardRef(v, d, eps).y);
          assert.ok(yErr <= tol, `${label(d)} eps=${eps} y: rel err ${yErr}`);

          const g = ops.connectorBackward(x, p, dY, options);
          const ref = backwardRef(v, d, eps, dYHeld);
          for (const name of Object.keys(ref) as Array<keyof Grads>) {
            const got = g[name];
            const err = relativeError(await got.toArray(), ref[name]);
            assert.ok(err <= tol, `${label(d)} eps=${eps} ${name}: rel err ${err}`);
            got.dispose();
          }
          dispose();
        }
      }
    });
  }

  it('gradients agree with central finite differences of the float64 forward', async (e) => {
    const d: Dims = { B: 1, h: 2, w: 4, C: 3, H: 5 };
    const eps = 1e-5;
    const next = rng(`connector-fd-${device}`);
    const inputs = randomInputs(d, next);
    const { x, p, dispose } = upload(e, inputs, d, 'f32');
    const T = d.B * (d.h / 2) * (d.w / 2);
    const weights = Float64Array.from(randomArray(T * d.H, next));
    // L = Σ weights·y, so dL/dy = weights.
    using dY = e.tensor(Float32Array.from(weights), [d.B, T, d.H]);
    const g = ops.connectorBackward(x, p, dY);
    const v = await held(x, p);
    const loss = (u: Arrays) => dot(forwardRef(u, d, eps).y, weights);
    const step = 1e-5;
    const names = [['x', 'dx'], ...PARAMS.map((k) => [k, `d${k[0]!.toUpperCase()}${k.slice(1)}`])] as Array<[keyof Arrays, keyof Grads]>;
    for (const [input, grad] of names) {
      const direction = Float64Array.from(randomArray(v[input].length, next));
      const numeric = centralDifferenceAlong(([moved]) => loss({ ...v, [input]: moved! }), [v[input]], [direction], step);
      const engine = dot(await g[grad].toArray(), direction);
      assert.ok(Math.abs(engine - numeric) <= 1e-4 * Math.max(1, Math.abs(numeric)), `${grad}: engine ${engine}, finite differences ${numeric}`);
      g[grad].dispose();
    }
    dispose();
  });

  it('gradients are bitwise reproducible (fixed-order column sums)', async (e) => {
    const d: Dims = { B: 3, h: 10, w: 12, C: 5, H: 9 };
    const next = rng(`connector-repro-${device}`);
    const { x, p, dispose } = upload(e, randomInputs(d, next), d, 'f32');
    using dY = e.tensor(randomArray(90 * d.H, next), [d.B, 30, d.H]);
    const first = ops.connectorBackward(x, p, dY);
    const second = ops.connectorBackward(x, p, dY);
    for (const name of Object.keys(first) as Array<keyof Grads>) {
      assert.deepEqual(await second[name].toArray(), await first[name].toArray(), name);
      first[name].dispose();
      second[name].dispose();
    }
    dispose();
  });

  it('an empty batch gives an empty y and zero parameter gradients', async (e) => {
    const d: Dims = { B: 0, h: 4, w: 2, C: 3, H: 5 };
    const { x, p, dispose } = upload(e, randomInputs(d, rng('connector-empty')), d, 'f32');
    using y = ops.connector(x, p);
    assert.deepEqual(y.shape, [0, 2, 5]);
    using dY = e.zeros([0, 2, 5]);
    const g = ops.connectorBackward(x, p, dY);
    assert.deepEqual(g.dx.shape, [0, 4, 2, 3]);
    for (const name of ['dLnWeight', 'dLnBias', 'dW1', 'dB1', 'dW2', 'dB2'] as const) {
      assert.ok((await g[name].toArray()).every((u) => u === 0), name);
    }
    Object.values(g).forEach((t) => t.dispose());
    dispose();
  });

  it('rejects bad shapes, dtypes, engines and options, naming the argument', (e) => {
    const d: Dims = { B: 1, h: 4, w: 4, C: 8, H: 6 };
    const { x, p, dispose } = upload(e, randomInputs(d, rng('connector-bad')), d, 'f32');
    using dY = e.randn([1, 4, 6]);
    expectR1VError(() => ops.connector(e.randn([1, 5, 4, 8]), p), 'SHAPE', /connector: x must have even h and w, got \[1, 5, 4, 8\]/);
    expectR1VError(() => ops.connector(e.randn([1, 4, 3, 8]), p), 'SHAPE', /even h and w/);
    expectR1VError(() => ops.connector(e.randn([4, 4, 8]), p), 'SHAPE', /connector: x must be 4-D/);
    expectR1VError(() => ops.connector(x, { ...p, w1: e.randn([6, 31]) }), 'SHAPE', /connector: p\.w1 must have shape \[H, 4C\] = \[H, 32\]/);
    expectR1VError(() => ops.connector(x, { ...p, lnWeight: e.randn([8]) }), 'SHAPE', /p\.lnWeight must have shape \[32\]/);
    expectR1VError(() => ops.connector(x, { ...p, lnBias: e.randn([31]) }), 'SHAPE', /p\.lnBias/);
    expectR1VError(() => ops.connector(x, { ...p, b1: e.randn([5]) }), 'SHAPE', /p\.b1 must have shape \[6\]/);
    expectR1VError(() => ops.connector(x, { ...p, w2: e.randn([6, 5]) }), 'SHAPE', /p\.w2 must have shape \[6, 6\]/);
    expectR1VError(() => ops.connector(x, { ...p, b2: e.randn([7]) }), 'SHAPE', /p\.b2/);
    expectR1VError(() => ops.connector(x, { ...p, b2: e.randn([6], { dtype: 'f16' }) }), 'DTYPE', /p\.b2/);
    expectR1VError(() => ops.connector(e.zeros([1, 4, 4, 8], { dtype: 'i32' }) as never, p), 'DTYPE', /connector: x must be a float tensor/);
    using other = Engine.create({ device: 'cpu' });
    expectR1VError(() => ops.connector(x, { ...p, w2: other.randn([6, 6]) }), 'DEVICE', /p\.w2/);
    expectR1VError(() => ops.connector(x, { ...p, w1: undefined as never }), 'ARGUMENT', /connector: p\.w1 must be a Tensor/);
    expectR1VError(() => ops.connector(x, null as never), 'ARGUMENT', /connector: p must be an object/);
    expectR1VError(() => ops.connector(x, { ...p, w3: x } as never), 'ARGUMENT', /unknown field 'w3'/);
    for (const eps of [0, -1e-5, 1e-60, 1e300, Number.NaN, Infinity]) {
      expectR1VError(() => ops.connector(x, p, { eps }), 'ARGUMENT', /eps/);
      expectR1VError(() => ops.connectorBackward(x, p, dY, { eps }), 'ARGUMENT', /eps/);
    }
    expectR1VError(() => ops.connector(x, p, { epsilon: 1 } as never), 'ARGUMENT', /unknown option 'epsilon'/);
    expectR1VError(() => ops.connectorBackward(x, p, e.randn([1, 4, 5])), 'SHAPE', /connectorBackward: dY must have shape \[1, 4, 6\]/);
    expectR1VError(() => ops.connectorBackward(x, p, e.randn([1, 4, 6], { dtype: 'f16' })), 'DTYPE', /dY/);
    expectR1VError(() => ops.connectorBackward(x, { ...p, w1: e.randn([6, 8]) }, dY), 'SHAPE', /connectorBackward: p\.w1/);
    const gone = e.randn([6]);
    gone.dispose();
    expectR1VError(() => ops.connector(x, { ...p, b1: gone }), 'DISPOSED');
    dispose();
  });
});
