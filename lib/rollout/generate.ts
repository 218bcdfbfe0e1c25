// Generation with a KV cache: one packed prefill of every prompt (each prompt's keys and values
// computed once, then copied into the cache slots of its n samples), then batched decode steps
// in which the unfinished samples each add one token. Each slot of the cache holds one sample's
// keys and values for maxLen positions; attention reads only a slot's used rows (seqUsedK), so a
// finished sample simply stops contributing queries and costs nothing more.
//
// Sampling is reproducible: the draw of sample j of a prompt at step t depends only on
// (seed, the prompt's seed or token ids, j, t), not on the other prompts in the batch.
import { R1VError } from '../core/errors.js';
import * as ops from '../ops/index.js';
import type { Tensor } from '../core/tensor.js';
import { Fence, type VisionLanguageModel } from '../model/model.js';
import { languagePrefix, lmHeadName, type FTensor } from '../model/parameters.js';
import { ImageProcessor, type ImageInput } from '../data/image.js';
import type { ChatMessage, Tokenizer } from '../data/tokenizer.js';

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

export interface GenerateProgress {
  /** Decode steps done (the first token comes from the prefill: step 1). */
  step: number;
  /** Samples still generating. */
  active: number;
  /** Samples finished (stop, length, aborted or error). */
  finished: number;
  /** Tokens generated so far, over all samples. */
  generatedTokens: number;
  /** Bytes held by the KV cache. */
  kvCacheBytes: number;
}

export interface GenerateOptions {
  /** Samples per prompt, an integer ≥ 1. Default 1. */
  n?: number;
  /** Most tokens generated per sample, an integer ≥ 1. Default 256. */
  maxNewTokens?: number;
  /** Sampling temperature ≥ 0 (0 = greedy). Default 1. */
  temperature?: number;
  /** Nucleus sampling mass in (0, 1]. Default 1 (off). */
  topP?: number;
  /** Keep the topK most likely tokens (integer ≥ 0, 0 = off). Default 0. */
  topK?: number;
  /** Base seed (safe integer ≥ 0). Default 0. */
  seed?: number;
  /**
   * A sample stops after generating one of tokenIds (default: the tokenizer's end-of-sequence
   * ids when a tokenizer is given) or once its text contains one of strings (needs a tokenizer).
   * The stopping token is kept in tokenIds and text.
   */
  stop?: { tokenIds?: readonly number[]; strings?: readonly string[] };
  /** Token ids never generated (R1V3's "NoWait" bans wait / alternatively / hmm). `<IMG_CONTEXT>` is always banned. */
  bannedTokenIds?: readonly number[];
  /** Renders `messages` prompts and decodes the outputs to text. */
  tokenizer?: Tokenizer;
  /** Processes `images` of message prompts. Default: ImageProcessor.fromConfig(model.config). */
  imageProcessor?: ImageProcessor;
  /** Called after every step. */
  onProgress?: (progress: GenerateProgress) => void;
  /** Aborting stops generation after the current step: unfinished samples end as 'aborted'. */
  signal?: AbortSignal;
}

/** One sample. */
export interface Generation {
  /** Index of its prompt, and of the sample among the prompt's n. */
  prompt: number;
  sample: number;
  tokenIds: Int32Array;
  /** The decoded tokens ('' without a tokenizer). */
  text: string;
  /** log p of each generated token under softmax(logits / T) (T = 1 when greedy), untruncated by topK/topP. */
  logprobs: Float32Array;
  /** Entropy of that distribution at each generated position. */
  entropy: Float32Array;
  /** 'error' when the prompt could not be used (see `error`); the other prompts are unaffected. */
  finishReason: 'stop' | 'length' | 'aborted' | 'error';
  error?: R1VError;
}

/**
 * The results (prompt-major: out[i·n + j]) and what the run cost: prefillMs runs from the call
 * until the first tokens are back (prompt checks, cache, vision tower, packed prefill, first
 * sampling), decodeMs covers the steps after.
 */
export type GenerateResult = Generation[] & {
  stats: { prefillTokens: number; steps: number; generatedTokens: number; kvCacheBytes: number; prefillMs: number; decodeMs: number };
};

interface PreparedPrompt {
  inputIds: Int32Array;
  pixelValues?: Float32Array;
  seed: bigint;
}

interface Sample {
  out: Generation;
  slot: number;
  /** Keys/values in the cache (the prompt, then every generated token but the last). */
  length: number;
  seed: bigint;
  tokens: number[];
  logprobs: number[];
  entropy: number[];
  done: boolean;
}

