// GEMM throughput: the built-in CPU kernel and the loaded BLAS side by side, against the
// machine's measured fp32 FMA peak; on a CUDA machine also the engine's own GPU kernel.
//   npm run bench                 (R1V_BENCH_SIZES=256,1024 to choose sizes)
//   npm run bench -- --save       also writes bench/results/gemm-<machine>-<date>.{json,md}
import { mkdirSync, writeFileSync } from 'node:fs';

import { Bench } from 'tinybench';

import { buildInfo, devices, Engine, ops, type FloatDType } from '../lib/index.js';
import { runIdentity, measuredCpuPeakGflops } from '../lib/bench/run-identity.js';

const sizes = (process.env.R1V_BENCH_SIZES ?? '256,512,1024,2048').split(',').map(Number);
const info = buildInfo();
const cpu = devices()[0]!;

console.log(`r1v ${info.version} — CPU: ${cpu.name}, ${info.threads} threads, ISA ${info.cpuIsa}; BLAS: ${info.blas ?? 'none'}`);
// Best of several runs after a warm-up: a cold core may run below its clock at first.
const peak = measuredCpuPeakGflops();
console.log(`measured fp32 FMA peak (all threads): ${peak.toFixed(1)} GFLOP/s\n`);

interface Row { device: string; kernel: string; dtype: string; size: number; ms: number; gflops: number; ofPeak: string }
const rows: Row[] = [];

async function measure(engine: Engine, label: string, dtype: FloatDType, size: number, peakGflops: number | undefined) {
  const a = engine.randn([size, size], { dtype, seed: 1 });
  const b = engine.randn([size, size], { dtype, seed: 2 });
  const bench = new Bench({ time: size >= 2048 ? 1500 : 500, warmupTime: 200, warmupIterations: 2 });
  bench.add(label, async () => {
    ops.matmul(a, b).dispose();
    await engine.synchronize();
  });
  await bench.run();
  const result = bench.tasks[0]!.result;
  if (!('latency' in result)) throw new Error(`${label} ${size}: benchmark did not complete (${result.state})`);
  const ms = result.latency.p50;
  const gflops = (2 * size ** 3) / (ms * 1e6);
  rows.push({
    device: engine.device.id, kernel: label, dtype, size, ms: Number(ms.toFixed(3)), gflops: Number(gflops.toFixed(1)),
    ofPeak: peakGflops ? `${((100 * gflops) / peakGflops).toFixed(0)}%` : 'n/a',
  });
  a.dispose();
  b.dispose();
}

const engine = Engine.create({ device: 'cpu' });
for (const size of sizes) {
  engine.setCpuGemm('builtin');
  await measure(engine, 'builtin', 'f32', size, peak);
  if (info.blas) {
    engine.setCpuGemm('blas');
    await measure(engine, 'blas', 'f32', size, peak);
  }
}
engine.dispose();

// Nominal dense peaks (GFLOP/s) of common data-centre GPUs, for "% of peak".
const GPU_PEAKS: Array<[RegExp, Record<FloatDType, number>]> = [
  [/H100|H200|GH200/, { f32: 67_000, bf16: 989_000, f16: 989_000 }],
  [/A100/, { f32: 19_500, bf16: 312_000, f16: 312_000 }],
];
for (const gpu of devices().filter((d) => d.kind === 'cuda')) {
  const e = Engine.create({ device: gpu.id });
  const peaks = GPU_PEAKS.find(([pattern]) => pattern.test(gpu.name))?.[1];
  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    for (const size of [...sizes, 4096]) await measure(e, 'r1v', dtype, size, peaks?.[dtype]);
  }
  e.dispose();
}

console.table(rows);
const builtin = rows.filter((r) => r.kernel === 'builtin');
const blas = rows.filter((r) => r.kernel === 'blas');
for (const row of builtin) {
  const peer = blas.find((r) => r.size === row.size);
  if (peer) console.log(`size ${row.size}: built-in / BLAS = ${(row.gflops / peer.gflops).toFixed(2)}`);
}

if (process.argv.includes('--save')) {
  const { date, commit, gpus, machine } = runIdentity();
  const command = `R1V_BENCH_SIZES=${sizes.join(',')} npm run bench -- --save`;
  const record = { date, commit, command, cpu: cpu.name, threads: info.threads, isa: info.cpuIsa, blas: info.blas, gpus, cpuPeakGflops: peak, rows };
  const base = `bench/results/gemm-${machine}-${date.slice(0, 10)}`;
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`${base}.json`, JSON.stringify(record, null, 2) + '\n');
  const table = [
    `# GEMM throughput — ${date.slice(0, 10)}`,
    '',
    `- CPU: ${cpu.name}, ${info.threads} threads, ISA ${info.cpuIsa}; GPUs: ${gpus.join(', ') || 'none'}`,
    `- BLAS peer: ${info.blas ?? 'none'}`,
    `- measured fp32 FMA peak: ${peak.toFixed(1)} GFLOP/s`,
    `- commit ${commit}; command: \`${command}\``,
    '',
    '| device | kernel | dtype | size | median ms | GFLOP/s | % of peak |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.device} | ${r.kernel} | ${r.dtype} | ${r.size} | ${r.ms} | ${r.gflops} | ${r.ofPeak} |`),
    '',
  ].join('\n');
  writeFileSync(`${base}.md`, table);
  console.log(`saved ${base}.json and ${base}.md`);
}
