// InternVL image preprocessing through sharp: decode (PNG/JPEG/WebP/... files or buffers, or raw
// pixel arrays) to RGB, cut into tiles by InternVL's dynamic tiling, normalise with ImageNet's
// mean/std into one [tiles, 3, S, S] Float32Array.
//
// Matches InternVL's load_image: Image.open(...).convert('RGB') (alpha dropped, not composited;
// no EXIF rotation), dynamic_preprocess (resize to the chosen grid, row-major crops, thumbnail
// last), ToTensor and Normalize. Resizing uses sharp's 'cubic' kernel, Catmull-Rom (PIL's
// BICUBIC is the same a = -0.5 cubic); on downscaling both widen the kernel by the scale
// factor, but libvips and PIL round and accumulate differently, so values may differ from
// PIL's by a few levels of 255. A resize to the image's own size is skipped, as PIL does.
import { readFile } from 'node:fs/promises';

import sharp from 'sharp';

import { R1VError } from '../core/errors.js';
import * as is from '../core/validate.js';

/** ImageNet statistics InternVL normalises with. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** Decoded pixels, row-major, interleaved channels (1 gray, 3 RGB, 4 RGBA). */
export interface RawImage {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

/** What {@link ImageProcessor.process} accepts: a file path, encoded image bytes, or raw pixels. */
export type ImageInput = string | Uint8Array | RawImage;

/** How images are cut into tiles before the vision tower (InternVL dynamic resolution). */
export interface ImageTilingConfig {
  readonly imageSize: number;
  readonly dynamicImageSize: boolean;
  readonly minDynamicPatch: number;
  readonly maxDynamicPatch: number;
  /** Append a whole-image thumbnail tile when an image is cut into more than one tile. */
  readonly useThumbnail: boolean;
}

/** What the image processor reads of a model config (a ModelConfig is one). */
export interface ImageModelConfig {
  readonly modelType: string;
  readonly imageTiling?: ImageTilingConfig | undefined;
}

/** The tiling rule's parameters (a ModelConfig's imageTiling, possibly overridden). */
export interface TilingOptions {
  /** Tile side in pixels (448 for InternVL). */
  imageSize: number;
  /** Tile by aspect ratio; when false every image is resized to one tile. */
  dynamic: boolean;
  minTiles: number;
  maxTiles: number;
  /** Append a whole-image thumbnail tile when an image is cut into more than one tile. */
  useThumbnail: boolean;
}

/** Overrides of the config's tiling in {@link ImageProcessor.fromConfig}. */
export type ImageProcessorOptions = Partial<TilingOptions>;

/** One processed image. */
export interface ProcessedImage {
  /** [tiles, 3, imageSize, imageSize], channels-first, (x/255 − mean)/std. */
  pixelValues: Float32Array;
  /** Number of tiles, thumbnail included. */
  tiles: number;
  /** The grid the image was cut into (the thumbnail is not part of it). */
  grid: { cols: number; rows: number };
  /** Size of the decoded input. */
  width: number;
  height: number;
}

/**
 * InternVL's find_closest_aspect_ratio over dynamic_preprocess's candidates: among the
 * (cols, rows) grids with minTiles ≤ cols·rows ≤ maxTiles, ordered by tile count, the one whose
 * cols/rows is closest to width/height; on an exact tie a later (larger) candidate wins only if
 * the image's area exceeds half the candidate's pixel area. (Python orders the same-count
 * candidates by set iteration; here they go by cols ascending — this only matters for exact ties
 * between two grids of equal tile count.)
 */
export function chooseTileGrid(width: number, height: number, t: Pick<TilingOptions, 'imageSize' | 'minTiles' | 'maxTiles'>): { cols: number; rows: number } {
  const candidates: [number, number][] = [];
  for (let i = 1; i <= t.maxTiles; i++) {
    for (let j = 1; j * i <= t.maxTiles; j++) if (i * j >= t.minTiles) candidates.push([i, j]);
  }
  candidates.sort((a, b) => a[0] * a[1] - b[0] * b[1] || a[0] - b[0]);
  const aspect = width / height;
  const area = width * height;
  let best: [number, number] = [1, 1];
  let bestDiff = Infinity;
  for (const [i, j] of candidates) {
    const diff = Math.abs(aspect - i / j);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = [i, j];
    } else if (diff === bestDiff && area > 0.5 * t.imageSize * t.imageSize * i * j) {
      best = [i, j];
    }
  }
  return { cols: best[0], rows: best[1] };
}

