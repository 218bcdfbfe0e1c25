// Where the answer of a response is, and whether the response has the R1 shape.
//
// A response is `<think> reasoning </think> answer`, possibly followed by end-of-turn markers
// (`<|im_end|>`, ...) that the tokenizer decoded; those are dropped first. Chat templates that
// open the think block themselves (Qwen3 with thinking) put `<think>` in the prompt, so the
// response is `reasoning </think> answer`.
//
// The answer is the content of the last `\boxed{…}` / `\fbox{…}` (braces balanced, `\{` and `\}`
// literal; `\boxed 5` takes the next word; a malformed last box is no box), else the rest of the
// line after the last "answer:" / "answer is" ("The answer is X", "Final answer: X",
// "**Answer:** X").
// Only the text after the last `</think>` is searched by default: a value boxed inside the
// reasoning is a step, not the answer, and a response whose think block never closes (cut off;
// with thinkInPrompt, any response without `</think>`) has no answer. Every function here is total over strings (linear time, never throws).
import { fail, optionalBoolean, options, show } from '../core/validate.js';

/** End-of-turn markers dropped from the end of a response by default. */
export const DEFAULT_END_MARKERS: readonly string[] = Object.freeze([
  '<|im_end|>', '<|endoftext|>', '<|end_of_text|>', '<|eot_id|>', '</s>', '<｜end▁of▁sentence｜>',
]);

const THINK_OPEN = '<think>';
const THINK_CLOSE = '</think>';

export interface ExtractAnswerOptions {
  /** Search only the text after the last `</think>` when the response has a think block. Default true. */
  searchAfterThink?: boolean;
  /**
   * The prompt opened the think block: a response without `</think>` is all reasoning (no
   * answer). Default false. Only matters with searchAfterThink.
   */
  thinkInPrompt?: boolean;
  /** Markers dropped from the end of the response (repeatedly, with surrounding whitespace). */
  endMarkers?: readonly string[];
}

export interface FormatOptions {
  /** The prompt opened the think block: the response is `reasoning </think> answer`. Default false. */
  thinkInPrompt?: boolean;
  /** The answer must contain a non-empty `\boxed{…}`. Default false. */
  requireBoxed?: boolean;
  /** Markers dropped from the end of the response (repeatedly, with surrounding whitespace). */
  endMarkers?: readonly string[];
}

/** endMarkers option: an array of non-empty strings (undefined → the defaults). */
function endMarkersOption(value: unknown, where: string): readonly string[] {
  if (value === undefined) return DEFAULT_END_MARKERS;
  if (!Array.isArray(value)) fail(where, `endMarkers must be an array of strings, got ${show(value)}`);
  value.forEach((marker, i) => {
    if (typeof marker !== 'string' || marker === '') fail(where, `endMarkers[${i}] must be a non-empty string, got ${show(marker)}`);
  });
  return [...value] as string[];
}

/** The response without trailing end markers and whitespace. */
function stripEndMarkers(text: string, markers: readonly string[]): string {
  let end = text.trimEnd();
  for (let found = true; found;) {
    found = false;
    for (const marker of markers) {
      if (end.endsWith(marker)) {
        end = end.slice(0, end.length - marker.length).trimEnd();
        found = true;
      }
    }
  }
  return end;
}

function countOf(text: string, needle: string): number {
  let count = 0;
  for (let i = text.indexOf(needle); i >= 0; i = text.indexOf(needle, i + needle.length)) count++;
  return count;
}

/**
 * The part of a (marker-stripped) response that holds the answer: after the last `</think>`;
 * empty when the think block is never closed (a `<think>` in the response, or thinkInPrompt);
 * else the whole text.
 */
function answerRegion(text: string, { searchAfterThink, thinkInPrompt }: ExtractSettings): string {
  if (!searchAfterThink) return text;
  const close = text.lastIndexOf(THINK_CLOSE);
  if (close >= 0) return text.slice(close + THINK_CLOSE.length);
  return thinkInPrompt || text.includes(THINK_OPEN) ? '' : text;
}

/** The content of the {group} opening at text[open] (a backslash makes the next character literal), or null when unclosed. */
function braceGroup(text: string, open: number): string | null {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '\\') i++;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return text.slice(open + 1, i);
  }
  return null;
}

const BOX_COMMAND = /\\(?:boxed|fbox)(?![A-Za-z])/g;

/**
 * The content of the last `\boxed{…}` or `\fbox{…}` (or `\boxed x`: the next word) in text; null
 * when there is none or the last one is malformed (unclosed, empty `\boxed`).
 */
