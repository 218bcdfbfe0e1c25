// `r1v demo`: the whole R1V3 recipe on visual arithmetic over real MNIST digits, on the embedded
// defaults (lib/cli/demo/): every stage with a progress bar and an ETA, a held-out evaluation
// after each, the SFT-continued control, and report.html with its charts in the run directory.
// Ctrl-C stops after the current step (the stage in progress keeps a final checkpoint) and
// writes the report of what ran; exit code 130.
import type { Command } from 'commander';

import { createProgress } from '../../train/progress.js';
import { EXIT } from '../failures.js';
import { interruptOnSigint } from '../interrupt.js';
import { deviceOption, positiveInt } from '../options.js';

export function register(program: Command): void {
  program
    .command('demo')
    .description('run the R1V3 recipe (text SFT → connector alignment → cold-start SFT → GRPO → connector-only RL) on visual arithmetic over MNIST digits, with a report')
    .addOption(deviceOption('device', 'auto'))
    .option('--quick', 'the smaller preset (a few minutes on two CPU cores)')
    .option('--seeds <n>', 'run the pipeline with seeds 1..n; the report shows mean and spread', positiveInt, 1)
    .option('--out <dir>', 'run directory (default: runs/<date-time>)')
    .option('--write-data <dir>', "only write the demo's data (tokenizer, JSONL rows, PNG images) for the configs of examples/mnist-arith/")
    .action(async (o: { device: string; quick?: boolean; seeds: number; out?: string; writeData?: string }) => {
      if (o.writeData) {
        const [{ writeDemoData }, { PRESETS }] = await Promise.all([import('../demo/data.js'), import('../demo/pipeline.js')]);
        const files = await writeDemoData(o.writeData, o.quick ? PRESETS.quick : PRESETS.full, 1);
        console.log(`wrote ${files.join(', ')} into ${o.writeData}`);
        return;
      }
      // The demo's modules (trainer, rewards, report) load on use: they take seconds to import.
      const { runDemo } = await import('../demo/index.js');
      const progress = createProgress(process.stderr);
      const interrupt = interruptOnSigint(progress, 'r1v demo: stopping after the current step and writing the report (Ctrl-C again to quit at once)');
      try {
        const r = await runDemo({
          device: o.device, quick: o.quick === true, seeds: o.seeds, progress, signal: interrupt.signal,
          ...(o.out ? { out: o.out } : {}), command: ['r1v', ...process.argv.slice(2)].join(' '),
        });
        console.log(`report: ${r.reportPath}`);
        process.exitCode = r.stopped ? EXIT.interrupted : EXIT.done;
      } finally {
        interrupt.dispose();
        progress.end();
      }
    });
}
