// All-reduce bandwidth of the collectives (lib/ops/collectives.ts) between the ranks of an mpirun
// job: MPI on CPU tensors, NCCL on CUDA tensors. Beside each size, ops.copy of the same bytes on
// the same device in the same run (a new output each call, so small sizes pay its allocation):
// the local limit a ring all-reduce's per-rank traffic (2(W − 1)/W of the bytes in, as many out)
// is held against.
//   npm run bench:collectives                     CPU, 2 ranks (the script starts mpirun itself)
//   npm run bench:collectives -- --device cuda    one rank per GPU (R1V_BENCH_RANKS, default: all GPUs)
//   npm run bench:collectives -- --save           also writes bench/results/collectives-<machine>-<date>.{json,md}
//
// Method: sum all-reduce of one f32 tensor (and bf16 on CUDA), 1 MiB to 256 MiB; per size one
// warm-up, then 3 repeats of enough calls queued back to back to take ≥ 0.2 s, each repeat timed
// from before the first call to the engine's synchronize() after the last; the median repeat.
// algbw = bytes / time; busbw = algbw · 2(W − 1)/W (NCCL's definitions).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { Communicator, devices, Engine, GradientBuckets, ops, VisionLanguageModel, type Tensor } from '../lib/index.js';
import { benchBatch, TINY } from './model-configs.js';
import { runIdentity } from '../lib/bench/run-identity.js';

const args = process.argv.slice(2);
const device = args.includes('--device') ? args[args.indexOf('--device') + 1]! : 'cpu';

const comm = Communicator.world();
if (comm.backend === 'single') {
  // Not started by mpirun: start the job, this script on every rank.
  const gpus = devices().filter((d) => d.kind === 'cuda').length;
  const ranks = process.env.R1V_BENCH_RANKS ?? String(device === 'cuda' ? Math.max(1, gpus) : 2);
  const r = spawnSync('mpirun', [
    ...(process.getuid?.() === 0 ? ['--allow-run-as-root'] : []), '--oversubscribe', '--bind-to', 'none', '-np', ranks,
    process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...args,
  ], { stdio: 'inherit' });
  if (r.error) console.error(`bench:collectives needs Open MPI's mpirun on PATH (${r.error.message})`);
  process.exit(r.status ?? 1);
}

const W = comm.worldSize;
using engine = Engine.create({ device: (device === 'cuda' ? `cuda:${comm.localRank}` : 'cpu') as 'cpu' });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * Seconds per call of `run`, by the method at the top of this file. For a collective every rank
 * must make the same calls: the ranks agree on the count by the slowest one's time.
 */
async function timePerCall(run: () => void, collective: boolean): Promise<number> {
  run();
  await engine.synchronize();
  let calls = 1;
  for (;;) {
    const started = performance.now();
    for (let i = 0; i < calls; i++) run();
    await engine.synchronize();
    let seconds = (performance.now() - started) / 1000;
    if (collective) seconds = (await comm.allReduceValues([seconds], 'max'))[0]!;
    if (seconds >= 0.2 || calls >= 4096) break;
    calls *= 2;
  }
  const repeats: number[] = [];
  for (let k = 0; k < 3; k++) {
    const started = performance.now();
    for (let i = 0; i < calls; i++) run();
    await engine.synchronize();
    repeats.push((performance.now() - started) / 1000 / calls);
  }
  return median(repeats);
}

interface Row { dtype: string; mib: number; us: number; algbw: number; busbw: number; copyGBs: number; busOfCopy: number }
const rows: Row[] = [];
for (const dtype of device === 'cuda' ? (['f32', 'bf16'] as const) : (['f32'] as const)) {
  for (const mib of [1, 4, 16, 64, 256]) {
    const bytes = mib << 20;
    const x: Tensor = engine.full([bytes / (dtype === 'f32' ? 4 : 2)], 1 / W, { dtype });
    const seconds = await timePerCall(() => comm.allReduce([x]), true);
    // the local limit: the same bytes copied once on this device (in and out: 2 × bytes moved)
    const copySeconds = await timePerCall(() => ops.copy(x).dispose(), false);
    const algbw = bytes / seconds / 1e9, busbw = (algbw * 2 * (W - 1)) / W, copyGBs = bytes / copySeconds / 1e9;
    rows.push({ dtype, mib, us: seconds * 1e6, algbw, busbw, copyGBs, busOfCopy: W > 1 ? busbw / copyGBs : NaN });
    x.dispose();
  }
}

