import assert from 'node:assert/strict';

import { ops } from '../lib/index.js';
import { expectR1VError, forEachDevice, randomArray, relativeError, rng } from './helpers.js';
import { patchConvReference } from './reference/layers.js';

// ---------------------------------------------------------------- float64 references

// patches[n, i·(W/p) + j, c·p·p + u·p + v] = pixels[n, c, i·p + u, j·p + v], written from the formula.
function patchifyRef(x: ArrayLike<number>, [n, c, h, w]: number[], p: number): Float64Array {
  const rows = h! / p;
  const cols = w! / p;
  const k = c! * p * p;
  const out = new Float64Array(n! * rows * cols * k);
  for (let b = 0; b < n!; b++) {
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        for (let ch = 0; ch < c!; ch++) {
          for (let u = 0; u < p; u++) {
            for (let v = 0; v < p; v++) {
              out[(b * rows * cols + i * cols + j) * k + ch * p * p + u * p + v] =
                x[((b * c! + ch) * h! + i * p + u) * w! + j * p + v]!;
            }
          }
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- cases

// [N, C, H, W, p]: the ViT case, N = 1, non-square H ≠ W, p = 1, a single patch (p = H = W), odd C.
const CASES: number[][] = [
  [2, 3, 28, 28, 14], [1, 3, 10, 6, 2], [1, 2, 5, 7, 1], [3, 1, 9, 15, 3], [2, 5, 12, 8, 4], [1, 3, 6, 6, 6],
  [4, 3, 56, 42, 7], // rows split over the CPU threads
];
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

forEachDevice('patchify', { seed: 5 }, ({ device, dtypes, it }) => {
  it('hand-computed: C = 1, 4×4 of 0..15, p = 2', async (e) => {
    using x = e.tensor(Float32Array.from({ length: 16 }, (_, i) => i), [1, 1, 4, 4]);
    using patches = ops.patchify(x, { patch: 2 });
    assert.deepEqual(patches.shape, [1, 4, 4]);
    assert.deepEqual(Array.from(await patches.toArray()), [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]);
    using back = ops.unpatchify(patches, { channels: 1, height: 4, width: 4, patch: 2 });
    assert.deepEqual(back.shape, [1, 1, 4, 4]);
    assert.deepEqual(Array.from(await back.toArray()), Array.from({ length: 16 }, (_, i) => i));
  });

  for (const dtype of dtypes) {
    it(`${dtype}: every element (outputs poisoned) equals the index formula; unpatchify inverts it exactly`, async (e) => {
      const next = rng(`patchify-${device}-${dtype}`);
      for (const [n, c, h, w, p] of CASES) {
        const shape = [n!, c!, h!, w!];
        using x = e.tensor(randomArray(size(shape), next), shape, { dtype });
        const xv = Array.from(await x.toArray()); // the values the engine holds, rounded to dtype
        using patches = ops.patchify(x, { patch: p! });
        const what = `${JSON.stringify(shape)} p=${p}`;
        assert.deepEqual(patches.shape, [n, (h! / p!) * (w! / p!), c! * p! * p!], what);
        assert.equal(patches.dtype, dtype);
        assert.deepEqual(Array.from(await patches.toArray()), Array.from(patchifyRef(xv, shape, p!)), what);
        using back = ops.unpatchify(patches, { channels: c!, height: h!, width: w!, patch: p! });
        assert.deepEqual(back.shape, shape, what);
        assert.deepEqual(Array.from(await back.toArray()), xv, what);
      }
    });

    it(`${dtype}: patchify + matmul(transB, bias) equals a direct Conv2d(3, 5, 14, stride=14) on [2, 3, 28, 28]`, async (e) => {
      const next = rng(`patchify-conv-${device}-${dtype}`);
      const [n, c, h, w, p, out] = [2, 3, 28, 28, 14, 5];
      const shape = [n, c, h, w];
      using x = e.tensor(randomArray(size(shape), next), shape, { dtype });
      // the Conv2d weight [out, C, p, p] uploaded flattened to [out, C·p·p] (the same memory)
      using weight = e.tensor(randomArray(out * c * p * p, next).map((v) => v * 0.1), [out, c * p * p], { dtype });
      using bias = e.tensor(randomArray(out, next), [out], { dtype });
      const [xv, wv, bv] = await Promise.all([x.toArray(), weight.toArray(), bias.toArray()]);
      using patches = ops.patchify(x, { patch: p });
      using y = ops.matmul(patches, weight, { transB: true, bias });
      assert.deepEqual(y.shape, [n, (h / p) * (w / p), out]);
      const err = relativeError(await y.toArray(), patchConvReference(xv, shape, wv, bv, out, p));
      assert.ok(err <= (dtype === 'f32' ? 1e-4 : 2e-2), `rel err ${err}`);
    });
  }

  it('errors name the argument', (e) => {
    using x = e.randn([1, 3, 8, 6]);
    expectR1VError(() => ops.patchify(e.randn([3, 8, 6]), { patch: 2 }), 'SHAPE', /patchify: pixels must be 4-D \[N, C, H, W\], got shape \[3, 8, 6\]/);
    expectR1VError(() => ops.patchify(x, { patch: 3 }), 'SHAPE', /patchify: pixels height 8 must be a multiple of patch 3/);
    expectR1VError(() => ops.patchify(x, { patch: 4 }), 'SHAPE', /patchify: pixels width 6 must be a multiple of patch 4/);
    expectR1VError(() => ops.patchify(x, { patch: 0 }), 'ARGUMENT', /patchify: patch must be ≥ 1, got 0/);
    expectR1VError(() => ops.patchify(x, { patch: -2 }), 'ARGUMENT', /patchify: patch must be ≥ 1/);
    expectR1VError(() => ops.patchify(x, { patch: 1.5 }), 'ARGUMENT', /patchify: patch must be an integer/);
    expectR1VError(() => ops.patchify(x, {} as { patch: number }), 'ARGUMENT', /patchify: options.patch is required/);
    expectR1VError(() => ops.patchify(x, { patch: 2, stride: 2 } as { patch: number }), 'ARGUMENT', /patchify: unknown option 'stride'/);
    expectR1VError(() => ops.patchify(null as never, { patch: 2 }), 'ARGUMENT', /patchify: pixels must be a Tensor/);
    using patches = ops.patchify(x, { patch: 2 }); // [1, 12, 12]
    const geometry = { channels: 3, height: 8, width: 6, patch: 2 };
    expectR1VError(() => ops.unpatchify(x, geometry), 'SHAPE', /unpatchify: patches must be 3-D/);
    expectR1VError(() => ops.unpatchify(patches, { ...geometry, channels: 2 }), 'SHAPE', /unpatchify: patches must have shape \[1, 12, 8\], got \[1, 12, 12\]/);
    expectR1VError(() => ops.unpatchify(patches, { ...geometry, height: 7 }), 'SHAPE', /unpatchify: height 7 must be a multiple of patch 2/);
    expectR1VError(() => ops.unpatchify(patches, { ...geometry, width: 5 }), 'SHAPE', /unpatchify: width 5 must be a multiple of patch 2/);
    expectR1VError(() => ops.unpatchify(patches, { ...geometry, channels: 0 }), 'ARGUMENT', /unpatchify: channels must be ≥ 1/);
    expectR1VError(() => ops.unpatchify(patches, { ...geometry, patch: 0 }), 'ARGUMENT', /unpatchify: patch must be ≥ 1/);
    expectR1VError(() => ops.unpatchify(patches, { channels: 3, height: 8, patch: 2 } as typeof geometry), 'ARGUMENT', /unpatchify: options.width is required/);
    if (device === 'cpu') {
      using half = e.randn([1, 1, 2, 2], { dtype: 'bf16' });
      expectR1VError(() => ops.patchify(half, { patch: 2 }), 'DTYPE', /patchify: pixels is bf16; the CPU computes in f32 only/);
    }
  });
});
