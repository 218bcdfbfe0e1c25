// The kernel microbenchmarks (`r1v bench`, `npm run bench:kernels`): time, TFLOP/s or GB/s, and
// % of the hardware limit for every op of the engine at the shapes that matter, on the CPU and
// on each CUDA device. The CPU runs reduced shapes (a 2-core machine finishes in minutes) unless
// `full`; `only` runs one op family; `saveDir` also writes the table there as
// kernels[-<only>]-<machine>-<date>.{json,md}. Compute-bound ops are rated against the measured
// fp32 FMA peak (CPU) or the datasheet peak (GPU), memory-bound ones against a measured copy.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { buildInfo, devices } from '../core/device.js';
import { Engine } from '../core/engine.js';
import * as is from '../core/validate.js';
import { type BenchContext, type Ceilings, makeContext, type Row } from './common.js';
import { run as runAttention } from './kernels/attention.js';
import { run as runConnector } from './kernels/connector.js';
import { run as runElementwise } from './kernels/elementwise.js';
import { run as runMatmul } from './kernels/matmul.js';
import { run as runNorms } from './kernels/norms.js';
import { run as runOptimizer } from './kernels/optimizer.js';
import { run as runSampling } from './kernels/sampling.js';
import { run as runTokenStats } from './kernels/token_stats.js';
import { measuredCpuPeakGflops, runIdentity } from './run-identity.js';

const families = {
  matmul: runMatmul,
  attention: runAttention,
  connector: runConnector,
  token_stats: runTokenStats,
  elementwise: runElementwise,
  optimizer: runOptimizer,
  norms: runNorms,
  sampling: runSampling,
} satisfies Record<string, (ctx: BenchContext) => Promise<void>>;

export type KernelFamily = keyof typeof families;
/** The op families, in the order they run. */
export const KERNEL_FAMILIES = Object.keys(families) as KernelFamily[];

export interface KernelBenchOptions {
  /** Run one op family only. Default: all. */
  only?: KernelFamily;
  /** The full shapes on the CPU too (GPUs always run them). Default false. */
  full?: boolean;
  /** Also write the record (JSON) and table (Markdown) into this directory. Default: not saved. */
  saveDir?: string;
  /** How the run was started, written into the saved record. Default 'r1v bench'. */
  command?: string;
  /** Receives the progress lines. Default console.log. */
  log?: (line: string) => void;
}

export interface KernelBenchResult {
  rows: Row[];
  /** The files written with saveDir. */
  saved?: { json: string; markdown: string };
}

// Memory-bound ops are rated against a measured copy: bytes read + written per second by a
// 256 MiB typed-array copy (one thread; best of five), the rate a streaming kernel can hope for.
function measureCopyGBps(): number {
  const src = new Float64Array(32 * 2 ** 20).fill(1);
  const dst = new Float64Array(src.length);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    dst.set(src);
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * src.byteLength) / (best * 1e6);
}

// Nominal dense peaks of common data-centre GPUs (GFLOP/s, GB/s), for "% of limit".
const GPU_CEILINGS: Array<[RegExp, Ceilings]> = [
  [/H100/, { gflops: { f32: 67_000, bf16: 989_000, f16: 989_000 }, gbps: 3350, source: 'H100 SXM datasheet' }],
  [/H200/, { gflops: { f32: 67_000, bf16: 989_000, f16: 989_000 }, gbps: 4800, source: 'H200 datasheet' }],
  [/A100/, { gflops: { f32: 19_500, bf16: 312_000, f16: 312_000 }, gbps: 2039, source: 'A100 datasheet' }],
];

