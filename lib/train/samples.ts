// What one training step works on: sequences of a prompt (token ids and image tiles, as the
// model saw them) followed by a response, scored on the response tokens only. A response of L
// tokens gives L scored positions (the last prompt token predicts the first response token), so
// a packed batch's scored rows are its responses' tokens back to back, in sequence order: the
// per-token arrays of the losses (logprobs, advantages, ...) use the same order, with
// responseOffsets as their cuSeqlens. Micro-batches hold whole sequences.
import type { Batch } from '../data/batch.js';
import { packBatch, responseTargets } from '../data/batch.js';
import type { DatasetRow } from '../data/dataset.js';
import type { ImageInput } from '../data/image.js';
import type { ChatMessage } from '../data/tokenizer.js';

/** A prompt followed by a response. */
export interface Sequence {
  promptIds: Int32Array;
  pixelValues?: Float32Array | undefined;
  responseIds: Int32Array;
}

/** One generated response with everything the RL step learns about it. */
export interface RolloutSample extends Sequence {
  /** Its prompt's index in the step's batch of prompts (samples of one prompt form a group). */
  group: number;
  row: DatasetRow;
  text: string;
  finishReason: 'stop' | 'length' | 'aborted' | 'error';
  /** Per response token, from generation: log p under softmax(logits / T), and the entropy. */
  logprobs: Float32Array;
  entropy: Float32Array;
  /** The weighted total reward (after shaping) and each reward's score. */
  reward: number;
  rewards: Record<string, number>;
  /** Per response token: the advantage (an outcome estimator's scalar repeated), and for GAE the returns and old values. */
  advantages?: Float32Array;
  returns?: Float32Array;
  values?: Float32Array;
  /** Per response token: the logprobs of the policy before this step's updates, and of the reference model. */
  oldLogprobs?: Float32Array;
  refLogprobs?: Float32Array;
}

/** The chat messages and images of a dataset row: `<image>` placeholders are added for images the question lacks. */
export function rowPrompt(row: DatasetRow, systemPrompt?: string): { messages: ChatMessage[]; images: ImageInput[] } {
  const images = row.images ?? [];
  const present = row.question.split('<image>').length - 1;
  const question = '<image>\n'.repeat(Math.max(0, images.length - present)) + row.question;
  const messages: ChatMessage[] = [];
  if (systemPrompt) messages.push({ role: 'system', content: systemPrompt });
  messages.push({ role: 'user', content: question });
  return { messages, images };
}

/** Tokens of a sequence. */
export function sequenceTokens(s: Sequence): number {
  return s.promptIds.length + s.responseIds.length;
}

/** The packed batch of sequences, scored on their responses. */
export function packSequences(sequences: readonly Sequence[]): Batch {
  return packBatch(sequences.map((s) => {
    const inputIds = new Int32Array(s.promptIds.length + s.responseIds.length);
    inputIds.set(s.promptIds);
    inputIds.set(s.responseIds, s.promptIds.length);
    return { inputIds, targets: responseTargets(inputIds, s.promptIds.length), ...(s.pixelValues ? { pixelValues: s.pixelValues } : {}) };
  }));
}

/** cuSeqlens of the sequences' response tokens (the scored rows of packSequences). */
export function responseOffsets(sequences: readonly Sequence[]): Int32Array {
  const cu = new Int32Array(sequences.length + 1);
  sequences.forEach((s, i) => (cu[i + 1] = cu[i]! + s.responseIds.length));
  return cu;
}

/** Concatenates one per-sequence array field (each of its response's length). */
export function concatField(sequences: readonly RolloutSample[], field: (s: RolloutSample) => Float32Array | undefined): Float32Array {
  const out = new Float32Array(sequences.reduce((n, s) => n + s.responseIds.length, 0));
  let at = 0;
  for (const s of sequences) {
    const values = field(s);
    if (values) out.set(values, at);
    at += s.responseIds.length;
  }
  return out;
}

/** Consecutive runs of items with at most `budget` tokens each (an item larger than the budget runs alone). */
export function microBatches<T>(items: readonly T[], tokensOf: (item: T) => number, budget: number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let tokens = 0;
  for (const item of items) {
    const n = tokensOf(item);
    if (current.length > 0 && tokens + n > budget) {
      out.push(current);
      current = [];
      tokens = 0;
    }
    current.push(item);
    tokens += n;
  }
  if (current.length > 0) out.push(current);
  return out;
}
