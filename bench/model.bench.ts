// Whole-model benchmarks: tokens/s of a training step (forward + backward + AdamW) and of a
// rollout-style no-grad pass (tokenStats), with model FLOPs utilisation (MFU), for InternVL-style
// models on packed batches with image tiles.
//   npm run bench:model              CPU: tiny (~5M) and small (~50M) models, f32, against the measured
//                                    fp32 FMA peak; each CUDA device: the InternVL3-1B shape in bf16,
//                                    against a bf16 GEMM rate measured in the same run
//   npm run bench:model -- --save    also writes bench/results/model-<machine>-<date>.{json,md}
//
// Model FLOPs of one forward pass (a multiply-add is 2 FLOPs; R = P + 1 rows per tile with P patches,
// Q = P/4 image tokens per tile after the pixel shuffle, s_b the sequence lengths, T = Σ s_b):
//   vision     2·tiles·(P·C·p²·D + R·Lv·(4D² + 2D·Iv)) + 4·tiles·Lv·R²·D   (patch GEMM, blocks, full attention)
//   connector  2·tiles·Q·(4D·H + H²)
//   language   2·T·L·(H·Hq + 2·H·Hkv + Hq·H + 3·H·I) + 2·L·Hq·Σ s_b(s_b + 1)   (causal: only unmasked pairs)
//   LM head    2·N_scored·H·V                                             (fused head + statistics on scored rows)
// i.e. 2·N·tokens per part for its matmul weights N on the tokens it sees (the vision tower on its own
// patch tokens), plus attention. Training counts 3× the forward (backward = 2× forward: the usual
// 6·N·tokens); recompute does more work but the same model FLOPs, so its MFU is lower. Embedding lookups,
// norms, element-wise ops and the AdamW update count no FLOPs (their time is included).
// MFU = model FLOPs / step time / peak.
import { mkdirSync, writeFileSync } from 'node:fs';

import {
  AdamW, buildInfo, devices, Engine, ops, VisionLanguageModel, type Batch, type ModelConfig,
} from '../lib/index.js';
import { makeContext } from '../lib/bench/common.js';
import { benchBatch, INTERNVL3_1B, SMALL, TINY, type BatchSpec, type BenchModel } from './model-configs.js';
import { runIdentity, measuredCpuPeakGflops } from '../lib/bench/run-identity.js';

interface ModelCase extends BenchModel {
  batch: BatchSpec;
}

interface Row {
  device: string;
  model: string;
  /** All parameters, millions. */
  paramsM: number;
  mode: 'train' | 'train, recompute' | 'no-grad';
  tokens: number;
  ms: number;
  tokensPerS: number;
  /** Model FLOPs of one step, GFLOP. */
  gflop: number;
  /** Model FLOPs / step time, GFLOP/s. */
  gflops: number;
  mfu: string;
  /**
   * Highest allocated bytes during the timed steps, MiB: the kept activations plus about two blocks
   * of intermediates (the model keeps its JavaScript thread at most one block ahead of the device).
   */
  peakMiB: number;
  /** peakMiB minus what was allocated before (weights, master copies, optimizer state), MiB. */
  aboveBaseMiB: number;
}

// 4 sequences × 256 tokens on the CPU; 8 sequences × 1024 tokens for InternVL3-1B.
const CPU_BATCH: BatchSpec = { sequences: 4, seqLen: 256, tiles: 2, prefix: 8 };
const CPU_CASES: ModelCase[] = [TINY, SMALL].map((m) => ({ ...m, batch: CPU_BATCH }));
const GPU_CASE: ModelCase = { ...INTERNVL3_1B, batch: { sequences: 8, seqLen: 1024, tiles: 4, prefix: 16 } };

function describeBatch(c: ModelCase, cfg: ModelConfig): string {
  const b = c.batch, side = cfg.vision!.imageSize;
  return `${b.sequences} sequences × ${b.seqLen} tokens; one ${side}-px tile (${cfg.connector!.tokensPerTile} image tokens after ${b.prefix} text tokens) in sequences ${Array.from({ length: b.tiles }, (_, i) => 2 * i).join(', ')}`;
}

interface Flops {
  vision: number;
  connector: number;
  language: number;
  head: number;
  total: number;
}

