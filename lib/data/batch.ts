// Packed (padding-free) batches: sequences concatenated back to back, with cuSeqlens giving
// each one's token range, per-position next-token targets (IGNORE_INDEX where a position is
// not scored) and the image tiles of all sequences concatenated in order. This is the one place
// that packs; the model, generation and the trainer all build their batches here.
import { R1VError } from '../core/errors.js';

/** The target of a position that is not scored (PyTorch's ignore_index). */
export const IGNORE_INDEX = -100;

/** A packed batch of sequences (no padding). */
export interface Batch {
  /** Token ids of all sequences, concatenated: [T]. */
  inputIds: Int32Array;
  /** targets[t] is the token position t predicts (usually inputIds[t + 1]); IGNORE_INDEX (−100) = not scored. [T]. */
  targets: Int32Array;
  /** Sequence offsets [B + 1]: 0, then cumulative lengths, ending at T. */
  cuSeqlens: Int32Array;
  /**
   * Image tiles [tiles, 3, S, S] (normalised pixels), whose embeddings replace, in order, the
   * token embeddings at the `<IMG_CONTEXT>` positions of inputIds (tokensPerTile per tile).
   */
  pixelValues?: Float32Array;
}

/** One sequence to pack. */
export interface PackSequence {
  inputIds: ArrayLike<number>;
  /** Per-position targets (same length); default: none scored. */
  targets?: ArrayLike<number>;
  /** This sequence's image tiles, in placeholder order. */
  pixelValues?: Float32Array;
}

/**
 * The targets of a prompt followed by a response: position t predicts token t + 1 for the
 * response tokens only (positions promptLength − 1 … length − 2), IGNORE_INDEX elsewhere.
 */
export function responseTargets(inputIds: ArrayLike<number>, promptLength: number): Int32Array {
  if (!Number.isInteger(promptLength) || promptLength < 1 || promptLength > inputIds.length) {
    throw new R1VError('ARGUMENT', `responseTargets: promptLength must be an integer in [1, ${inputIds.length}], got ${promptLength}`);
  }
  const targets = new Int32Array(inputIds.length).fill(IGNORE_INDEX);
  for (let t = promptLength - 1; t + 1 < inputIds.length; t++) targets[t] = inputIds[t + 1]!;
  return targets;
}

/** Concatenates sequences into one packed batch (pixelValues only when some sequence has tiles). */
export function packBatch(sequences: readonly PackSequence[]): Batch {
  let tokens = 0, pixels = 0;
  for (const [i, s] of sequences.entries()) {
    if (s.targets !== undefined && s.targets.length !== s.inputIds.length) {
      throw new R1VError('SHAPE', `packBatch: sequences[${i}].targets has ${s.targets.length} entries, inputIds ${s.inputIds.length}`);
    }
    tokens += s.inputIds.length;
    pixels += s.pixelValues?.length ?? 0;
  }
  const inputIds = new Int32Array(tokens), targets = new Int32Array(tokens).fill(IGNORE_INDEX);
  const cuSeqlens = new Int32Array(sequences.length + 1);
  const pixelValues = pixels > 0 ? new Float32Array(pixels) : undefined;
  let at = 0, pixelAt = 0;
  for (const [i, s] of sequences.entries()) {
    inputIds.set(s.inputIds, at);
    if (s.targets) targets.set(s.targets, at);
    at += s.inputIds.length;
    cuSeqlens[i + 1] = at;
    if (s.pixelValues && pixelValues) {
      pixelValues.set(s.pixelValues, pixelAt);
      pixelAt += s.pixelValues.length;
    }
  }
  return { inputIds, targets, cuSeqlens, ...(pixelValues ? { pixelValues } : {}) };
}

/** Positions with a target, in order (the rows the model's forward scores). */
export function scoredPositions(targets: Int32Array): Int32Array {
  let n = 0;
  for (const t of targets) if (t !== IGNORE_INDEX) n++;
  const out = new Int32Array(n);
  let k = 0;
  for (let t = 0; t < targets.length; t++) if (targets[t] !== IGNORE_INDEX) out[k++] = t;
  return out;
}
