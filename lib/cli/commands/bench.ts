// `r1v bench`: the kernel microbenchmarks (lib/bench/kernel-bench.ts), shipped in the package so
// an installed r1v runs them too. Progress lines and the table go to stdout; --save also writes
// the table as JSON and Markdown (default into bench/results/ under the working directory).
import { Option, type Command } from 'commander';

import { KERNEL_FAMILIES, runKernelBench } from '../../bench/kernel-bench.js';

interface BenchOptions {
  only?: (typeof KERNEL_FAMILIES)[number];
  full?: boolean;
  save?: boolean;
  out: string;
}

export function register(program: Command): void {
  program
    .command('bench')
    .description('kernel microbenchmarks: time, TFLOP/s or GB/s and % of the hardware limit of every op, on the CPU and each GPU')
    .addOption(new Option('--only <family>', 'one op family').choices(KERNEL_FAMILIES))
    .option('--full', 'the full shapes on the CPU too (slow on a small machine; also R1V_BENCH_FULL=1)')
    .option('--save', 'also write the table as kernels[-<family>]-<machine>-<date>.{json,md}')
    .option('--out <dir>', 'where --save writes', 'bench/results')
    .action((o: BenchOptions) => bench(o));
}

async function bench(o: BenchOptions): Promise<void> {
  const full = o.full === true || process.env.R1V_BENCH_FULL === '1';
  const command = ['r1v bench', ...(full ? ['--full'] : []), ...(o.only ? [`--only ${o.only}`] : []), '--save'].join(' ');
  const result = await runKernelBench({
    ...(o.only ? { only: o.only } : {}), full, ...(o.save ? { saveDir: o.out, command } : {}),
  });
  console.log();
  console.table(result.rows);
  if (result.saved) console.log(`saved ${result.saved.json} and ${result.saved.markdown}`);
}
