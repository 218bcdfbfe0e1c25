// String transforms of a written answer (LaTeX or plain), ahead of comparing two answers.
//
// cleanAnswer drops what never carries the value: math delimiters ($…$, \(…\)), \left/\right and
// sizing commands, spacing commands, \text{}-style wrappers (their content stays), currency
// signs, degree marks, a trailing full stop, and thousands separators: a comma joins digit
// groups only in the form 1,234,567(.89) (the first group 1–3 digits without a leading zero,
// then groups of exactly three), so `1,000` is 1000 while `1,2` and `0,500` stay lists.
// translate turns the arithmetic part of LaTeX into mathjs syntax (\frac, \sqrt, \times, \cdot,
// \div, \pi, braces) or gives null at any other command. Every function is total over strings.

const TEXT_WRAPPER = /\\(?:text|textbf|textit|textrm|textnormal|textsf|mathrm|mathbf|mathit|mathsf|mbox|operatorname)\s*\{([^{}]*)\}/g;

const UNICODE_SIGNS: readonly [RegExp, string][] = [
  [/[−–]/g, '-'], [/×/g, '\\times '], [/÷/g, '\\div '], [/[·⋅]/g, '\\cdot '], [/√/g, '\\sqrt'],
  [/π/g, '\\pi '], [/°/g, '^\\circ'], [/，/g, ','], [/：/g, ':'],
];

/** Answers longer than this are compared as text only (no list split, no parse). */
export const MAX_STRUCTURED_LENGTH = 1000;

/** The answer without the wrappers, spacing, currency, degree marks and separators listed at the top. */
export function cleanAnswer(answer: string): string {
  if (answer.length > MAX_STRUCTURED_LENGTH) return answer.trim();
  let s = answer;
  for (const [pattern, replacement] of UNICODE_SIGNS) s = s.replace(pattern, replacement);
  s = s.replace(/\\[dt]frac(?![A-Za-z])/g, '\\frac');
  for (let before = ''; before !== s;) {
    before = s;
    s = s.replace(TEXT_WRAPPER, ' $1 ');
  }
  s = s
    .replace(/\\(?:left|right|bigg?|Bigg?)[lr]?(?![A-Za-z])/g, '')
    .replace(/\\(?:displaystyle|textstyle)(?![A-Za-z])/g, '')
    .replace(/(\d)(?:\\[,!;:]|\{,\})(?=\d{3}(?!\d))/g, '$1,') // 1\,000 and 1{,}000 are 1,000
    .replace(/\\[,!;: ]|\\q?quad(?![A-Za-z])|~/g, ' ')
    .replace(/\\?\$/g, '')
    .replace(/^\s*\\[([]/, '')
    .replace(/\\[)\]]\s*$/, '')
    .replace(/\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree/g, '')
    .trim()
    .replace(/\s*\.+$/, '')
    .replace(/(^|[^\d.,])([1-9]\d{0,2})((?:,\d{3})+)(?!\d|,\d)/g, (_m, before: string, head: string, groups: string) =>
      before + head + groups.replaceAll(',', ''));
  return s;
}

/** The right-hand side of `x = …` / `\theta = …` (one simple name on the left), else the answer itself. */
export function stripAssignment(answer: string): string {
  const match = /^(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?\s*=\s*([^=]+)$/.exec(answer);
  return match ? match[1]!.trim() : answer;
}

const CHOICE_PREFIX = /^(?:(?:option|choice)\s*:?\s*)?/i;

/** The letter (upper case) when the whole answer is one decorated letter: A, (A), [A], A., A), Option A. */
export function choiceOnly(answer: string): string | null {
  const match = /^[([]?([A-Za-z])[)\]]?[.:]?$/.exec(answer.replace(CHOICE_PREFIX, ''));
  return match ? match[1]!.toUpperCase() : null;
}

/** The letter (upper case) an answer opens with as a choice: `B`, `(B) 42`, `B. 42`, `Option B`, else null. */
export function choiceLetter(answer: string): string | null {
  const match = /^(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])(?=$|[.:)]|\s))/.exec(answer.replace(CHOICE_PREFIX, ''));
  return match ? (match[1] ?? match[2] ?? match[3])!.toUpperCase() : null;
}

const OPENERS = '([{';
const CLOSERS = ')]}';

/** The parts of s between top-level commas (brackets of every kind nest; `\{` counts as `{`). */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (OPENERS.includes(c)) depth++;
    else if (CLOSERS.includes(c)) depth = Math.max(0, depth - 1);
    else if (c === ',' && depth === 0) {
      parts.push(s.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(s.slice(start).trim());
  return parts;
}

/** Whether the bracket opening s closes at its last character (and not before). */
function enclosedByOuterBrackets(s: string): boolean {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (OPENERS.includes(c)) depth++;
    else if (CLOSERS.includes(c) && --depth === 0) return i === s.length - 1;
  }
  return false;
}

/**
 * A list answer: its brackets ('' bare, '{}' for a set `\{…\}`, else the two bracket characters,
 * so intervals keep (1,2] apart from [1,2)) and its top-level comma-separated items; null when
 * there are fewer than two items.
 */