function isRawImage(v: unknown): v is RawImage {
  return typeof v === 'object' && v !== null && !ArrayBuffer.isView(v) && 'data' in v;
}

function positiveInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new R1VError('ARGUMENT', `ImageProcessor: ${what} must be a positive integer (got ${String(v)})`);
  }
  return v;
}

/** Decoded RGB pixels. */
interface Rgb {
  data: Buffer;
  width: number;
  height: number;
}

const RAW_RGB = { depth: 'uchar' } as const;

/**
 * InternVL's image preprocessing. Create with {@link ImageProcessor.fromConfig}.
 */
export class ImageProcessor {
  readonly tiling: Readonly<TilingOptions>;

  private constructor(tiling: TilingOptions) {
    this.tiling = Object.freeze(tiling);
  }

  /**
   * A processor with the model config's imageTiling (image_size, dynamic_image_size,
   * min/max_dynamic_patch, use_thumbnail), each overridable (e.g. `{ maxTiles: 6 }`).
   *
   * @throws R1VError('CONFIG') for a config without vision part; R1VError('ARGUMENT') for a bad override.
   */
  static fromConfig(config: ImageModelConfig, overrides: ImageProcessorOptions = {}): ImageProcessor {
    const t = config.imageTiling;
    if (!t) throw new R1VError('CONFIG', `ImageProcessor.fromConfig: a '${config.modelType}' config has no image tiling (no vision part)`);
    is.options(overrides, ['imageSize', 'dynamic', 'minTiles', 'maxTiles', 'useThumbnail'], 'ImageProcessor.fromConfig');
    const tiling: TilingOptions = {
      imageSize: positiveInt(overrides.imageSize ?? t.imageSize, 'imageSize'),
      dynamic: overrides.dynamic ?? t.dynamicImageSize,
      minTiles: positiveInt(overrides.minTiles ?? t.minDynamicPatch, 'minTiles'),
      maxTiles: positiveInt(overrides.maxTiles ?? t.maxDynamicPatch, 'maxTiles'),
      useThumbnail: overrides.useThumbnail ?? t.useThumbnail,
    };
    if (tiling.minTiles > tiling.maxTiles) {
      throw new R1VError('ARGUMENT', `ImageProcessor.fromConfig: minTiles (${tiling.minTiles}) exceeds maxTiles (${tiling.maxTiles})`);
    }
    return new ImageProcessor(tiling);
  }

  /**
   * Decodes, tiles and normalises one image: a file path, encoded bytes (any format sharp
   * reads: PNG, JPEG, WebP, ...), or raw pixels.
   *
   * @throws R1VError('IO') naming the file (or the buffer's size) when it cannot be read or
   *   decoded; R1VError('ARGUMENT') for malformed raw pixels.
   */
  async process(input: ImageInput): Promise<ProcessedImage> {
    const rgb = await decode(input);
    const S = this.tiling.imageSize;
    const { cols, rows } = this.tiling.dynamic
      ? chooseTileGrid(rgb.width, rgb.height, this.tiling)
      : { cols: 1, rows: 1 };
    const grid = await resize(rgb, cols * S, rows * S);
    const thumbnail = this.tiling.dynamic && this.tiling.useThumbnail && cols * rows > 1
      ? await resize(rgb, S, S)
      : undefined;
    const tiles = cols * rows + (thumbnail ? 1 : 0);
    const pixelValues = new Float32Array(tiles * 3 * S * S);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) normaliseTile(grid, c * S, r * S, S, pixelValues, (r * cols + c) * 3 * S * S);
    }
    if (thumbnail) normaliseTile(thumbnail, 0, 0, S, pixelValues, cols * rows * 3 * S * S);
    return { pixelValues, tiles, grid: { cols, rows }, width: rgb.width, height: rgb.height };
  }
}