/** Model FLOPs of one forward pass (see the formulas at the top). */
function forwardFlops(cfg: ModelConfig, batch: Batch): Flops {
  const tiles = batch.pixelValues ? batch.pixelValues.length / (3 * cfg.vision!.imageSize ** 2) : 0;
  let vision = 0, connector = 0;
  if (tiles > 0) {
    const v = cfg.vision!, k = cfg.connector!, h = cfg.language.hiddenSize;
    const P = (v.imageSize / v.patchSize) ** 2, R = P + 1, D = v.hiddenSize;
    vision = 2 * tiles * (P * v.numChannels * v.patchSize ** 2 * D + R * v.numHiddenLayers * (4 * D * D + 2 * D * v.intermediateSize))
      + 4 * tiles * v.numHiddenLayers * R * R * D;
    connector = 2 * tiles * k.tokensPerTile * (k.inputSize * h + h * h);
  }
  const lm = cfg.language, H = lm.hiddenSize, Hq = lm.numAttentionHeads * lm.headDim, Hkv = lm.numKeyValueHeads * lm.headDim;
  let pairs = 0;
  for (let b = 0; b + 1 < batch.cuSeqlens.length; b++) {
    const s = batch.cuSeqlens[b + 1]! - batch.cuSeqlens[b]!;
    pairs += (s * (s + 1)) / 2;
  }
  const T = batch.inputIds.length;
  const language = 2 * T * lm.numHiddenLayers * (H * Hq + 2 * H * Hkv + Hq * H + 3 * H * lm.intermediateSize)
    + 4 * lm.numHiddenLayers * Hq * pairs;
  const scored = batch.targets.reduce((n, t) => n + (t === -100 ? 0 : 1), 0);
  const head = 2 * scored * H * lm.vocabSize;
  return { vision, connector, language, head, total: vision + connector + language + head };
}

const MiB = 2 ** 20;
const TIMING = { minTimeMs: 2000, iterations: 3 };

/** Times no-grad, train and train with recompute on one model; peakGflops is the MFU denominator. */
async function benchModel(engine: Engine, c: ModelCase, peakGflops: number): Promise<{ rows: Row[]; batch: string }> {
  const ctx = makeContext(engine, { gflops: {}, source: '' }, true);
  const m = VisionLanguageModel.create(engine, c.config, { seed: 1, imageContextTokenId: c.imageContextTokenId, warn: () => undefined });
  const opt = new AdamW(m, { lr: 1e-5 });
  const batch = benchBatch(c, c.batch, m.config);
  const flops = forwardFlops(m.config, batch);
  const tokens = batch.inputIds.length;
  const scored = batch.targets.reduce((n, t) => n + (t === -100 ? 0 : 1), 0);
  const dLogprobs = new Float32Array(scored).fill(-1 / scored);  // mean negative log-likelihood
  const paramsM = m.numParameters() / 1e6;
  const byPart = new Map<string, number>();
  for (const p of m.parameters()) byPart.set(p.part, (byPart.get(p.part) ?? 0) + p.shape.reduce((a, b) => a * b, 1));
  console.log(`\n${engine.device.id} — ${c.name}: ${paramsM.toFixed(2)}M parameters (${[...byPart].map(([k, n]) => `${k} ${(n / 1e6).toFixed(2)}M`).join(', ')}), ${m.dtype}`);
  console.log(`  batch: ${describeBatch(c, m.config)}; ${scored} scored positions`);
  console.log(`  forward model GFLOP: vision ${(flops.vision / 1e9).toFixed(2)}, connector ${(flops.connector / 1e9).toFixed(2)}, language ${(flops.language / 1e9).toFixed(2)}, LM head ${(flops.head / 1e9).toFixed(2)}`);

  const trainStep = async () => {
    const f = await m.forward(batch, { grad: true });
    await f.backward({ dLogprobs });
    await opt.step({ maxGradNorm: 1 });
    m.zeroGrad();
  };
  await trainStep();  // creates the optimizer state, so every measured step starts from the same memory
  const rows: Row[] = [];
  const measure = async (mode: Row['mode'], fn: () => Promise<void>) => {
    m.recompute = mode === 'train, recompute';
    const base = engine.memoryStats().allocatedBytes;
    engine.resetPeakMemory();
    const ms = await ctx.time(`${c.name} ${mode}`, fn, TIMING);
    const peak = engine.memoryStats().peakBytes;
    const modelFlops = (mode === 'no-grad' ? 1 : 3) * flops.total;
    const gflops = modelFlops / (ms * 1e6);
    const row: Row = {
      device: engine.device.id, model: c.name, paramsM: Number(paramsM.toFixed(2)), mode, tokens,
      ms: Number(ms.toFixed(1)), tokensPerS: Math.round((tokens * 1000) / ms),
      gflop: Number((modelFlops / 1e9).toFixed(1)), gflops: Number(gflops.toPrecision(4)),
      mfu: `${((100 * gflops) / peakGflops).toFixed(1)}%`,
      peakMiB: Math.round(peak / MiB), aboveBaseMiB: Math.round((peak - base) / MiB),
    };
    console.log(`  ${mode}: ${row.ms} ms/step, ${row.tokensPerS} tokens/s, ${row.gflops} GFLOP/s, MFU ${row.mfu}, peak ${row.peakMiB} MiB (+${row.aboveBaseMiB} MiB over weights and optimizer state)`);
    rows.push(row);
  };
  await measure('no-grad', async () => {
    await m.tokenStats(batch);
  });
  await measure('train', trainStep);
  await measure('train, recompute', trainStep);
  const described = describeBatch(c, m.config);
  opt.dispose();
  m.dispose();
  return { rows, batch: described };
}

