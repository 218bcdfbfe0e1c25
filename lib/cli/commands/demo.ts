// `r1v demo`: the engine demo on the embedded defaults (lib/cli/demo.ts). The command gathers
// what it asks of the demo in a DemoRequest, shaped as the options of the demo's next version
// ({ device, quick, seeds, out }; that one also takes progress, signal and verbose, the global
// --verbose being command.optsWithGlobals().verbose); runRequested maps the request onto today's
// runDemo ({ device, size, modelSteps }), which has no use for seeds and out yet: it says so on
// stderr rather than dropping them silently.
import type { Command } from 'commander';

import { runDemo } from '../demo.js';
import { EXIT } from '../failures.js';
import { deviceOption, positiveInt } from '../options.js';

type DeviceId = 'auto' | 'cpu' | `cuda:${number}`;

interface DemoRequest {
  device: DeviceId;
  quick: boolean;
  seeds?: number | undefined;
  out?: string | undefined;
}

/** The GEMM size and SFT steps of a --quick run. */
const QUICK = { size: 256, modelSteps: 25 };

export function register(program: Command): void {
  program
    .command('demo')
    .description('run the demo on the embedded defaults (CPU unless a GPU is present)')
    .addOption(deviceOption('device', 'auto'))
    .option('--size <n>', 'GEMM size for the throughput check', positiveInt, 1024)
    .option('--quick', `a shorter run (GEMM ${QUICK.size}, ${QUICK.modelSteps} SFT steps of the tiny model)`)
    .option('--seeds <n>', 'seeds to repeat the training part with', positiveInt)
    .option('--out <dir>', "directory for the demo's report")
    .action(async (o: { device: DeviceId; size: number; quick?: boolean; seeds?: number; out?: string }) => {
      process.exitCode = await runRequested({ device: o.device, quick: o.quick === true, seeds: o.seeds, out: o.out }, o.size);
    });
}

/** Runs the demo asked for; the exit code: 1 when its GEMM check fails. */
async function runRequested(request: DemoRequest, size: number): Promise<number> {
  const unused = [request.seeds !== undefined ? '--seeds' : '', request.out !== undefined ? '--out' : ''].filter(Boolean);
  if (unused.length) console.error(`r1v demo: ${unused.join(' and ')} ${unused.length > 1 ? 'are' : 'is'} not used by this version of the demo`);
  const report = await runDemo({ device: request.device, ...(request.quick ? QUICK : { size }) });
  return report.maxRelativeError < 1e-5 ? EXIT.done : EXIT.failure;
}