/** Writes the S×S crop at (x0, y0) as CHW (x/255 − mean)/std at `out[offset]`. */
function normaliseTile(img: Rgb, x0: number, y0: number, S: number, out: Float32Array, offset: number): void {
  const plane = S * S;
  // (x/255 − m)/s = x·a + b
  const [m0, m1, m2] = IMAGENET_MEAN;
  const [s0, s1, s2] = IMAGENET_STD;
  const a0 = 1 / (255 * s0), a1 = 1 / (255 * s1), a2 = 1 / (255 * s2);
  const b0 = -m0 / s0, b1 = -m1 / s1, b2 = -m2 / s2;
  const d = img.data;
  for (let y = 0; y < S; y++) {
    let src = ((y0 + y) * img.width + x0) * 3;
    const row = offset + y * S;
    for (let x = 0; x < S; x++, src += 3) {
      out[row + x] = d[src]! * a0 + b0;
      out[row + plane + x] = d[src + 1]! * a1 + b1;
      out[row + 2 * plane + x] = d[src + 2]! * a2 + b2;
    }
  }
}

async function resize(img: Rgb, width: number, height: number): Promise<Rgb> {
  if (img.width === width && img.height === height) return img;
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'cubic', fastShrinkOnLoad: false })
    .raw(RAW_RGB)
    .toBuffer();
  return { data, width, height };
}

/** Any input → 8-bit RGB (gray repeated, alpha dropped as PIL's convert('RGB') does). */
async function decode(input: ImageInput): Promise<Rgb> {
  if (isRawImage(input)) return decodeRaw(input);
  let what: string;
  let bytes: Uint8Array;
  if (typeof input === 'string') {
    what = `image file ${input}`;
    try {
      bytes = await readFile(input);
    } catch (error) {
      throw new R1VError('IO', `ImageProcessor.process: cannot read ${what} (${(error as Error).message})`, { cause: error });
    }
  } else if (input instanceof Uint8Array) {
    what = `image buffer (${input.byteLength} bytes)`;
    bytes = input;
  } else {
    throw new R1VError('ARGUMENT', 'ImageProcessor.process: input must be a file path, a Uint8Array/Buffer of encoded image bytes, or { data, width, height, channels }');
  }
  try {
    const { data, info } = await sharp(bytes, { failOn: 'error' })
      .removeAlpha().toColourspace('srgb').raw(RAW_RGB).toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height };
  } catch (error) {
    throw new R1VError('IO', `ImageProcessor.process: cannot decode ${what} (${(error as Error).message})`, { cause: error });
  }
}

function decodeRaw(img: RawImage): Rgb {
  const fn = 'ImageProcessor.process';
  const width = positiveInt(img.width, 'raw image width');
  const height = positiveInt(img.height, 'raw image height');
  const channels = img.channels;
  if (channels !== 1 && channels !== 3 && channels !== 4) {
    throw new R1VError('ARGUMENT', `${fn}: raw image channels must be 1, 3 or 4 (got ${String(channels)})`);
  }
  if (!(img.data instanceof Uint8Array || img.data instanceof Uint8ClampedArray)) {
    throw new R1VError('ARGUMENT', `${fn}: raw image data must be a Uint8Array or Uint8ClampedArray`);
  }
  const n = width * height;
  if (img.data.length !== n * channels) {
    throw new R1VError('ARGUMENT', `${fn}: raw image data has ${img.data.length} bytes, expected width·height·channels = ${width}·${height}·${channels} = ${n * channels}`);
  }
  const data = Buffer.alloc(n * 3);
  for (let p = 0; p < n; p++) {
    const s = p * channels;
    data[3 * p] = img.data[s]!;
    data[3 * p + 1] = img.data[channels === 1 ? s : s + 1]!;
    data[3 * p + 2] = img.data[channels === 1 ? s : s + 2]!;
  }
  return { data, width, height };
}
