// How the command line fails: every failure becomes one line on stderr, `r1v: <message>`
// (multi-line messages joined with '; '), and an exit code. With --verbose the error's code,
// its full message and the stack follow (and the cause's stack).
//
// Exit codes: 0 done; 1 an unexpected failure; 2 bad input: the command line itself, or a
// config, model, checkpoint, tokenizer, data file or image that is missing, unreadable or
// invalid; 130 stopped by Ctrl-C (SIGINT, 128 + 2, the shell's convention).
import { CommanderError } from 'commander';

import { R1VError } from '../core/errors.js';

export const EXIT = { done: 0, failure: 1, badInput: 2, interrupted: 130 } as const;

/** A problem with what the user gave (exit code 2). */
export class InputError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InputError';
  }
}

/**
 * Runs the loading of a command's inputs: any R1VError raised there (a missing file, an
 * invalid config, a checkpoint that does not match its config, an unknown device, ...) is bad
 * input, rethrown as an InputError with the same message.
 */
export async function loadingInput<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if (error instanceof R1VError) throw new InputError(error.message, { cause: error });
    throw error;
  }
}

/** The exit code of a failure: 2 for bad input (an R1VError 'CONFIG' anywhere is one), else 1. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.done : EXIT.badInput;
  if (error instanceof InputError) return EXIT.badInput;
  if (error instanceof R1VError && error.code === 'CONFIG') return EXIT.badInput;
  return EXIT.failure;
}

/** A message on one line: its first line, then the others trimmed and joined with '; '. */
export function oneLine(message: string): string {
  const [first = '', ...rest] = message.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return rest.length === 0 ? first : `${first}${first.endsWith(':') ? ' ' : '; '}${rest.join('; ')}`;
}

/** What goes to stderr for a failure. */
export function describeFailure(error: unknown, verbose: boolean): string {
  const message = error instanceof Error ? error.message : String(error);
  if (!verbose) return `r1v: ${oneLine(message)}`;
  const lines = [`r1v: ${message}`];
  const root = error instanceof InputError && error.cause instanceof Error ? error.cause : error;
  if (root instanceof R1VError) lines.push(`(R1VError ${root.code})`);
  if (root instanceof Error && root.stack) lines.push(root.stack);
  if (root instanceof Error && root.cause instanceof Error && root.cause.stack) lines.push(`caused by: ${root.cause.stack}`);
  return lines.join('\n');
}
