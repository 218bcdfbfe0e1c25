#!/usr/bin/env node
// `r1v`, the command line: this file wires the commands (one module each under commands/) and
// turns failures into one line on stderr and an exit code (failures.ts: 0 done, 1 unexpected
// failure, 2 bad input, 130 Ctrl-C). docs/cli.md describes every command and option.
import { createRequire } from 'node:module';

import { Command, CommanderError } from 'commander';

import { register as bench } from './commands/bench.js';
import { register as demo } from './commands/demo.js';
import { register as devices } from './commands/devices.js';
import { register as evaluate } from './commands/eval.js';
import { register as generate } from './commands/generate.js';
import { register as inspect } from './commands/inspect.js';
import { register as launch } from './commands/launch.js';
import { register as train } from './commands/train.js';
import { describeFailure, exitCodeOf } from './failures.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

const program = new Command('r1v')
  .description('RL post-training engine for vision-language reasoning models')
  .version(version)
  .option('--verbose', 'on failure, print the error code and stack trace')
  .exitOverride()
  .configureOutput({ outputError: (message, write) => write(`r1v: ${message.replace(/^error: /, '')}`) });

for (const register of [train, launch, evaluate, generate, inspect, devices, bench, demo]) register(program);

try {
  await program.parseAsync();
} catch (error) {
  // Commander has printed its own errors (usage, --help, --version) already.
  if (!(error instanceof CommanderError)) {
    console.error(describeFailure(error, program.opts<{ verbose?: boolean }>().verbose === true));
  }
  process.exitCode = exitCodeOf(error);
}