const GENERATE_OPTIONS = [
  'n', 'maxNewTokens', 'temperature', 'topP', 'topK', 'seed', 'stop', 'bannedTokenIds', 'tokenizer', 'imageProcessor',
  'onProgress', 'signal',
];

function fail(message: string): never {
  throw new R1VError('ARGUMENT', `generate: ${message}`);
}

function checkIds(ids: readonly number[] | undefined, vocab: number, name: string): number[] {
  if (ids === undefined) return [];
  if (!Array.isArray(ids) && !(ids instanceof Int32Array)) fail(`${name} must be an array of token ids`);
  return Array.from(ids, (id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) fail(`${name}[${i}] = ${String(id)} is not a token id in [0, ${vocab})`);
    return id;
  });
}

// splitmix64 steps: a well-mixed 64-bit seed from several integers.
function mix(...parts: bigint[]): bigint {
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

function hashIds(ids: Int32Array): bigint {
  let h = 0xcbf29ce484222325n;
  for (const id of ids) h = ((h ^ BigInt(id >>> 0)) * 0x100000001b3n) & ((1n << 64n) - 1n);
  return h;
}

/**
 * Generates n samples for every prompt. Option errors reject at once; a prompt that cannot be
 * used (too long for the model, images not matching its placeholders, an unreadable image) gives
 * its samples finishReason 'error' with the R1VError, and the other prompts are generated.
 */
export async function generate(model: VisionLanguageModel, prompts: readonly GeneratePrompt[], options: GenerateOptions = {}): Promise<GenerateResult> {
  if (typeof options !== 'object' || options === null) fail('options must be an object');
  for (const k of Object.keys(options)) if (!GENERATE_OPTIONS.includes(k)) fail(`unknown option '${k}' (${GENERATE_OPTIONS.join(', ')})`);
  if (!Array.isArray(prompts)) fail('prompts must be an array');
  const lm = model.config.language;
  const n = options.n ?? 1, maxNew = options.maxNewTokens ?? 256, temperature = options.temperature ?? 1;
  const topP = options.topP ?? 1, topK = options.topK ?? 0, seed = options.seed ?? 0;
  if (!Number.isInteger(n) || n < 1) fail(`n must be an integer ≥ 1, got ${String(n)}`);
  if (!Number.isInteger(maxNew) || maxNew < 1) fail(`maxNewTokens must be an integer ≥ 1, got ${String(maxNew)}`);
  if (!(Number.isFinite(temperature) && temperature >= 0)) fail(`temperature must be finite and ≥ 0, got ${String(temperature)}`);
  if (!(topP > 0 && topP <= 1)) fail(`topP must be in (0, 1], got ${String(topP)}`);
  if (!Number.isInteger(topK) || topK < 0) fail(`topK must be an integer ≥ 0, got ${String(topK)}`);
  if (!Number.isSafeInteger(seed) || seed < 0) fail(`seed must be a safe integer ≥ 0, got ${String(seed)}`);
  const tokenizer = options.tokenizer;
  const stopIds = new Set(checkIds(options.stop?.tokenIds ?? tokenizer?.eosTokenIds, lm.vocabSize, 'stop.tokenIds'));
  const stopStrings = [...(options.stop?.strings ?? [])];
  if (stopStrings.some((s) => typeof s !== 'string' || s === '')) fail('stop.strings must be non-empty strings');
  if (stopStrings.length > 0 && !tokenizer) fail('stop.strings needs a tokenizer (options.tokenizer)');
  const banned = checkIds(options.bannedTokenIds, lm.vocabSize, 'bannedTokenIds');
  // <IMG_CONTEXT> marks image slots: a generated one would make the sample unusable for training.
  const imageToken = model.imageContextTokenId;
  if (imageToken !== undefined && imageToken < lm.vocabSize && !banned.includes(imageToken)) banned.push(imageToken);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) fail('signal must be an AbortSignal');
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') fail('onProgress must be a function');

  // ---- prompts → ids and pixels; a bad prompt becomes 'error' samples
  const outputs: Generation[] = [];
  const prepared: Array<PreparedPrompt | R1VError> = [];
  for (let i = 0; i < prompts.length; i++) {
    try {
      prepared.push(await preparePrompt(model, prompts[i], i, maxNew, seed, options));
    } catch (error) {
      if (!(error instanceof R1VError)) throw error;
      prepared.push(error);
    }
  }
  const samples: Sample[] = [];
  const live: PreparedPrompt[] = [];
  prepared.forEach((p, i) => {
    for (let j = 0; j < n; j++) {
      const out: Generation = { prompt: i, sample: j, tokenIds: new Int32Array(0), text: '', logprobs: new Float32Array(0), entropy: new Float32Array(0), finishReason: 'error' };
      outputs.push(out);
      if (p instanceof R1VError) {
        out.error = p;
        continue;
      }
      samples.push({ out, slot: samples.length, length: p.inputIds.length, seed: mix(p.seed, BigInt(j)), tokens: [], logprobs: [], entropy: [], done: false });
    }
    if (!(p instanceof R1VError)) live.push(p);
  });
  const stats = { prefillTokens: 0, steps: 0, generatedTokens: 0, kvCacheBytes: 0, prefillMs: 0, decodeMs: 0 };
  const result = Object.assign(outputs, { stats });
  if (samples.length === 0) return result;
  if (options.signal?.aborted) {
    for (const s of samples) s.out.finishReason = 'aborted';
    return result;
  }

  const e = model.engine, dtype = model.dtype;
  const maxLen = Math.max(...live.map((p) => p.inputIds.length)) + maxNew;
  const slots = samples.length, layers = model.languageLayers, kvRowShape = [lm.numKeyValueHeads, lm.headDim];
  const caches: Array<{ k: FTensor; v: FTensor }> = [];
  const owned: Tensor[] = [];
  const indices = (values: Int32Array): Tensor<'i32'> => {
    const t = e.tensor<'i32'>(values, [values.length]);
    owned.push(t);
    return t;
  };
  stats.kvCacheBytes = 2 * layers.length * slots * maxLen * kvRowShape[0]! * kvRowShape[1]! * (dtype === 'f32' ? 4 : 2);
  const prefix = languagePrefix(model.config);
  const finalNorm = model.param(`${prefix}model.norm.weight`).value, head = model.param(lmHeadName(model.config)).value;
  const table = model.param(`${prefix}model.embed_tokens.weight`).value;
  const sampleOptions = { temperature, topP, topK, ...(banned.length ? { bannedTokenIds: banned } : {}) };
  try {
    for (let l = 0; l < layers.length; l++) {
      caches.push({ k: e.zeros([slots * maxLen, ...kvRowShape], { dtype }), v: e.zeros([slots * maxLen, ...kvRowShape], { dtype }) });
    }
    // ---- prefill: every live prompt once, packed
    const started = performance.now();
    const cu = [0];
    for (const p of live) cu.push(cu[cu.length - 1]! + p.inputIds.length);
    const total = cu[cu.length - 1]!;
    stats.prefillTokens = total;
    const inputIds = new Int32Array(total);
    live.forEach((p, i) => inputIds.set(p.inputIds, cu[i]!));
    const pixels = live.filter((p) => p.pixelValues).map((p) => p.pixelValues!);
    const pixelValues = pixels.length ? concat(pixels) : undefined;
    const batch = { inputIds, targets: new Int32Array(total).fill(-100), cuSeqlens: Int32Array.from(cu), ...(pixelValues ? { pixelValues } : {}) };
    const embedded = await model.embedPrompts(batch, 'generate');
    const fence = new Fence(e);
    const rows = { rows: total, cuSeqlens: batch.cuSeqlens, positions: indices(embedded.positions) };
    // prompt row r of sample s's prompt → cache row s·maxLen + r
    const src: number[] = [], dst: number[] = [];
    const promptOf = new Map<Sample, number>();
    let sampleIndex = 0;
    live.forEach((p, i) => {
      for (let j = 0; j < n; j++, sampleIndex++) {
        const s = samples[sampleIndex]!;
        promptOf.set(s, i);
        for (let r = 0; r < p.inputIds.length; r++) {
          src.push(cu[i]! + r);
          dst.push(s.slot * maxLen + r);
        }
      }
    });
    const srcRows = indices(Int32Array.from(src)), dstRows = indices(Int32Array.from(dst));
    let x = embedded.x;
    try {
      for (const [l, layer] of layers.entries()) {
        const r = layer.forwardKv(x, rows);
        x.dispose();
        x = r.y;
        for (const [kv, cache] of [[r.k, caches[l]!.k], [r.v, caches[l]!.v]] as const) {
          const copied = ops.gatherRows(kv, srcRows);
          ops.writeRows(cache, dstRows, copied);
          copied.dispose();
          kv.dispose();
        }
        await fence.pass(x);
      }
    } finally {
      fence.close();
    }
    const lastRows = indices(Int32Array.from(samples, (s) => cu[promptOf.get(s)! + 1]! - 1));
    const last = ops.gatherRows(x, lastRows);
    x.dispose();
    let sampled = sampleStep(last, finalNorm, head, lm.rmsNormEps, samples, 0, sampleOptions);
    last.dispose();
    let decodeStarted = 0;
    for (let step = 1; ; step++) {
      const got = await sampled;
      if (step === 1) {
        // The prefill has run once its first tokens are back (the ops only queue work).
        decodeStarted = performance.now();
        stats.prefillMs = decodeStarted - started;
      }
      stats.steps = step;
      const active = samples.filter((s) => !s.done);
      active.forEach((s, i) => {
        const token = got.tokens[i]!;
        s.tokens.push(token);
        s.logprobs.push(got.logprobs[i]!);
        s.entropy.push(got.entropy[i]!);
        stats.generatedTokens++;
        if (stopIds.has(token) || (stopStrings.length > 0 && endsWithStop(tokenizer!, s.tokens, stopStrings))) finish(s, 'stop', tokenizer);
        else if (s.tokens.length >= maxNew) finish(s, 'length', tokenizer);
      });
      const still = samples.filter((s) => !s.done);
      options.onProgress?.({ step, active: still.length, finished: outputs.length - still.length, generatedTokens: stats.generatedTokens, kvCacheBytes: stats.kvCacheBytes });
      if (still.length === 0) break;
      if (options.signal?.aborted) {
        for (const s of still) finish(s, 'aborted', tokenizer);
        break;
      }
      // ---- one decode step for the unfinished samples (in slot order)
      const stepOwned: Tensor[] = [];
      const stepIndices = (values: Int32Array) => {
        const t = e.tensor<'i32'>(values, [values.length]);
        stepOwned.push(t);
        return t;
      };
      const ids = stepIndices(Int32Array.from(still, (s) => s.tokens[s.tokens.length - 1]!));
      const positions = stepIndices(Int32Array.from(still, (s) => s.length));
      const cacheRows = stepIndices(Int32Array.from(still, (s) => s.slot * maxLen + s.length));
      const isActive = new Set(still.map((s) => s.slot));
      const cuQ = new Int32Array(slots + 1), cuK = new Int32Array(slots + 1), used = new Int32Array(slots);
      samples.forEach((s, b) => {
        cuQ[b + 1] = cuQ[b]! + (isActive.has(s.slot) ? 1 : 0);
        cuK[b + 1] = (b + 1) * maxLen;
        used[b] = isActive.has(s.slot) ? s.length + 1 : s.length;
      });
      let h = ops.embedding(ids, table);
      for (let l = 0; l < layers.length; l++) {
        const y = layers[l]!.decode(h, positions, { ...caches[l]!, rows: cacheRows }, { cuSeqlensQ: cuQ, cuSeqlensK: cuK, seqUsedK: used });
        h.dispose();
        h = y;
      }
      for (const s of still) s.length += 1;
      sampled = sampleStep(h, finalNorm, head, lm.rmsNormEps, still, step, sampleOptions);
      h.dispose();
      for (const t of stepOwned) t.dispose();
    }
    stats.decodeMs = performance.now() - decodeStarted;
  } catch (error) {
    for (const s of samples) if (!s.done) finish(s, 'aborted', tokenizer);
    throw error;
  } finally {
    for (const c of caches) {
      c.k.dispose();
      c.v.dispose();
    }
    for (const t of owned) t.dispose();
  }
  return result;
}

