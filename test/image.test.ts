import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';

import { ImageProcessor, R1VError, chooseTileGrid, parseModelConfig, type ModelConfig, type RawImage } from '../lib/index.js';
import { rng } from './helpers.js';

async function expectRejects(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof R1VError && e.code === code && pattern.test(e.message));
}

function config(tiling: { dynamic_image_size?: boolean; max_dynamic_patch?: number; min_dynamic_patch?: number; use_thumbnail?: boolean } = {}): ModelConfig {
  return parseModelConfig({
    model_type: 'internvl_chat',
    downsample_ratio: 0.5,
    ps_version: 'v2',
    dynamic_image_size: true,
    max_dynamic_patch: 12,
    min_dynamic_patch: 1,
    use_thumbnail: true,
    ...tiling,
    vision_config: {
      hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_hidden_layers: 2,
      image_size: 448, patch_size: 14, norm_type: 'layer_norm',
    },
    llm_config: {
      model_type: 'qwen2', vocab_size: 1000, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 4096, rope_theta: 1e6,
      rms_norm_eps: 1e-6, rope_scaling: null,
    },
  });
}

// InternVL's find_closest_aspect_ratio + dynamic_preprocess candidate list, transcribed.
function internvlGrid(width: number, height: number, minNum: number, maxNum: number, imageSize: number): [number, number] {
  const set = new Map<string, [number, number]>();
  for (let n = minNum; n <= maxNum; n++) {
    for (let i = 1; i <= n; i++) {
      for (let j = 1; j <= n; j++) if (i * j <= maxNum && i * j >= minNum) set.set(`${i},${j}`, [i, j]);
    }
  }
  const targets = [...set.values()].sort((a, b) => a[0] * a[1] - b[0] * b[1]);
  const aspectRatio = width / height;
  const area = width * height;
  let bestDiff = Infinity;
  let best: [number, number] = [1, 1];
  for (const ratio of targets) {
    const diff = Math.abs(aspectRatio - ratio[0] / ratio[1]);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = ratio;
    } else if (diff === bestDiff) {
      if (area > 0.5 * imageSize * imageSize * ratio[0] * ratio[1]) best = ratio;
    }
  }
  return best;
}

function randomImage(width: number, height: number, channels: 1 | 3 | 4, label: string): RawImage {
  const next = rng(label);
  const data = new Uint8Array(width * height * channels);
  for (let k = 0; k < data.length; k++) data[k] = Math.floor(next() * 256);
  return { data, width, height, channels };
}

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** Hand computation: tile (tx, ty) of an image that needs no resize, CHW, float64. */
function expectedTile(img: RawImage, tx: number, ty: number, S: number): Float64Array {
  const out = new Float64Array(3 * S * S);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const p = (ty * S + y) * img.width + tx * S + x;
        const v = img.channels === 1 ? img.data[p]! : img.data[p * img.channels + c]!;
        out[(c * S + y) * S + x] = (v / 255 - MEAN[c]!) / STD[c]!;
      }
    }
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const S = 448;
const TILE = 3 * S * S;

