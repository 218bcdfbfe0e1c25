// A generation prompt made ready for the model: chat messages rendered with the tokenizer's
// template and their images tiled and normalised, or token ids and pixels as given; checked
// against the model (length within the context with the new tokens, image tokens matching the
// tiles); and the seed of its samples. A prompt that cannot be used is an R1VError naming
// `prompts[i]`, which generate turns into 'error' samples while the other prompts go on.
import { R1VError } from '../core/errors.js';
import { IGNORE_INDEX } from '../data/batch.js';
import { ImageProcessor, type ImageInput } from '../data/image.js';
import { countImagePlaceholders, type ChatMessage, type Tokenizer } from '../data/tokenizer.js';
import type { VisionLanguageModel } from '../model/model.js';

/** A prompt as token ids (from the chat template) and processed images, or as chat messages. */
export interface GeneratePrompt {
  /** The prompt's token ids, image placeholders already expanded to `<IMG_CONTEXT>` runs. */
  inputIds?: Int32Array;
  /** The tiles of its images [tiles, 3, S, S], in placeholder order. */
  pixelValues?: Float32Array;
  /** Chat messages (rendered with the tokenizer's chat template and a generation prompt). */
  messages?: readonly ChatMessage[];
  /** Images for the `<image>` placeholders of `messages`, in order (files, encoded bytes or raw pixels). */
  images?: readonly ImageInput[];
  /** Seed of this prompt's samples (default: derived from its token ids), mixed with options.seed. */
  seed?: number;
}

export interface PreparedPrompt {
  inputIds: Int32Array;
  pixelValues?: Float32Array;
  /** The prompt's sampling seed (base seed mixed with the prompt's own). */
  seed: bigint;
}

/** splitmix64 steps: a well-mixed 64-bit seed from several integers. */
export function mixSeeds(...parts: bigint[]): bigint {
  const mask = (1n << 64n) - 1n;
  let z = 0x9e3779b97f4a7c15n;
  for (const p of parts) {
    z = (z + (p & mask) + 0x9e3779b97f4a7c15n) & mask;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask;
    z ^= z >> 31n;
  }
  return z;
}

/** FNV-1a over token ids: a prompt's default seed. */
function hashIds(ids: Int32Array): bigint {
  let h = 0xcbf29ce484222325n;
  for (const id of ids) h = ((h ^ BigInt(id >>> 0)) * 0x100000001b3n) & ((1n << 64n) - 1n);
  return h;
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** R1VError of the same code with `where` in front (a prompt's own errors name it). */
function within(where: string, error: unknown): unknown {
  return error instanceof R1VError ? new R1VError(error.code, `${where}: ${error.message}`, { cause: error }) : error;
}

export interface PrepareContext {
  model: VisionLanguageModel;
  tokenizer: Tokenizer | undefined;
  imageProcessor: ImageProcessor | undefined;
  maxNewTokens: number;
  seed: number;
}

async function renderMessages(prompt: GeneratePrompt, where: string, c: PrepareContext): Promise<{ inputIds: Int32Array; pixelValues?: Float32Array }> {
  if (prompt.inputIds !== undefined) throw new R1VError('ARGUMENT', `${where}: give messages or inputIds, not both`);
  if (!c.tokenizer) throw new R1VError('ARGUMENT', `${where}: messages need options.tokenizer`);
  const images = prompt.images ?? [];
  if (!Array.isArray(images)) throw new R1VError('ARGUMENT', `${where}.images must be an array`);
  let placeholders: number;
  try {
    placeholders = countImagePlaceholders(prompt.messages!);
  } catch (error) {
    throw within(where, error);
  }
  if (placeholders !== images.length) {
    throw new R1VError('ARGUMENT', `${where}: the messages have ${placeholders} <image> placeholder(s) but images has ${images.length} entr${images.length === 1 ? 'y' : 'ies'}`);
  }
  const processed: Array<{ pixelValues: Float32Array; tiles: number }> = [];
  if (images.length > 0) {
    const processor = c.imageProcessor ?? ImageProcessor.fromConfig(c.model.config);
    for (const [k, image] of images.entries()) {
      try {
        processed.push(await processor.process(image));
      } catch (error) {
        throw within(`${where}.images[${k}]`, error);
      }
    }
  }
  let ids: number[];
  try {
    ids = c.tokenizer.applyChatTemplate(prompt.messages!, {
      addGenerationPrompt: true, tokenize: true, imageTiles: processed.map((p) => p.tiles),
      ...(c.model.config.connector ? { tokensPerTile: c.model.config.connector.tokensPerTile } : {}),
    });
  } catch (error) {
    throw within(where, error);
  }
  return { inputIds: Int32Array.from(ids), ...(processed.length ? { pixelValues: concat(processed.map((p) => p.pixelValues)) } : {}) };
}

/** Renders, checks and seeds prompt `index`; any problem is an R1VError naming `prompts[index]`. */
export async function preparePrompt(prompt: GeneratePrompt | undefined, index: number, c: PrepareContext): Promise<PreparedPrompt> {
  const where = `generate: prompts[${index}]`;
  if (typeof prompt !== 'object' || prompt === null) throw new R1VError('ARGUMENT', `${where} must be an object`);
  let inputIds: Int32Array, pixelValues: Float32Array | undefined;
  if (prompt.messages !== undefined) {
    ({ inputIds, pixelValues } = await renderMessages(prompt, where, c));
  } else {
    if (!(prompt.inputIds instanceof Int32Array)) throw new R1VError('ARGUMENT', `${where}: inputIds must be an Int32Array (or give messages)`);
    inputIds = prompt.inputIds;
    pixelValues = prompt.pixelValues;
  }
  if (inputIds.length === 0) throw new R1VError('ARGUMENT', `${where} is empty`);
  const limit = c.model.config.language.maxPositionEmbeddings;
  if (inputIds.length + c.maxNewTokens > limit) {
    throw new R1VError('SHAPE', `${where} has ${inputIds.length} tokens; with maxNewTokens ${c.maxNewTokens} that exceeds the model's context (${limit})`);
  }
  const targets = new Int32Array(inputIds.length).fill(IGNORE_INDEX);
  c.model.checkBatch({ inputIds, targets, cuSeqlens: Int32Array.from([0, inputIds.length]), ...(pixelValues ? { pixelValues } : {}) }, where);
  if (prompt.seed !== undefined && !(Number.isSafeInteger(prompt.seed) && prompt.seed >= 0)) {
    throw new R1VError('ARGUMENT', `${where}.seed must be a safe integer ≥ 0`);
  }
  const promptSeed = prompt.seed !== undefined ? BigInt(prompt.seed) : hashIds(inputIds);
  return { inputIds, ...(pixelValues ? { pixelValues } : {}), seed: mixSeeds(BigInt(c.seed), promptSeed) };
}
