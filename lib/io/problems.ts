// Problem lists for error messages: the first problems in full, then a count of the rest, so a
// file with millions of faults still gives a message of a few lines.

/** `text` cut to at most `max` characters (a name in a crafted file can be megabytes long). */
export function clip(text: string, max = 300): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Collects problems; keeps the first `limit` (each clipped), counts all. */
export class ProblemList {
  readonly #shown: string[] = [];
  #count = 0;

  constructor(readonly limit = 20) {}

  add(problem: string): void {
    this.#count += 1;
    if (this.#shown.length < this.limit) this.#shown.push(clip(problem));
  }

  /** How many problems were added (shown or not). */
  get count(): number {
    return this.#count;
  }

  /** The kept problems as indented lines, then "… and N more" when some were left out. */
  toString(): string {
    const more = this.#count - this.#shown.length;
    return this.#shown.map((p) => `\n  ${p}`).join('') + (more > 0 ? `\n  … and ${more} more` : '');
  }
}
