// Critical-token entropy: the mean entropy of the predictive distribution at positions whose
// sampled token begins a "critical" reasoning word (wait, however, ...), the signal R1V3 uses to
// pick checkpoints.
//
// Conventions: a word maps to the first token of each of its spellings: lower, Capitalised and
// UPPER case, each with and without a leading space (6 variants), encoded without special tokens.
// A first token is kept only when its text, trimmed of leading whitespace, has at least
// min(3, word length) characters: an all-caps variant that the tokenizer splits into single
// letters ('HMM' → 'H' 'MM') would otherwise flag every 'H' of every text. Ids are token ids of
// the tokenizer that rollout sampled with.
import { fail, isObject, show } from '../core/validate.js';
import type { Tokenizer } from '../data/tokenizer.js';
import { sameLengthArrays } from './inputs.js';

export const DEFAULT_CRITICAL_WORDS: readonly string[] = ['wait', 'alternatively', 'hmm', 'however', 'but', 'check', 'verify'];

/** The tokenizer methods criticalTokenIds uses. */
export type CriticalTokenizer = Pick<Tokenizer, 'encode' | 'decode'>;

/** The spellings of a word whose first tokens are looked up. */
function variants(word: string): string[] {
  const lower = word.toLowerCase();
  const cases = [lower, lower.charAt(0).toUpperCase() + lower.slice(1), lower.toUpperCase()];
  return cases.flatMap((text) => [text, ` ${text}`]);
}

/** Every token id that begins one of `words` (see the conventions above). */
export function criticalTokenIds(tokenizer: CriticalTokenizer, words: readonly string[] = DEFAULT_CRITICAL_WORDS): Set<number> {
  const where = 'rl.criticalTokenIds';
  if (!isObject(tokenizer) || typeof tokenizer.encode !== 'function' || typeof tokenizer.decode !== 'function') {
    fail(where, `tokenizer must have encode and decode, got ${show(tokenizer)}`);
  }
  if (!Array.isArray(words)) fail(where, `words must be an array of strings, got ${show(words)}`);
  const ids = new Set<number>();
  words.forEach((word: unknown, i) => {
    if (typeof word !== 'string' || word.trim() === '' || word.trim() !== word) {
      fail(where, `words[${i}] must be a non-empty word without surrounding whitespace, got ${show(word)}`);
    }
    const minimum = Math.min(3, word.length);
    for (const text of variants(word)) {
      const first = tokenizer.encode(text, { addSpecialTokens: false })[0];
      if (first !== undefined && tokenizer.decode([first]).trimStart().length >= minimum) ids.add(first);
    }
  });
  return ids;
}

/**
 * Mean entropy over the positions t whose token tokenIds[t] is in `ids`, and how many there
 * were. With no such position the mean is NaN (there is no measurement; 0 would read as a
 * confident model), count 0.
 */
export function criticalTokenEntropy(
  tokenIds: ArrayLike<number>, entropy: ArrayLike<number>, ids: ReadonlySet<number>,
): { mean: number; count: number } {
  const where = 'rl.criticalTokenEntropy';
  const { tokenIds: tokens, entropy: entropies } = sameLengthArrays(where, { tokenIds, entropy });
  if (!(ids instanceof Set)) fail(where, `ids must be a Set of token ids, got ${show(ids)}`);
  let sum = 0;
  let count = 0;
  for (let t = 0; t < tokens.length; t++) {
    if (ids.has(tokens[t]!)) {
      sum += entropies[t]!;
      count++;
    }
  }
  return { mean: count === 0 ? Number.NaN : sum / count, count };
}