const info = buildInfo();
const cpu = devices()[0]!;
console.log(`r1v ${info.version} — CPU: ${cpu.name}, ${info.threads} threads, ISA ${info.cpuIsa}; BLAS: ${info.blas ?? 'none'}`);
const cpuPeak = measuredCpuPeakGflops();
console.log(`measured fp32 FMA peak (all threads): ${cpuPeak.toFixed(1)} GFLOP/s`);

const rows: Row[] = [];
const batches: Record<string, string> = {};
const gemmBf16Gflops: Record<string, number> = {};
{
  const engine = Engine.create({ device: 'cpu', seed: 1 });
  for (const c of CPU_CASES) {
    const r = await benchModel(engine, c, cpuPeak);
    rows.push(...r.rows);
    batches[c.name] = r.batch;
  }
  engine.dispose();
}
for (const gpu of devices().filter((d) => d.kind === 'cuda')) {
  const engine = Engine.create({ device: gpu.id, seed: 1 });
  // The MFU denominator: a 4096³ bf16 GEMM, the rate this device's matmul reaches on a large square.
  const n = 4096;
  const a = engine.randn([n, n], { dtype: 'bf16', seed: 1 }), b = engine.randn([n, n], { dtype: 'bf16', seed: 2 });
  const ctx = makeContext(engine, { gflops: {}, source: '' }, true);
  const gemmMs = await ctx.time('matmul bf16 4096³', async () => {
    ops.matmul(a, b).dispose();
    await engine.synchronize();
  }, { minTimeMs: 1000, iterations: 10 });
  a.dispose();
  b.dispose();
  const peak = (2 * n ** 3) / (gemmMs * 1e6);
  gemmBf16Gflops[gpu.id] = Number(peak.toPrecision(4));
  console.log(`\n${gpu.id} (${gpu.name}): measured bf16 GEMM ${n}³ ${(peak / 1000).toFixed(1)} TFLOP/s`);
  const r = await benchModel(engine, GPU_CASE, peak);
  rows.push(...r.rows);
  batches[GPU_CASE.name] = r.batch;
  engine.dispose();
}

console.log();
console.table(rows);

if (process.argv.includes('--save')) {
  const { date, commit, gpus, machine } = runIdentity();
  const command = 'npm run bench:model -- --save';
  const record = { date, commit, command, cpu: cpu.name, threads: info.threads, isa: info.cpuIsa, blas: info.blas, gpus, cpuPeakGflops: cpuPeak, gemmBf16Gflops, batches, rows };
  const base = `bench/results/model-${machine}-${date.slice(0, 10)}`;
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`${base}.json`, JSON.stringify(record, null, 2) + '\n');
  const table = [
    `# Model benchmarks — ${date.slice(0, 10)}`,
    '',
    `- CPU: ${cpu.name}, ${info.threads} threads, ISA ${info.cpuIsa}; measured fp32 FMA peak ${cpuPeak.toFixed(1)} GFLOP/s (the CPU rows' MFU denominator)`,
    `- GPUs: ${gpus.join(', ') || 'none'}${Object.entries(gemmBf16Gflops).map(([id, g]) => `; ${id} measured bf16 GEMM 4096³ ${(g / 1000).toFixed(1)} TFLOP/s (its MFU denominator)`).join('')}`,
    ...Object.entries(batches).map(([name, b]) => `- ${name} batch: ${b}`),
    '- train = forward + backward + AdamW step (clipping at norm 1); no-grad = tokenStats. tokens = packed LM tokens, image tokens included. Model FLOPs: 2·N·tokens per part on the tokens it sees plus attention, ×3 for training (formulas in bench/model.bench.ts); MFU = model FLOPs / time / peak.',
    '- peak MiB: highest allocated bytes over the timed steps: kept activations plus about two blocks of intermediates (the model stays at most one block ahead of the device).',
    `- commit ${commit}; command: \`${command}\``,
    '',
    '| device | model | params (M) | mode | tokens | ms/step | tokens/s | model GFLOP | GFLOP/s | MFU | peak MiB | above weights + optimizer MiB |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.device} | ${r.model} | ${r.paramsM} | ${r.mode} | ${r.tokens} | ${r.ms} | ${r.tokensPerS} | ${r.gflop} | ${r.gflops} | ${r.mfu} | ${r.peakMiB} | ${r.aboveBaseMiB} |`),
    '',
  ].join('\n');
  writeFileSync(`${base}.md`, table);
  console.log(`saved ${base}.json and ${base}.md`);
}