describe('image: InternVL dynamic tiling', () => {
  it('chooses the grid InternVL chooses, across aspect ratios and tile limits', () => {
    const sizes: [number, number][] = [
      [448, 448], [896, 896], [1344, 1344], [800, 600], [600, 800], [1920, 1080], [1080, 1920], [28, 28],
      [3000, 200], [200, 3000], [1000, 999], [640, 480], [2000, 1000], [1024, 768], [500, 1600], [4032, 3024],
      [896, 448], [1344, 448], [700, 500], [224, 1000], [100, 37], [1, 1], [9000, 9000], [1793, 1344],
    ];
    const limits: [number, number][] = [[1, 12], [1, 6], [1, 1], [2, 6], [1, 40], [4, 9]];
    let tieBreaks = 0;
    for (const [w, h] of sizes) {
      for (const [lo, hi] of limits) {
        const ref = internvlGrid(w, h, lo, hi, S);
        const got = chooseTileGrid(w, h, { imageSize: S, minTiles: lo, maxTiles: hi });
        assert.deepEqual([got.cols, got.rows], ref, `${w}×${h}, tiles ${lo}..${hi}`);
        if (ref[0] === ref[1] && ref[0] > 1 && w === h) tieBreaks++;
      }
    }
    // Square images tie among (1,1), (2,2), ...: the area rule picked a larger grid somewhere.
    assert.ok(tieBreaks > 0);
    assert.deepEqual(chooseTileGrid(896, 896, { imageSize: S, minTiles: 1, maxTiles: 12 }), { cols: 2, rows: 2 });
    assert.deepEqual(chooseTileGrid(600, 600, { imageSize: S, minTiles: 1, maxTiles: 12 }), { cols: 1, rows: 1 });
  });

  it('cuts a 2:1 image that needs no resize into its exact left and right halves', async () => {
    const img = randomImage(2 * S, S, 3, 'image-2x1');
    const out = await ImageProcessor.fromConfig(config({ use_thumbnail: false })).process(img);
    assert.equal(out.tiles, 2);
    assert.deepEqual(out.grid, { cols: 2, rows: 1 });
    assert.equal(out.pixelValues.length, 2 * TILE);
    assert.ok(maxAbsDiff(out.pixelValues.subarray(0, TILE), expectedTile(img, 0, 0, S)) < 1e-5);
    assert.ok(maxAbsDiff(out.pixelValues.subarray(TILE), expectedTile(img, 1, 0, S)) < 1e-5);
  });

  it('orders a 2×2 grid row-major and puts the thumbnail last', async () => {
    // Four flat quadrants of known colours: crops and thumbnail are checked by colour.
    const colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 64, 32]];
    const W = 2 * S;
    const data = new Uint8Array(W * W * 3);
    for (let y = 0; y < W; y++) {
      for (let x = 0; x < W; x++) data.set(colours[(y >= S ? 2 : 0) + (x >= S ? 1 : 0)]!, (y * W + x) * 3);
    }
    const out = await ImageProcessor.fromConfig(config()).process({ data, width: W, height: W, channels: 3 });
    assert.equal(out.tiles, 5);
    assert.equal(out.pixelValues.length, 5 * TILE);
    const at = (tile: number, c: number, y: number, x: number) => out.pixelValues[tile * TILE + (c * S + y) * S + x]!;
    const norm = (v: number, c: number) => (v / 255 - MEAN[c]!) / STD[c]!;
    for (let t = 0; t < 4; t++) {
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(at(t, c, 100, 300) - norm(colours[t]![c]!, c)) < 1e-5, `tile ${t}`);
    }
    // The thumbnail is the whole image at 448: quadrant centres keep their colours (±1 level).
    for (let q = 0; q < 4; q++) {
      const y = q >= 2 ? 336 : 112;
      const x = q % 2 ? 336 : 112;
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(at(4, c, y, x) - norm(colours[q]![c]!, c)) < 1.5 / 255 / STD[c]!, `thumbnail quadrant ${q}`);
    }
  });

  it('resizes with Catmull-Rom cubic: a smooth ramp is reproduced closely', async () => {
    // 28×28 grayscale (MNIST-sized) linear ramp upscaled to 448: bicubic is exact on linear
    // functions away from the borders, up to 8-bit rounding.
    const n = 28;
    const data = new Uint8Array(n * n);
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) data[y * n + x] = 20 + 7 * x;
    const out = await ImageProcessor.fromConfig(config()).process({ data, width: n, height: n, channels: 1 });
    assert.equal(out.tiles, 1);
    const scale = n / S;
    for (const x of [64, 100, 200, 300, 380]) {
      const srcX = (x + 0.5) * scale - 0.5; // pixel-centre mapping used by PIL and libvips
      const want = 20 + 7 * srcX;
      for (let c = 0; c < 3; c++) {
        const got = out.pixelValues[(c * S + 200) * S + x]! * STD[c]! * 255 + MEAN[c]! * 255;
        assert.ok(Math.abs(got - want) <= 1.01, `x=${x} c=${c}: ${got} vs ${want}`);
      }
    }
  });

  it('one tile when dynamic_image_size is false; maxTiles overrides the config', async () => {
    const img = randomImage(S, S, 4, 'image-rgba');
    const single = await ImageProcessor.fromConfig(config({ dynamic_image_size: false })).process(img);
    assert.equal(single.tiles, 1);
    // RGBA: alpha is dropped, as PIL's convert('RGB').
    assert.ok(maxAbsDiff(single.pixelValues, expectedTile(img, 0, 0, S)) < 1e-5);
    const wide = randomImage(1200, 300, 3, 'image-wide');
    const capped = await ImageProcessor.fromConfig(config(), { maxTiles: 2 }).process(wide);
    assert.deepEqual(capped.grid, { cols: 2, rows: 1 });
    assert.equal(capped.tiles, 3);
    const flat = await ImageProcessor.fromConfig(config({ dynamic_image_size: false })).process(wide);
    assert.equal(flat.tiles, 1);
  });

  it('reads PNG files and buffers (same pixels as the raw array) and WebP/JPEG buffers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'r1v-img-'));
    try {
      const img = randomImage(S, 2 * S, 3, 'image-png');
      const raw = { raw: { width: img.width, height: img.height, channels: 3 as const } };
      const png = await sharp(img.data, raw).png().toBuffer();
      const file = join(dir, 'tall.png');
      await writeFile(file, png);
      const proc = ImageProcessor.fromConfig(config({ use_thumbnail: false }));
      const fromRaw = await proc.process(img);
      const fromFile = await proc.process(file);
      const fromBuffer = await proc.process(png);
      assert.deepEqual(fromRaw.grid, { cols: 1, rows: 2 });
      assert.deepEqual(fromFile.pixelValues, fromRaw.pixelValues);
      assert.deepEqual(fromBuffer.pixelValues, fromRaw.pixelValues);
      assert.ok(maxAbsDiff(fromRaw.pixelValues.subarray(TILE), expectedTile(img, 0, 1, S)) < 1e-5);
      for (const encoded of [await sharp(img.data, raw).webp({ lossless: true }).toBuffer(), await sharp(img.data, raw).jpeg({ quality: 95 }).toBuffer()]) {
        const out = await proc.process(encoded);
        assert.equal(out.tiles, 2);
        assert.ok(out.pixelValues.every(Number.isFinite));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects unreadable files, undecodable bytes and malformed raw arrays, naming them', async () => {
    const proc = ImageProcessor.fromConfig(config());
    await expectRejects(proc.process('/nonexistent/cat.png'), 'IO', /\/nonexistent\/cat\.png/);
    const dir = await mkdtemp(join(tmpdir(), 'r1v-img-'));
    try {
      const file = join(dir, 'broken.png');
      await writeFile(file, 'not an image');
      await expectRejects(proc.process(file), 'IO', /broken\.png/);
      const png = await sharp(Buffer.alloc(64 * 64 * 3, 9), { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer();
      await expectRejects(proc.process(png.subarray(0, 40)), 'IO', /image buffer \(40 bytes\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await expectRejects(proc.process({ data: new Uint8Array(10), width: 2, height: 2, channels: 3 }), 'ARGUMENT', /10 bytes.*12/);
    await expectRejects(proc.process({ data: new Uint8Array(8), width: 2, height: 2, channels: 2 as 3 }), 'ARGUMENT', /channels/);
    assert.throws(() => ImageProcessor.fromConfig(config(), { maxTiles: 0 }), (e: unknown) => e instanceof R1VError && /maxTiles/.test(e.message));
    const textOnly = parseModelConfig({
      model_type: 'qwen2', vocab_size: 1000, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 4096, rope_theta: 1e6, rms_norm_eps: 1e-6,
    });
    assert.throws(() => ImageProcessor.fromConfig(textOnly), (e: unknown) => e instanceof R1VError && e.code === 'CONFIG');
  });
});
