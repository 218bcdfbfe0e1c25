// Generation: n samples per prompt through the model's KV cache. One packed prefill runs every
// usable prompt once and fills the cache slots of its n samples; then each step samples a token
// for every unfinished sample and feeds the unfinished ones through one decode step. This file
// keeps the per-sample bookkeeping (tokens, logprobs, entropies, finish reasons), the stop
// rules and progress; the model does the math (VisionLanguageModel.prefill / decodeStep / logits).
//
// Sampling is reproducible: the draw of sample j of a prompt at step t depends only on
// (seed, the prompt's seed or token ids, j, t), not on the other prompts in the batch.
import { R1VError } from '../core/errors.js';
import * as is from '../core/validate.js';
import { packBatch } from '../data/batch.js';
import type { ImageProcessor } from '../data/image.js';
import type { Tokenizer } from '../data/tokenizer.js';
import type { VisionLanguageModel } from '../model/model.js';
import type { FTensor } from '../model/parameters.js';
import * as ops from '../ops/index.js';
import { mixSeeds, preparePrompt, type GeneratePrompt, type PreparedPrompt } from './prompts.js';
import { StopRule } from './stop.js';

export type { GeneratePrompt } from './prompts.js';

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
  /** Each prompt as the model saw it (token ids, image tiles), or its R1VError: what a trainer packs with the responses. */
  prompts: Array<{ inputIds: Int32Array; pixelValues?: Float32Array } | R1VError>;
};

/** A sample still in the cache: its slot (= its index among the live samples) and what it produced. */
interface Sample {
  out: Generation;
  slot: number;
  seed: bigint;
  tokens: number[];
  logprobs: number[];
  entropy: number[];
  done: boolean;
}

interface SamplingOptions {
  temperature: number;
  topP: number;
  topK: number;
  bannedTokenIds?: number[];
}

const GENERATE_OPTIONS = [
  'n', 'maxNewTokens', 'temperature', 'topP', 'topK', 'seed', 'stop', 'bannedTokenIds', 'tokenizer', 'imageProcessor',
  'onProgress', 'signal',
] as const;

function checkIds(ids: unknown, vocab: number, name: string): number[] {
  if (ids === undefined) return [];
  if (!Array.isArray(ids) && !(ids instanceof Int32Array)) is.fail('generate', `${name} must be an array of token ids`);
  return Array.from(ids as ArrayLike<unknown>, (id, i) => {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocab) is.fail('generate', `${name}[${i}] = ${String(id)} is not a token id in [0, ${vocab})`);
    return id as number;
  });
}

/** The tokenizer's end-of-sequence ids, which must be ids of the model's vocabulary. */
function tokenizerStopIds(tokenizer: Tokenizer, vocab: number): number[] {
  const ids = [...tokenizer.eosTokenIds];
  const outside = ids.filter((id) => !(id >= 0 && id < vocab));
  if (outside.length > 0) {
    is.fail('generate', `the tokenizer's end-of-sequence id(s) ${outside.join(', ')} lie outside the model's vocabulary [0, ${vocab}): `
      + 'the tokenizer does not match the model (pass stop.tokenIds to choose the stop ids)', 'CONFIG');
  }
  return ids;
}

function checkOptions(model: VisionLanguageModel, options: GenerateOptions) {
  const fn = 'generate';
  const o = is.options(options, GENERATE_OPTIONS, fn);
  const vocab = model.config.language.vocabSize;
  const n = is.optionalNumber(o.n, 'n', fn, 1, { integer: true, min: 1 });
  const maxNewTokens = is.optionalNumber(o.maxNewTokens, 'maxNewTokens', fn, 256, { integer: true, min: 1 });
  const sampling: SamplingOptions = {
    temperature: is.optionalNumber(o.temperature, 'temperature', fn, 1, { min: 0 }),
    topP: is.optionalNumber(o.topP, 'topP', fn, 1, { above: 0, max: 1 }),
    topK: is.optionalNumber(o.topK, 'topK', fn, 0, { integer: true, min: 0 }),
  };
  const seed = is.optionalNumber(o.seed, 'seed', fn, 0, { integer: true, min: 0 });
  const tokenizer = options.tokenizer;
  const stop = o.stop === undefined ? {} : o.stop as NonNullable<GenerateOptions['stop']>;
  if (!is.isObject(stop)) is.fail(fn, 'stop must be an object { tokenIds?, strings? }');
  const stopIds = stop.tokenIds !== undefined ? checkIds(stop.tokenIds, vocab, 'stop.tokenIds') : tokenizer ? tokenizerStopIds(tokenizer, vocab) : [];
  const stopStrings = [...(stop.strings ?? [])];
  if (stopStrings.some((s) => typeof s !== 'string' || s === '')) is.fail(fn, 'stop.strings must be non-empty strings');
  if (stopStrings.length > 0 && !tokenizer) is.fail(fn, 'stop.strings needs a tokenizer (options.tokenizer)');
  const banned = checkIds(o.bannedTokenIds, vocab, 'bannedTokenIds');
  // <IMG_CONTEXT> marks image slots: a generated one would make the sample unusable for training.
  const imageToken = model.imageContextTokenId;
  if (imageToken !== undefined && imageToken < vocab && !banned.includes(imageToken)) banned.push(imageToken);
  if (banned.length) sampling.bannedTokenIds = banned;
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) is.fail(fn, 'signal must be an AbortSignal');
  if (o.onProgress !== undefined) is.func(o.onProgress, 'onProgress', fn);
  return { n, maxNewTokens, sampling, seed, tokenizer, stop: new StopRule(stopIds, stopStrings, tokenizer) };
}

