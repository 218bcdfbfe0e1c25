// Parsers of option values for commander: numbers checked with lib/core/validate.ts rules, the
// device id. A bad value is a commander InvalidArgumentError, which commander reports naming
// the option (`r1v: option '--samples <n>' argument '0' is invalid. must be an integer ≥ 1`).
import { InvalidArgumentError, Option } from 'commander';

import { isNumber, type NumberRule } from '../core/validate.js';

function numberParser(rule: NumberRule, what: string): (value: string) => number {
  return (value) => {
    const n = value.trim() === '' ? NaN : Number(value);
    if (!isNumber(n, rule)) throw new InvalidArgumentError(`must be ${what}`);
    return n;
  };
}

/** An integer ≥ 1 (counts, token budgets). */
export const positiveInt = numberParser({ integer: true, min: 1 }, 'an integer ≥ 1');
/** An integer ≥ 0 (seeds). */
export const nonNegativeInt = numberParser({ integer: true, min: 0 }, 'an integer ≥ 0');
/** A finite number ≥ 0 (temperatures). */
export const nonNegativeNumber = numberParser({ min: 0 }, 'a number ≥ 0');
/** A number in (0, 1] (top-p). */
export const probability = numberParser({ above: 0, max: 1 }, 'a number in (0, 1]');

const DEVICE = /^(auto|cpu|cuda:\d+)$/;

/** `--device <id>`: 'auto', 'cpu' or 'cuda:N'. */
export function deviceOption(description: string, defaultValue?: string): Option {
  const option = new Option('--device <id>', `${description}: 'auto', 'cpu' or 'cuda:N'`).argParser((value) => {
    if (!DEVICE.test(value)) throw new InvalidArgumentError("must be 'auto', 'cpu' or 'cuda:N'");
    return value;
  });
  return defaultValue === undefined ? option : option.default(defaultValue);
}

/** `--tokenizer <dir>`: a tokenizer directory or 'qwen3'. */
export function tokenizerOption(): Option {
  return new Option('--tokenizer <dir>', "tokenizer directory, or 'qwen3' (the packaged one); default: the checkpoint's own tokenizer files, else the run's");
}
