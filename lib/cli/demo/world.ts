// The demo's world: visual arithmetic on real handwritten digits. An image is a 2×2 grid of
// 28-px MNIST digits (56×56, grayscale) holding two or three digits in reading order (the other
// cells blank); a question asks for the sum of the digits or the largest one, or (for the
// connector's alignment) which digits are shown. The digits are split by index into disjoint
// train and test sets, deterministically, so test images never reuse a training digit.
// Reasoning traces are written out step by step:
//   <think>The digits are 7, 3 and 5. 7 + 3 = 10. 10 + 5 = 15. Check: 15 - 5 = 10.</think> \boxed{15}
// (the "Check" sentence appears in half of the traces, at random, so critical words occur with
// real uncertainty). The text-only form of a problem writes the grid in the image's place, one
// character per cell (`<img>735.</img>`: digits in reading order, '.' for a blank cell), so the
// prompt has the layout the image gives it (`<img>` + one image token per cell + `</img>`) and
// what the language model learns to read there transfers to the connector's image tokens.
import { createRequire } from 'node:module';

import type { DatasetRow } from '../../data/dataset.js';
import type { RawImage } from '../../data/image.js';
import { prng } from '../../train/state.js';

/** The mnist package: mnist[d].get(i) is the i-th sample of digit d (784 values in [0, 1]). */
type Mnist = Array<{ get(i: number): number[]; length: number }>;

/** Samples of each digit used for training; the rest (≈200 per digit) are test digits. */
export const TRAIN_SAMPLES_PER_DIGIT = 800;

export type Split = 'train' | 'test';
export type QuestionKind = 'sum' | 'largest' | 'transcribe';

export const QUESTIONS: Record<QuestionKind, string> = {
  sum: 'What is the sum of the digits?',
  largest: 'What is the largest digit?',
  transcribe: 'Which digits are shown?',
};

/** The words the demo's tokenizer makes single tokens. */
export const WORDS = [
  'The', 'digits', 'are', 'and', 'What', 'is', 'the', 'sum', 'of', 'largest', 'digit', 'Which', 'shown', 'Check', 'boxed',
  'Wait', 'think', 'so', 'answer', 'at', 'most', 'user', 'assistant', 'system',
];

let mnist: Mnist | undefined;
function digits(): Mnist {
  mnist ??= createRequire(import.meta.url)('mnist') as Mnist;
  return mnist;
}

/** One problem: its digits, where each was drawn from, and its pixels. */
export interface Problem {
  digits: number[];
  /** MNIST sample index of each digit (within its class). */
  samples: number[];
  image: RawImage;
}

/** The 56×56 grayscale grid of the given MNIST samples, in reading order. */
export function renderGrid(values: readonly number[], samples: readonly number[]): RawImage {
  const data = new Uint8Array(56 * 56);
  values.forEach((d, cell) => {
    const pixels = digits()[d]!.get(samples[cell]!);
    const top = Math.floor(cell / 2) * 28, left = (cell % 2) * 28;
    for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) data[(top + y) * 56 + left + x] = Math.round(pixels[y * 28 + x]! * 255);
  });
  return { data, width: 56, height: 56, channels: 1 };
}

/** A random problem of 2–3 digits from a split; `next` is a seeded uniform generator. */
export function drawProblem(next: () => number, split: Split): Problem {
  const count = next() < 0.5 ? 2 : 3;
  const values = Array.from({ length: count }, () => Math.floor(next() * 10));
  const samples = values.map((d) => {
    const available = digits()[d]!.length;
    const [lo, hi] = split === 'train' ? [0, TRAIN_SAMPLES_PER_DIGIT] : [TRAIN_SAMPLES_PER_DIGIT, available];
    return lo + Math.floor(next() * (hi - lo));
  });
  return { digits: values, samples, image: renderGrid(values, samples) };
}

function listed(values: readonly number[]): string {
  return values.length === 1 ? String(values[0]) : `${values.slice(0, -1).join(', ')} and ${values[values.length - 1]}`;
}

/** The answer of a question about these digits. */
export function answerOf(kind: QuestionKind, values: readonly number[]): string {
  if (kind === 'sum') return String(values.reduce((a, b) => a + b, 0));
  if (kind === 'largest') return String(Math.max(...values));
  return values.join(', ');
}

/** The step-by-step reasoning and the boxed answer; `check` adds the verification sentence. */
export function traceOf(kind: QuestionKind, values: readonly number[], check: boolean): string {
  const steps = [`The digits are ${listed(values)}.`];
  if (kind === 'sum') {
    let acc = values[0]!;
    for (const v of values.slice(1)) {
      steps.push(`${acc} + ${v} = ${acc + v}.`);
      acc += v;
    }
    if (check) steps.push(`Check: ${acc} - ${values[values.length - 1]} = ${acc - values[values.length - 1]!}.`);
  } else if (kind === 'largest') {
    const max = Math.max(...values);
    if (check) steps.push(`Check: ${values.map((v) => `${v}`).join(', ')} are at most ${max}.`);
  }
  return `<think>${steps.join(' ')}</think> \\boxed{${answerOf(kind, values)}}`;
}

export interface RowOptions {
  split: Split;
  kinds: readonly QuestionKind[];
  /** With the image, or with the digits written in the question (text-only). */
  mode: 'image' | 'text';
  /** Include the reference reasoning (SFT rows). */
  withResponse: boolean;
}

/** `count` rows of the world, reproducible from `seed`. */
export function makeRows(count: number, seed: number, o: RowOptions): DatasetRow[] {
  const next = prng(seed, o.split === 'train' ? 1 : 2, o.mode === 'text' ? 3 : 4);
  return Array.from({ length: count }, () => {
    const p = drawProblem(next, o.split);
    const kind = o.kinds[Math.floor(next() * o.kinds.length)]!;
    const cells = p.digits.join('') + '.'.repeat(4 - p.digits.length);
    const question = o.mode === 'text' ? `<img>${cells}</img>\n${QUESTIONS[kind]}` : QUESTIONS[kind];
    const check = next() < 0.5;
    return {
      question, answer: answerOf(kind, p.digits), kind, digits: p.digits,
      ...(o.mode === 'image' ? { images: [p.image] } : {}),
      ...(o.withResponse ? { response: traceOf(kind, p.digits, check) } : {}),
    };
  });
}