/**
 * Generates n samples for every prompt. Option errors reject at once; a prompt that cannot be
 * used (too long for the model, images not matching its placeholders, an unreadable image) gives
 * its samples finishReason 'error' with the R1VError, and the other prompts are generated.
 */
export async function generate(model: VisionLanguageModel, prompts: readonly GeneratePrompt[], options: GenerateOptions = {}): Promise<GenerateResult> {
  const o = checkOptions(model, options);
  if (!Array.isArray(prompts)) is.fail('generate', 'prompts must be an array');
  const started = performance.now();
  // ---- prompts → ids and pixels; a bad prompt becomes 'error' samples
  const context = { model, tokenizer: o.tokenizer, imageProcessor: options.imageProcessor, maxNewTokens: o.maxNewTokens, seed: o.seed };
  const outputs: Generation[] = [];
  const samples: Sample[] = [];
  const live: PreparedPrompt[] = [];
  const prepared: GenerateResult['prompts'] = [];
  for (let i = 0; i < prompts.length; i++) {
    let p: PreparedPrompt | R1VError;
    try {
      p = await preparePrompt(prompts[i], i, context);
    } catch (error) {
      if (!(error instanceof R1VError)) throw error;
      p = error;
    }
    prepared.push(p instanceof R1VError ? p : { inputIds: p.inputIds, ...(p.pixelValues ? { pixelValues: p.pixelValues } : {}) });
    for (let j = 0; j < o.n; j++) {
      const out: Generation = { prompt: i, sample: j, tokenIds: new Int32Array(0), text: '', logprobs: new Float32Array(0), entropy: new Float32Array(0), finishReason: 'error' };
      outputs.push(out);
      if (p instanceof R1VError) out.error = p;
      else samples.push({ out, slot: samples.length, seed: mixSeeds(p.seed, BigInt(j)), tokens: [], logprobs: [], entropy: [], done: false });
    }
    if (!(p instanceof R1VError)) live.push(p);
  }
  const stats = { prefillTokens: 0, steps: 0, generatedTokens: 0, kvCacheBytes: 0, prefillMs: 0, decodeMs: 0 };
  const result = Object.assign(outputs, { stats, prompts: prepared });
  if (samples.length === 0) return result;
  if (options.signal?.aborted) {
    for (const s of samples) s.out.finishReason = 'aborted';
    return result;
  }
  const finish = (s: Sample, reason: Generation['finishReason']) => {
    s.done = true;
    Object.assign(s.out, {
      finishReason: reason, tokenIds: Int32Array.from(s.tokens), logprobs: Float32Array.from(s.logprobs), entropy: Float32Array.from(s.entropy),
    });
    s.out.text = o.tokenizer ? o.tokenizer.decode(s.out.tokenIds) : '';
  };

  const maxLen = Math.max(...live.map((p) => p.inputIds.length)) + o.maxNewTokens;
  const cache = model.createKvCache(samples.length, maxLen);
  stats.kvCacheBytes = cache.bytes;
  try {
    // ---- prefill: every live prompt once, packed; sample j of live prompt i sits in slot i·n + j
    const batch = packBatch(live);
    stats.prefillTokens = batch.inputIds.length;
    const copies = samples.map((s) => ({ sequence: Math.floor(s.slot / o.n), slot: s.slot }));
    let hidden = await model.prefill(cache, batch, copies);
    let active = samples;
    let decodeStarted = 0;
    for (let step = 1; ; step++) {
      const got = await sampleFrom(model, hidden, active, step - 1, o.sampling);
      if (step === 1) {
        // The prefill has run once its first tokens are back (the ops only queue work).
        decodeStarted = performance.now();
        stats.prefillMs = decodeStarted - started;
      }
      stats.steps = step;
      active.forEach((s, i) => {
        s.tokens.push(got.tokens[i]!);
        s.logprobs.push(got.logprobs[i]!);
        s.entropy.push(got.entropy[i]!);
        stats.generatedTokens++;
        if (o.stop.stops(s.tokens)) finish(s, 'stop');
        else if (s.tokens.length >= o.maxNewTokens) finish(s, 'length');
      });
      active = active.filter((s) => !s.done);
      options.onProgress?.({ step, active: active.length, finished: outputs.length - active.length, generatedTokens: stats.generatedTokens, kvCacheBytes: stats.kvCacheBytes });
      if (active.length === 0) break;
      if (options.signal?.aborted) {
        for (const s of active) finish(s, 'aborted');
        break;
      }
      hidden = model.decodeStep(cache, Int32Array.from(active, (s) => s.slot), Int32Array.from(active, (s) => s.tokens[s.tokens.length - 1]!));
    }
    stats.decodeMs = performance.now() - decodeStarted;
  } catch (error) {
    for (const s of samples) if (!s.done) finish(s, 'aborted');
    throw error;
  } finally {
    cache.dispose();
  }
  return result;
}

/** Logits of the hidden rows (consumed) → one sampled token per active sample, read back. */
async function sampleFrom(model: VisionLanguageModel, hidden: FTensor, active: readonly Sample[], offset: number, sampling: SamplingOptions):
  Promise<{ tokens: Int32Array; logprobs: Float32Array; entropy: Float32Array }> {
  const logits = model.logits(hidden);
  hidden.dispose();
  const r = ops.sampleTokens(logits, {
    seeds: BigUint64Array.from(active, (s) => s.seed),
    offsets: new Int32Array(active.length).fill(offset),
    ...sampling,
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