/** Final norm → LM head → sampling for rows h [A, H] (h is not consumed); resolves to host arrays. */
async function sampleStep(
  h: FTensor, finalNorm: FTensor, head: FTensor, eps: number, samples: readonly Sample[], step: number,
  options: { temperature: number; topP: number; topK: number; bannedTokenIds?: number[] },
): Promise<{ tokens: Int32Array; logprobs: Float32Array; entropy: Float32Array }> {
  const normed = ops.rmsNorm(h, finalNorm, { eps });
  normed.rstd.dispose();
  const logits = ops.matmul(normed.y, head, { transB: true });
  normed.y.dispose();
  const r = ops.sampleTokens(logits, {
    seeds: BigUint64Array.from(samples, (s) => s.seed),
    offsets: new Int32Array(samples.length).fill(step),
    ...options,
  });
  logits.dispose();
  try {
    const [tokens, logprobs, entropy] = await Promise.all([r.tokens.toArray(), r.logprobs.toArray(), r.entropy.toArray()]);
    return { tokens, logprobs, entropy };
  } finally {
    r.tokens.dispose();
    r.logprobs.dispose();
    r.entropy.dispose();
  }
}

function finish(s: Sample, reason: Generation['finishReason'], tokenizer: Tokenizer | undefined): void {
  s.done = true;
  s.out.finishReason = reason;
  s.out.tokenIds = Int32Array.from(s.tokens);
  s.out.logprobs = Float32Array.from(s.logprobs);
  s.out.entropy = Float32Array.from(s.entropy);
  s.out.text = tokenizer ? tokenizer.decode(s.out.tokenIds) : '';
}

