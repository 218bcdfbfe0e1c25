// When a sample stops: after generating one of the stop token ids, or once its decoded text
// gains one of the stop strings (a string may span several tokens; only the newest token can
// complete a new match, so only the tail of the text is decoded each step).
import type { Tokenizer } from '../data/tokenizer.js';

export class StopRule {
  readonly #ids: ReadonlySet<number>;
  readonly #strings: readonly string[];
  readonly #longest: number;

  constructor(ids: readonly number[], strings: readonly string[], readonly tokenizer: Tokenizer | undefined) {
    this.#ids = new Set(ids);
    this.#strings = strings;
    this.#longest = Math.max(0, ...strings.map((s) => s.length));
  }

  /** Whether a sample whose tokens so far are `tokens` (the newest last) stops here. */
  stops(tokens: readonly number[]): boolean {
    if (this.#ids.has(tokens[tokens.length - 1]!)) return true;
    if (this.#strings.length === 0 || !this.tokenizer) return false;
    // A match needs at most `longest` characters, and every token decodes to at least one.
    const tail = this.tokenizer.decode(tokens.slice(-(this.#longest + 1)));
    const before = this.tokenizer.decode(tokens.slice(-(this.#longest + 1), -1));
    return this.#strings.some((s) => tail.includes(s) && !before.includes(s));
  }
}
