#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';

import { runDemo } from './demo.js';
import { buildInfo, devices } from '../core/device.js';
import { R1VError } from '../core/errors.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

const program = new Command('r1v').description('RL post-training engine for vision-language reasoning models');

program
  .command('devices')
  .description('list the devices r1v can use and how it was built')
  .action(() => {
    console.log(JSON.stringify({ devices: devices(), build: buildInfo() }, null, 2));
  });

program
  .command('demo')
  .description('run the demo on the embedded defaults (CPU unless a GPU is present)')
  .option('--device <id>', "'auto', 'cpu' or 'cuda:N'", 'auto')
  .option('--size <n>', 'GEMM size for the throughput check', positiveInt, 1024)
  .action(async (opts: { device: 'auto' | 'cpu'; size: number }) => {
    const report = await runDemo({ device: opts.device, size: opts.size });
    if (report.maxRelativeError >= 1e-5) process.exitCode = 1;
  });

program.parseAsync().catch((error: unknown) => {
  if (error instanceof R1VError) {
    console.error(`r1v: ${error.code}: ${error.message}`);
  } else {
    console.error(error);
  }
  process.exitCode = 1;
});
