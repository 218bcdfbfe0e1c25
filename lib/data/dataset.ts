// Training rows: a question with its reference answer, optional images, an optional reference
// response (the target of SFT: the reasoning trace and the answer) and an optional difficulty
// (for curriculum ordering). Read from JSONL (one JSON object per line) or given in code. A row
// without an answer, or a line that is not a JSON object, is skipped and counted, never fatal;
// an image that cannot be read is found when the row is used (the trainer skips and counts it).
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { R1VError } from '../core/errors.js';
import type { ImageInput } from './image.js';

export interface DatasetRow {
  /** The question (the user message; `<image>` placeholders are added for images it lacks). */
  question: string;
  /** The reference answer, compared by the accuracy reward. */
  answer: string;
  /** Images of the question: file paths (relative to the JSONL file's directory), bytes or raw pixels. */
  images?: ImageInput[];
  /** The reference response for SFT (e.g. `<think>…</think> \boxed{16}`). */
  response?: string;
  /** Larger is harder (curriculum ordering). */
  difficulty?: number;
  /** Anything else the row had (user reward functions see the whole row). */
  [key: string]: unknown;
}

/** A skipped line and why. */
export interface SkippedRow {
  line: number;
  reason: string;
}

export class Dataset {
  private constructor(
    readonly rows: readonly DatasetRow[],
    /** Lines (1-based) that were skipped, with the reason. */
    readonly skipped: readonly SkippedRow[],
    /** Where the rows came from (a file, or 'rows'). */
    readonly source: string,
  ) {}

  /** Reads a JSONL file: { question, answer, image?, images?, response?, difficulty?, ... } per line. */
  static async fromJsonl(file: string): Promise<Dataset> {
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (error) {
      throw new R1VError('IO', `dataset ${file}: cannot read: ${(error as Error).message}`, { cause: error });
    }
    const base = path.dirname(path.resolve(file));
    const rows: DatasetRow[] = [];
    const skipped: SkippedRow[] = [];
    text.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (error) {
        skipped.push({ line: i + 1, reason: `not JSON (${(error as Error).message})` });
        return;
      }
      const row = normaliseRow(value, base);
      if (typeof row === 'string') skipped.push({ line: i + 1, reason: row });
      else rows.push(row);
    });
    return new Dataset(rows, skipped, file);
  }

  /** Rows given in code (image paths relative to `base`, default the working directory). */
  static fromRows(input: readonly unknown[], base = process.cwd()): Dataset {
    if (!Array.isArray(input)) throw new R1VError('ARGUMENT', 'Dataset.fromRows: rows must be an array');
    const rows: DatasetRow[] = [];
    const skipped: SkippedRow[] = [];
    input.forEach((value, i) => {
      const row = normaliseRow(value, base);
      if (typeof row === 'string') skipped.push({ line: i + 1, reason: row });
      else rows.push(row);
    });
    return new Dataset(rows, skipped, 'rows');
  }

  get length(): number {
    return this.rows.length;
  }
}

/** The row in canonical form, or why it is skipped. */
function normaliseRow(value: unknown, base: string): DatasetRow | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const v = value as Record<string, unknown>;
  if (typeof v.question !== 'string' || v.question === '') return 'no question';
  const answer = typeof v.answer === 'number' && Number.isFinite(v.answer) ? String(v.answer) : v.answer;
  if (typeof answer !== 'string' || answer.trim() === '') return 'no answer';
  const { image, images, ...rest } = v;
  const list = images !== undefined ? images : image !== undefined ? [image] : [];
  if (!Array.isArray(list)) return 'images must be an array';
  const resolved: ImageInput[] = [];
  for (const im of list) {
    if (typeof im === 'string') resolved.push(path.resolve(base, im));
    else if (im instanceof Uint8Array || (typeof im === 'object' && im !== null)) resolved.push(im as ImageInput);
    else return 'an image must be a path, bytes or raw pixels';
  }
  if (v.response !== undefined && typeof v.response !== 'string') return 'response must be a string';
  if (v.difficulty !== undefined && !(typeof v.difficulty === 'number' && Number.isFinite(v.difficulty))) return 'difficulty must be a number';
  return { ...rest, question: v.question, answer, ...(resolved.length ? { images: resolved } : {}) } as DatasetRow;
}