// ---- the gradient all-reduce of one update, overlapped with backward or after it
//
// One forward + backward of the TINY bench model (~5M parameters, tied head; a packed batch of an
// image sequence and a text sequence, 512 tokens) and the all-reduce of its gradients in 4 MiB
// buckets (GradientBuckets): started during backward as the model reports finished blocks
// (overlapped), or all after backward returns (after); and backward alone, without any
// all-reduce. One warm-up step each, then 4 rounds of 3 steps of each mode in turn (the machine's
// drift hits all three alike); the median of each mode's 12 steps (the slowest rank's time).
const model = VisionLanguageModel.create(engine, TINY.config, { seed: 1, warn: () => undefined });
const batch = benchBatch(TINY, { sequences: 2, seqLen: 256, tiles: 1, prefix: 16 }, model.config);
let seed = 17;
const dLogprobs = Float32Array.from({ length: batch.targets.filter((t) => t !== -100).length }, () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) / 256);
async function update(mode: 'overlapped' | 'after' | 'none'): Promise<number> {
  const started = performance.now();
  const buckets = mode === 'none' ? undefined : new GradientBuckets(comm, model, { bucketBytes: 4 << 20, overlap: mode === 'overlapped' });
  const f = await model.forward(batch, { grad: true });
  await f.backward({ dLogprobs }, await buckets?.lastBackward());
  if (buckets) {
    await buckets.agree(true);
    await buckets.finish();
  }
  await engine.synchronize();
  model.zeroGrad();
  return (performance.now() - started) / 1000;
}
const MODES = ['none', 'after', 'overlapped'] as const;
const times: Record<string, number[]> = { none: [], after: [], overlapped: [] };
for (const mode of MODES) await update(mode);
for (let round = 0; round < 4; round++) {
  for (const mode of MODES) for (let k = 0; k < 3; k++) times[mode]!.push((await comm.allReduceValues([await update(mode)], 'max'))[0]!);
}
const steps = Object.fromEntries(MODES.map((m) => [m, median(times[m]!)])) as Record<(typeof MODES)[number], number>;
const gradientMiB = model.numParameters({ trainableOnly: true }) * 4 / 2 ** 20;
model.dispose();

if (comm.rank === 0) {
  const id = runIdentity();
  const where = `${W} rank${W > 1 ? 's' : ''} on ${device === 'cuda' ? id.gpus.join(', ') || 'CUDA' : `the CPU (${id.machine})`}, MPI${device === 'cuda' ? ' + NCCL' : ''}; commit ${id.commit}, ${id.date}`;
  const table = [
    '| dtype | MiB | µs per all-reduce | algbw GB/s | busbw GB/s | local copy GB/s | busbw / copy |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.dtype} | ${r.mib} | ${r.us.toFixed(1)} | ${r.algbw.toFixed(2)} | ${r.busbw.toFixed(2)} | ${r.copyGBs.toFixed(2)} | ${Number.isNaN(r.busOfCopy) ? '–' : `${(100 * r.busOfCopy).toFixed(0)}%`} |`),
  ].join('\n');
  const reduce = steps.after - steps.none;
  const stepTable = [
    `| forward + backward of ${TINY.name} (${gradientMiB.toFixed(1)} MiB of f32 gradients, 4 MiB buckets) | ms per step |`,
    '| --- | --- |',
    `| no all-reduce | ${(1000 * steps.none).toFixed(1)} |`,
    `| all-reduce after backward | ${(1000 * steps.after).toFixed(1)} |`,
    `| all-reduce overlapped with backward | ${(1000 * steps.overlapped).toFixed(1)} |`,
    `| all-reduce time hidden by the overlap | ${reduce > 0 ? `${(100 * (steps.after - steps.overlapped) / reduce).toFixed(0)}%` : '–'} |`,
  ].join('\n');
  console.log(`all-reduce (sum), ${where}\n\n${table}\n\n${stepTable}`);
  if (args.includes('--save')) {
    mkdirSync('bench/results', { recursive: true });
    const base = `bench/results/collectives-${id.machine}-${id.date.slice(0, 10)}`;
    const command = `npm run bench:collectives -- ${args.join(' ')}`.trim();
    writeFileSync(`${base}.json`, `${JSON.stringify({ ...id, device, ranks: W, command, rows, stepSeconds: steps }, null, 2)}\n`);
    writeFileSync(`${base}.md`, `# bench:collectives — ${id.date.slice(0, 10)}\n\n${where}\n\nCommand: \`${command}\`\n\n${table}\n\n${stepTable}\n`);
    console.log(`\nwrote ${base}.{json,md}`);
  }
}
await comm.barrier();