/** Runs the kernel benchmarks (see the top of this file). */
export async function runKernelBench(options: KernelBenchOptions = {}): Promise<KernelBenchResult> {
  const fn = 'runKernelBench';
  const o = is.options(options, ['only', 'full', 'saveDir', 'command', 'log'] as const, fn);
  const only = o.only === undefined ? undefined : is.oneOf(o.only, 'only', fn, KERNEL_FAMILIES);
  const fullOnCpu = is.optionalBoolean(o.full, 'full', fn, false);
  const saveDir = o.saveDir === undefined ? undefined : is.string(o.saveDir, 'saveDir', fn);
  const log = o.log === undefined ? (line: string) => console.log(line) : is.func<(line: string) => void>(o.log, 'log', fn);
  const info = buildInfo();
  const cpu = devices()[0]!;
  log(`r1v ${info.version} — CPU: ${cpu.name}, ${info.threads} threads, ISA ${info.cpuIsa}; BLAS: ${info.blas ?? 'none'}`);
  const cpuPeak = measuredCpuPeakGflops();
  log(`measured fp32 FMA peak (all threads): ${cpuPeak.toFixed(1)} GFLOP/s`);
  const cpuCopy = measureCopyGBps();
  log(`measured copy bandwidth (read + write, one thread): ${cpuCopy.toFixed(1)} GB/s`);

  const rows: Row[] = [];
  const targets = [{ id: 'cpu', ceilings: { gflops: { f32: cpuPeak }, gbps: cpuCopy, source: 'measured FMA peak and copy bandwidth' } as Ceilings, full: fullOnCpu }];
  for (const gpu of devices().filter((d) => d.kind === 'cuda')) {
    const ceilings = GPU_CEILINGS.find(([pattern]) => pattern.test(gpu.name))?.[1] ?? { gflops: {}, source: 'unknown GPU' };
    targets.push({ id: gpu.id, ceilings, full: true });
  }
  for (const target of targets) {
    using engine = Engine.create({ device: target.id as 'cpu', seed: 1 });
    const ctx = makeContext(engine, target.ceilings, target.full, log);
    for (const name of only ? [only] : KERNEL_FAMILIES) {
      log(`\n${target.id} — ${name}${target.full ? '' : ' (reduced shapes)'}`);
      await families[name](ctx);
    }
    rows.push(...ctx.rows);
  }
  if (saveDir === undefined) return { rows };

  const { date, commit, gpus, machine } = runIdentity();
  const command = o.command === undefined ? 'r1v bench' : is.string(o.command, 'command', fn);
  const record = { date, commit, command, cpu: cpu.name, threads: info.threads, isa: info.cpuIsa, blas: info.blas, gpus, cpuPeakGflops: cpuPeak, cpuCopyGBps: cpuCopy, rows };
  const base = path.join(saveDir, `kernels${only ? `-${only}` : ''}-${machine}-${date.slice(0, 10)}`);
  mkdirSync(saveDir, { recursive: true });
  writeFileSync(`${base}.json`, JSON.stringify(record, null, 2) + '\n');
  const table = [
    `# Kernel benchmarks — ${date.slice(0, 10)}`,
    '',
    `- CPU: ${cpu.name}, ${info.threads} threads, ISA ${info.cpuIsa}; measured fp32 FMA peak ${cpuPeak.toFixed(1)} GFLOP/s; measured copy ${cpuCopy.toFixed(1)} GB/s (read + write, one thread)`,
    `- GPUs: ${gpus.join(', ') || 'none'}`,
    '- GB/s rows are rated against the copy ceiling (CPU: one thread over 256 MiB, DRAM-bound); above 100% the op\'s working set stayed in the cache.',
    `- commit ${commit}; command: \`${command}\``,
    '',
    '| device | op | dtype | shape | median ms | rate | % of limit | note |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.device} | ${r.op} | ${r.dtype} | ${r.shape} | ${r.ms} | ${r.rate} ${r.unit} | ${r.ofLimit} | ${r.note ?? ''} |`),
    '',
  ].join('\n');
  writeFileSync(`${base}.md`, table);
  return { rows, saved: { json: `${base}.json`, markdown: `${base}.md` } };
}
