// Kernel benchmarks: time, TFLOP/s or GB/s, and % of the hardware limit for every op of
// the engine at the shapes that matter, on the CPU and on each CUDA device.
//   npm run bench:kernels                       reduced CPU shapes (a 2-core machine finishes in minutes)
//   R1V_BENCH_FULL=1 npm run bench:kernels      the full shapes on the CPU too
//   npm run bench:kernels -- --only=attention   one op family (matmul, attention, connector, token_stats, elementwise, optimizer, norms)
//   npm run bench:kernels -- --save             also writes bench/results/kernels[-<only>]-<machine>-<date>.{json,md}
import { mkdirSync, writeFileSync } from 'node:fs';

import { buildInfo, devices, Engine } from '../lib/index.js';
import { run as runAttention } from './kernels/attention.js';
import { type BenchContext, type Ceilings, makeContext, type Row } from './kernels/common.js';
import { run as runConnector } from './kernels/connector.js';
import { run as runElementwise } from './kernels/elementwise.js';
import { run as runMatmul } from './kernels/matmul.js';
import { run as runOptimizer } from './kernels/optimizer.js';
import { run as runSampling } from './kernels/sampling.js';
import { run as runNorms } from './kernels/norms.js';
import { run as runTokenStats } from './kernels/token_stats.js';
import { runIdentity, measuredCpuPeakGflops } from './run_identity.js';

const families: Record<string, (ctx: BenchContext) => Promise<void>> = {
  matmul: runMatmul,
  attention: runAttention,
  connector: runConnector,
  token_stats: runTokenStats,
  elementwise: runElementwise,
  optimizer: runOptimizer,
  norms: runNorms,
  sampling: runSampling,
};
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
if (only && !families[only]) throw new Error(`--only=${only}: known families are ${Object.keys(families).join(', ')}`);
const info = buildInfo();
const cpu = devices()[0]!;
const fullOnCpu = process.env.R1V_BENCH_FULL === '1';

console.log(`r1v ${info.version} — CPU: ${cpu.name}, ${info.threads} threads, ISA ${info.cpuIsa}; BLAS: ${info.blas ?? 'none'}`);
const cpuPeak = measuredCpuPeakGflops();
console.log(`measured fp32 FMA peak (all threads): ${cpuPeak.toFixed(1)} GFLOP/s`);

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
const cpuCopy = measureCopyGBps();
console.log(`measured copy bandwidth (read + write, one thread): ${cpuCopy.toFixed(1)} GB/s`);

// Nominal dense peaks of common data-centre GPUs (GFLOP/s, GB/s), for "% of limit".
const GPU_CEILINGS: Array<[RegExp, Ceilings]> = [
  [/H100/, { gflops: { f32: 67_000, bf16: 989_000, f16: 989_000 }, gbps: 3350, source: 'H100 SXM datasheet' }],
  [/H200/, { gflops: { f32: 67_000, bf16: 989_000, f16: 989_000 }, gbps: 4800, source: 'H200 datasheet' }],
  [/A100/, { gflops: { f32: 19_500, bf16: 312_000, f16: 312_000 }, gbps: 2039, source: 'A100 datasheet' }],
];

const rows: Row[] = [];
const targets = [{ id: 'cpu', ceilings: { gflops: { f32: cpuPeak }, gbps: cpuCopy, source: 'measured FMA peak and copy bandwidth' } as Ceilings, full: fullOnCpu }];
for (const gpu of devices().filter((d) => d.kind === 'cuda')) {
  const ceilings = GPU_CEILINGS.find(([pattern]) => pattern.test(gpu.name))?.[1] ?? { gflops: {}, source: 'unknown GPU' };
  targets.push({ id: gpu.id, ceilings, full: true });
}
for (const target of targets) {
  const engine = Engine.create({ device: target.id as 'cpu', seed: 1 });
  const ctx = makeContext(engine, target.ceilings, target.full);
  for (const [name, run] of Object.entries(families)) {
    if (only && name !== only) continue;
    console.log(`\n${target.id} — ${name}${target.full ? '' : ' (reduced shapes)'}`);
    await run(ctx);
  }
  rows.push(...ctx.rows);
  engine.dispose();
}

console.log();
console.table(rows);

if (process.argv.includes('--save')) {
  const { date, commit, gpus, machine } = runIdentity();
  const command = `${fullOnCpu ? 'R1V_BENCH_FULL=1 ' : ''}npm run bench:kernels -- --save${only ? ` --only=${only}` : ''}`;
  const record = { date, commit, command, cpu: cpu.name, threads: info.threads, isa: info.cpuIsa, blas: info.blas, gpus, cpuPeakGflops: cpuPeak, cpuCopyGBps: cpuCopy, rows };
  const base = `bench/results/kernels${only ? `-${only}` : ''}-${machine}-${date.slice(0, 10)}`;
  mkdirSync('bench/results', { recursive: true });
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
  console.log(`saved ${base}.json and ${base}.md`);
}