export function splitList(s: string): { brackets: string; items: string[] } | null {
  let brackets = '';
  let inner = s;
  if (s.startsWith('\\{') && s.endsWith('\\}') && enclosedByOuterBrackets(s.slice(1))) {
    brackets = '{}';
    inner = s.slice(2, -2);
  } else if (/^[([]/.test(s) && /[)\]]$/.test(s) && enclosedByOuterBrackets(s)) {
    brackets = s[0]! + s[s.length - 1]!;
    inner = s.slice(1, -1);
  }
  const items = splitTopLevel(inner);
  return items.length >= 2 ? { brackets, items } : null;
}

/** The answer without a trailing percent sign (`%` or `\\%`), and whether it had one. */
export function stripPercent(s: string): { text: string; percent: boolean } {
  const text = s.trimEnd();
  if (!text.endsWith('%')) return { text: s, percent: false };
  const sign = text.endsWith('\\%') ? 2 : 1;
  return { text: text.slice(0, text.length - sign).trimEnd(), percent: true };
}

const UNIT_WORDS = /^(.*?[\d)}])(?:\s+[A-Za-z]+(?:\s*\^\s*\{?\d\}?)?(?:\/[A-Za-z]+(?:\^\{?\d\}?)?)?)+$/s;

/** A number without the words after it: `5 cm` → `5`, `12 square units` → `12`, `3 m/s^2` → `3`. */
export function stripUnits(s: string): string {
  const text = s.trim();
  return UNIT_WORDS.exec(text)?.[1] ?? text;
}

/** The key two answers are compared by when they are not numbers: no whitespace, lower case, x^{2} as x^2. */
export function textKey(s: string): string {
  return s.replace(/\s+/g, '').replace(/([\^_])\{([^{}])\}/g, '$1$2').toLowerCase();
}

/** Reads LaTeX command arguments from a string. */
class ArgumentReader {
  pos = 0;
  constructor(readonly s: string) {}

  skipSpace(): void {
    while (this.pos < this.s.length && /\s/.test(this.s[this.pos]!)) this.pos++;
  }

  /** A command name after a backslash at pos (letters, or one other character). */
  command(): string {
    const match = /[A-Za-z]+|[^]?/y;
    match.lastIndex = this.pos + 1;
    const name = match.exec(this.s)![0];
    this.pos += 1 + name.length;
    return name;
  }

  /** The next argument: a {group}'s content, a \command, or one character; null at the end or an unclosed group. */
  argument(): string | null {
    this.skipSpace();
    const start = this.pos;
    const c = this.s[start];
    if (c === undefined) return null;
    if (c === '\\') {
      this.command();
      return this.s.slice(start, this.pos);
    }
    if (c !== '{') {
      this.pos++;
      return c;
    }
    let depth = 0;
    for (let i = start; i < this.s.length; i++) {
      const ch = this.s[i];
      if (ch === '\\') i++;
      else if (ch === '{') depth++;
      else if (ch === '}' && --depth === 0) {
        this.pos = i + 1;
        return this.s.slice(start + 1, i);
      }
    }
    return null;
  }

  /** An optional [argument] (of \sqrt), else null. */
  optional(): string | null {
    this.skipSpace();
    if (this.s[this.pos] !== '[') return null;
    const close = this.s.indexOf(']', this.pos);
    if (close < 0) return null;
    const content = this.s.slice(this.pos + 1, close);
    this.pos = close + 1;
    return content;
  }
}

/** `2\frac{1}{3}` as the mixed number 2 + 1/3 (an integer written against a fraction of integers). */
function expandMixedNumbers(s: string): string {
  return s.replace(/(^|[^\d.^_}])(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}/g, '$1($2+\\frac{$3}{$4})');
}

/** x in parentheses unless it is one number or name (fewer tokens for the parser). */
function grouped(x: string): string {
  return /^\s*(?:\d+(?:\.\d+)?|[A-Za-z]+)\s*$/.test(x) ? x.trim() : `(${x})`;
}

/** The arithmetic in s as a mathjs expression, or null when s has a command outside arithmetic. */
export function translate(s: string): string | null {
  const reader = new ArgumentReader(expandMixedNumbers(s));
  const text = reader.s;
  let out = '';
  while (reader.pos < text.length) {
    const c = text[reader.pos]!;
    if (c !== '\\') {
      out += c === '{' ? '(' : c === '}' ? ')' : c;
      reader.pos++;
      continue;
    }
    const name = reader.command();
    if (name === 'frac') {
      const numerator = reader.argument();
      const denominator = reader.argument();
      const a = numerator === null ? null : translate(numerator);
      const b = denominator === null ? null : translate(denominator);
      if (a === null || b === null) return null;
      out += `(${grouped(a)}/${grouped(b)})`;
    } else if (name === 'sqrt') {
      const degree = reader.optional();
      const radicand = reader.argument();
      const x = radicand === null ? null : translate(radicand);
      const k = degree === null ? null : translate(degree);
      if (x === null || (degree !== null && k === null)) return null;
      out += k === null ? ` sqrt(${x})` : ` nthRoot(${x}, ${k})`;
    } else if (name === 'times' || name === 'cdot' || name === 'ast') {
      out += '*';
    } else if (name === 'div') {
      out += '/';
    } else if (name === 'pi') {
      out += ' pi ';
    } else {
      return null;
    }
  }
  return out;
}