/** Whether the text of the last few tokens contains a stop string (a string may span several tokens). */
function endsWithStop(tokenizer: Tokenizer, tokens: readonly number[], stops: readonly string[]): boolean {
  const longest = Math.max(...stops.map((s) => s.length));
  // The newest token completes any new match; a match needs at most `longest` characters, and every token decodes to ≥ 1.
  const tail = tokenizer.decode(tokens.slice(-(longest + 1)));
  const before = tokenizer.decode(tokens.slice(-(longest + 1), -1));
  return stops.some((s) => tail.includes(s) && !before.includes(s));
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

async function preparePrompt(
  model: VisionLanguageModel, prompt: GeneratePrompt | undefined, index: number, maxNew: number, seed: number, options: GenerateOptions,
): Promise<PreparedPrompt> {
  const where = `generate: prompts[${index}]`;
  if (typeof prompt !== 'object' || prompt === null) throw new R1VError('ARGUMENT', `${where} must be an object`);
  let inputIds: Int32Array, pixelValues: Float32Array | undefined;
  if (prompt.messages !== undefined) {
    if (prompt.inputIds !== undefined) throw new R1VError('ARGUMENT', `${where}: give messages or inputIds, not both`);
    const tokenizer = options.tokenizer;
    if (!tokenizer) throw new R1VError('ARGUMENT', `${where}: messages need options.tokenizer`);
    const images = prompt.images ?? [];
    let processed: Array<{ pixelValues: Float32Array; tiles: number }> = [];
    if (images.length > 0) {
      const processor = options.imageProcessor ?? ImageProcessor.fromConfig(model.config);
      processed = [];
      for (let k = 0; k < images.length; k++) {
        try {
          processed.push(await processor.process(images[k]!));
        } catch (error) {
          if (error instanceof R1VError) throw new R1VError(error.code, `${where}.images[${k}]: ${error.message}`, { cause: error });
          throw error;
        }
      }
    }
    try {
      inputIds = Int32Array.from(tokenizer.applyChatTemplate(prompt.messages, {
        addGenerationPrompt: true, tokenize: true, imageTiles: processed.map((p) => p.tiles),
        ...(model.config.connector ? { tokensPerTile: model.config.connector.tokensPerTile } : {}),
      }) as number[]);
    } catch (error) {
      if (error instanceof R1VError) throw new R1VError(error.code, `${where}: ${error.message}`, { cause: error });
      throw error;
    }
    pixelValues = processed.length ? concat(processed.map((p) => p.pixelValues)) : undefined;
  } else {
    if (!(prompt.inputIds instanceof Int32Array)) throw new R1VError('ARGUMENT', `${where}: inputIds must be an Int32Array (or give messages)`);
    inputIds = prompt.inputIds;
    pixelValues = prompt.pixelValues;
  }
  if (inputIds.length === 0) throw new R1VError('ARGUMENT', `${where} is empty`);
  const limit = model.config.language.maxPositionEmbeddings;
  if (inputIds.length + maxNew > limit) {
    throw new R1VError('SHAPE', `${where} has ${inputIds.length} tokens; with maxNewTokens ${maxNew} that exceeds the model's context (${limit})`);
  }
  const batch = { inputIds, targets: new Int32Array(inputIds.length).fill(-100), cuSeqlens: Int32Array.from([0, inputIds.length]), ...(pixelValues ? { pixelValues } : {}) };
  model.checkBatch(batch, where);
  if (prompt.seed !== undefined && !(Number.isSafeInteger(prompt.seed) && prompt.seed >= 0)) {
    throw new R1VError('ARGUMENT', `${where}.seed must be a safe integer ≥ 0`);
  }
  const promptSeed = prompt.seed !== undefined ? BigInt(prompt.seed) : hashIds(inputIds);
  return { inputIds, ...(pixelValues ? { pixelValues } : {}), seed: mix(BigInt(seed), promptSeed) };
}