export function lastBoxed(text: string): string | null {
  let start = -1;
  for (const match of text.matchAll(BOX_COMMAND)) start = match.index + match[0].length;
  if (start < 0) return null;
  let i = start;
  while (i < text.length && /\s/.test(text[i]!)) i++;
  if (text[i] === '{') return braceGroup(text, i);
  if (i === start && !/[0-9A-Za-z+\-.]/.test(text[i] ?? '')) return null;
  return /^[^\s$]+/.exec(text.slice(i, i + 200))?.[0] ?? null;
}

// "answer:" or "answer is" with optional markdown emphasis around, e.g. "**Final Answer:**".
const ANSWER_LEAD = /\banswer\b[*_ \t]*(?:is\b[ \t]*:?|:)[*_]*/gi;

/** The rest of the line after the last "answer:" / "answer is" (or the next line when that is empty), else null. */
function answerLine(text: string): string | null {
  let end = -1;
  for (const match of text.matchAll(ANSWER_LEAD)) end = match.index + match[0].length;
  if (end < 0) return null;
  const line = /^\s*(.*)/.exec(text.slice(end))![1]!;
  let first = 0;
  let last = line.length;
  while (first < last && ' \t\r*_'.includes(line[first]!)) first++;
  while (last > first && ' \t\r*_.'.includes(line[last - 1]!)) last--;
  return first === last ? null : line.slice(first, last);
}

/** extractAnswer with checked settings. */
export function extractAnswerWith(text: string, settings: ExtractSettings): string | null {
  const region = answerRegion(stripEndMarkers(text, settings.endMarkers), settings);
  return lastBoxed(region) ?? answerLine(region);
}

/** formatScore with checked settings. */
export function formatScoreWith(text: string, { thinkInPrompt, requireBoxed, endMarkers }: FormatSettings): 0 | 1 {
  const body = stripEndMarkers(text, endMarkers);
  const opens = countOf(body, THINK_OPEN);
  if (countOf(body, THINK_CLOSE) !== 1) return 0;
  if (thinkInPrompt ? opens !== 0 : opens !== 1 || !body.trimStart().startsWith(THINK_OPEN)) return 0;
  const answer = body.slice(body.indexOf(THINK_CLOSE) + THINK_CLOSE.length);
  if (answer.trim() === '') return 0;
  if (requireBoxed && !(lastBoxed(answer)?.trim())) return 0;
  return 1;
}

export const EXTRACT_KEYS = ['searchAfterThink', 'thinkInPrompt', 'endMarkers'] as const;
export const FORMAT_KEYS = ['thinkInPrompt', 'requireBoxed', 'endMarkers'] as const;

export interface ExtractSettings { searchAfterThink: boolean; thinkInPrompt: boolean; endMarkers: readonly string[] }
export interface FormatSettings { thinkInPrompt: boolean; requireBoxed: boolean; endMarkers: readonly string[] }

/** ExtractAnswerOptions with defaults, from an options record already checked for unknown keys. */
export function extractSettings(o: { [K in (typeof EXTRACT_KEYS)[number]]?: unknown }, where: string): ExtractSettings {
  return {
    searchAfterThink: optionalBoolean(o.searchAfterThink, 'searchAfterThink', where, true),
    thinkInPrompt: optionalBoolean(o.thinkInPrompt, 'thinkInPrompt', where, false),
    endMarkers: endMarkersOption(o.endMarkers, where),
  };
}

/** FormatOptions with defaults, from an options record already checked for unknown keys. */
export function formatSettings(o: { [K in (typeof FORMAT_KEYS)[number]]?: unknown }, where: string): FormatSettings {
  return {
    thinkInPrompt: optionalBoolean(o.thinkInPrompt, 'thinkInPrompt', where, false),
    requireBoxed: optionalBoolean(o.requireBoxed, 'requireBoxed', where, false),
    endMarkers: endMarkersOption(o.endMarkers, where),
  };
}

function checkedText(text: unknown, where: string): string {
  if (typeof text !== 'string') fail(where, `text must be a string, got ${show(text)}`);
  return text;
}

/** The answer of a response (see the top of this file), or null when it has none. */
export function extractAnswer(text: string, extractOptions?: ExtractAnswerOptions): string | null {
  const where = 'extractAnswer';
  return extractAnswerWith(checkedText(text, where), extractSettings(options(extractOptions, EXTRACT_KEYS, where), where));
}

/** 1 when the response has the think-then-answer shape (see FormatOptions), else 0. */
export function formatScore(text: string, formatOptions?: FormatOptions): 0 | 1 {
  const where = 'formatScore';
  return formatScoreWith(checkedText(text, where), formatSettings(options(formatOptions, FORMAT_KEYS, where), where));
}
