// Rollout throughput: generate()'s prefill and decode tokens/s against the batch size B (the number
// of sequences generated together), with the decode step time, the KV-cache size and decode MFU.
//   npm run bench:rollout            CPU: tiny (~5M) and small (~50M) models, f32, B ∈ {1, 4, 16, 64},
//                                    128-token prompts, 64 new tokens; each CUDA
//                                    device: InternVL3-1B in bf16, B ∈ {1, 16, 64}, 512-token prompts,
//                                    256 new tokens, next to Hugging Face transformers' generate() on
//                                    the same language model (bench/hf_generate_peer.py) when Python has
//                                    torch and transformers
//   npm run bench:rollout -- --save  also writes bench/results/rollout-<machine>-<date>.{json,md}
//
// Workload: B prompts of P tokens (random ids), one sample each (n = 1); prompts 0, 2, 4, ... hold one
// image tile (its image tokens after 8 text tokens). Every sample generates exactly M tokens (no stop
// ids), sampled at temperature 1 without topK/topP. Random weights: the throughput does not depend on them.
//
// Timing (wall clock, from onProgress): prefill = the generate() call up to the first tokens being read
// back (prompt checks, KV-cache allocation, vision tower, packed LM prefill, first sampling: B tokens);
// decode = the M − 1 decode steps after it (B·(M − 1) tokens). generate()'s own stats.prefillMs stops
// when the prefill is enqueued, not when it has run (the engine runs ops asynchronously), so it is not used.
//   prefill tokens/s = B·P / prefill time      decode tokens/s = B·(M − 1) / decode time
//
// Decode model FLOPs (a multiply-add is 2 FLOPs): decode step k = 1 .. M − 1 feeds one token per sequence
// at position P + k − 1, which attends to P + k keys:
//   FLOPs = B·Σ_k (2·N_LM + 4·L·Hq·(P + k)) = B·(M − 1)·2·N_LM + 4·B·L·Hq·((M − 1)·P + M·(M − 1)/2)
//   N_LM  = L·(H·Hq + 2·H·Hkv + Hq·H + 3·H·I) + H·V   (the LM's matmul weights: q, k, v, o, SwiGLU, LM head;
//                                                    the embedding is a lookup, norms and biases are free)
// with L layers, hidden H, Hq = heads·headDim, Hkv = kvHeads·headDim, MLP width I, vocabulary V.
// MFU = FLOPs / decode time / peak: the measured fp32 FMA peak on the CPU, a 4096³ bf16 GEMM measured in
// the same run on CUDA. Decode is bound by reading weights and the KV cache, so its MFU is low by nature.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import {
  buildInfo, devices, Engine, generate, ops, VisionLanguageModel, type GeneratePrompt, type ModelConfig,
} from '../lib/index.js';
import { makeContext } from '../lib/bench/common.js';
import { INTERNVL3_1B, SMALL, TINY, type BenchModel } from './model-configs.js';
import { runIdentity, measuredCpuPeakGflops } from '../lib/bench/run-identity.js';

interface RolloutCase {
  model: BenchModel;
  batches: number[];
  /** Prompt tokens P (image tokens included). */
  promptLen: number;
  /** New tokens M per sample. */
  newTokens: number;
  /** Repeat a batch size until this much time has passed (at most `maxRuns`, at least once). */
  minTimeMs: number;
  maxRuns: number;
}

interface Row {
  device: string;
  model: string;
  batch: number;
  promptLen: number;
  newTokens: number;
  runs: number;
  prefillMs: number;
  prefillTokensPerS: number;
  decodeMsPerStep: number;
  decodeTokensPerS: number;
  /** Decode model FLOPs / decode time, GFLOP/s. */
  decodeGflops: number;
  decodeMfu: string;
  kvCacheMiB: number;
  /** r1v decode tokens/s over Hugging Face generate()'s, on CUDA when the peer ran. */
  vsHf?: number;
}

interface PeerRow {
  batch: number;
  prefill_ms: number;
  decode_ms: number;
  decode_tokens_per_s: number;
}

const CPU_CASES: RolloutCase[] = [TINY, SMALL].map((model) => ({ model, batches: [1, 4, 16, 64], promptLen: 128, newTokens: 64, minTimeMs: 2000, maxRuns: 5 }));
// InternVL3-1B tiles give 256 image tokens, so its prompts are longer.
const GPU_CASE: RolloutCase = { model: INTERNVL3_1B, batches: [1, 16, 64], promptLen: 512, newTokens: 256, minTimeMs: 3000, maxRuns: 3 };
const IMAGE_PREFIX = 8;
const MiB = 2 ** 20;

/** B prompts of random text ids (never the image id); every other one holds one tile. */
function makePrompts(c: RolloutCase, cfg: ModelConfig, batch: number): GeneratePrompt[] {
  const v = cfg.vision!, perTile = cfg.connector!.tokensPerTile, vocab = cfg.language.vocabSize, image = c.model.imageContextTokenId;
  let seed = 12345 + batch;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  return Array.from({ length: batch }, (_, b) => {
    const inputIds = Int32Array.from({ length: c.promptLen }, () => {
      const id = Math.floor(next() * vocab);
      return id === image ? 0 : id;
    });
    if (b % 2 === 1) return { inputIds };
    inputIds.fill(image, IMAGE_PREFIX, IMAGE_PREFIX + perTile);
    const pixelValues = Float32Array.from({ length: 3 * v.imageSize * v.imageSize }, () => 4 * next() - 2);
    return { inputIds, pixelValues };
  });
}

/** The language model's matmul weights N_LM (see the formulas at the top). */
function lmMatmulParams(cfg: ModelConfig): number {
  const lm = cfg.language, H = lm.hiddenSize, Hq = lm.numAttentionHeads * lm.headDim, Hkv = lm.numKeyValueHeads * lm.headDim;
  return lm.numHiddenLayers * (H * Hq + 2 * H * Hkv + Hq * H + 3 * H * lm.intermediateSize) + H * lm.vocabSize;
}

function decodeFlops(cfg: ModelConfig, batch: number, P: number, M: number): number {
  const lm = cfg.language, Hq = lm.numAttentionHeads * lm.headDim;
  return batch * (M - 1) * 2 * lmMatmulParams(cfg) + 4 * batch * lm.numHiddenLayers * Hq * ((M - 1) * P + (M * (M - 1)) / 2);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** One generate() call; wall-clock prefill and decode times (see the top). */
async function timedGenerate(m: VisionLanguageModel, prompts: GeneratePrompt[], newTokens: number) {
  let firstMs = 0, lastMs = 0;
  const started = performance.now();
  const out = await generate(m, prompts, {
    n: 1, maxNewTokens: newTokens, temperature: 1, seed: 7, stop: { tokenIds: [] },
    onProgress: (p) => {
      lastMs = performance.now();
      if (p.step === 1) firstMs = lastMs;
    },
  });
  const bad = out.find((g) => g.finishReason !== 'length' || g.tokenIds.length !== newTokens);
  if (bad) throw new Error(`sample ${bad.prompt}: ${bad.finishReason} after ${bad.tokenIds.length} tokens${bad.error ? ` (${bad.error.message})` : ''}`);
  return { prefillMs: firstMs - started, decodeMs: lastMs - firstMs, stats: out.stats };
}

async function benchModel(engine: Engine, c: RolloutCase, peakGflops: number): Promise<Row[]> {
  const m = VisionLanguageModel.create(engine, c.model.config, { seed: 1, imageContextTokenId: c.model.imageContextTokenId, warn: () => undefined });
  const cfg = m.config, P = c.promptLen, M = c.newTokens;
  console.log(`\n${engine.device.id} — ${c.model.name}: ${(m.numParameters() / 1e6).toFixed(2)}M parameters, LM matmul weights N_LM ${(lmMatmulParams(cfg) / 1e6).toFixed(2)}M, ${m.dtype}`);
  console.log(`  prompts of ${P} tokens (every other one with one ${cfg.vision!.imageSize}-px tile: ${cfg.connector!.tokensPerTile} image tokens), ${M} new tokens each, temperature 1`);
  await timedGenerate(m, makePrompts(c, cfg, 2), 4);  // warm-up: first-use allocations and thread start-up
  const rows: Row[] = [];
  for (const B of c.batches) {
    const prompts = makePrompts(c, cfg, B);
    const prefill: number[] = [], decode: number[] = [];
    let kvCacheBytes = 0;
    const started = performance.now();
    while (prefill.length < c.maxRuns && (prefill.length === 0 || performance.now() - started < c.minTimeMs)) {
      const r = await timedGenerate(m, prompts, M);
      if (r.stats.prefillTokens !== B * P || r.stats.generatedTokens !== B * M) throw new Error(`unexpected stats ${JSON.stringify(r.stats)}`);
      prefill.push(r.prefillMs);
      decode.push(r.decodeMs);
      kvCacheBytes = r.stats.kvCacheBytes;
    }
    const prefillMs = median(prefill), decodeMs = median(decode);
    const gflops = decodeFlops(cfg, B, P, M) / (decodeMs * 1e6);
    const row: Row = {
      device: engine.device.id, model: c.model.name, batch: B, promptLen: P, newTokens: M, runs: prefill.length,
      prefillMs: Number(prefillMs.toFixed(1)), prefillTokensPerS: Math.round((B * P * 1000) / prefillMs),
      decodeMsPerStep: Number((decodeMs / (M - 1)).toFixed(2)), decodeTokensPerS: Math.round((B * (M - 1) * 1000) / decodeMs),
      decodeGflops: Number(gflops.toPrecision(4)), decodeMfu: `${((100 * gflops) / peakGflops).toFixed(2)}%`,
      kvCacheMiB: Number((kvCacheBytes / MiB).toFixed(1)),
    };
    console.log(`  B=${B}: prefill ${row.prefillTokensPerS} tokens/s (${row.prefillMs} ms), decode ${row.decodeTokensPerS} tokens/s (${row.decodeMsPerStep} ms/step, ${row.decodeGflops} GFLOP/s, MFU ${row.decodeMfu}), KV cache ${row.kvCacheMiB} MiB [${row.runs} run(s)]`);
    rows.push(row);
  }
  m.dispose();
  return rows;
}

/** Hugging Face generate() on the same language model (bench/hf_generate_peer.py), or why it did not run. */
function runPeer(c: RolloutCase): { rows: PeerRow[]; info: Record<string, unknown> } | string {
  const probe = spawnSync('python3', ['-c', 'import torch, transformers; assert torch.cuda.is_available()'], { encoding: 'utf8' });
  if (probe.status !== 0) return 'python3 with torch (CUDA) and transformers not found';
  console.log('\nHugging Face transformers generate() on the same language model (bench/hf_generate_peer.py) ...');
  const script = fileURLToPath(new URL('./hf_generate_peer.py', import.meta.url));
  const config = fileURLToPath(new URL('../test/fixtures/internvl3-1b-config.json', import.meta.url));
  const r = spawnSync('python3', [script, '--config', config, '--batches', c.batches.join(','), '--prompt-len', String(c.promptLen), '--new-tokens', String(c.newTokens)], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000,
  });
  const last = r.stdout?.trim().split('\n').pop();
  if (r.status !== 0 || !last) return `hf_generate_peer.py failed (status ${String(r.status)}${r.error ? `, ${r.error.message}` : ''})`;
  const parsed = JSON.parse(last) as { rows: PeerRow[] } & Record<string, unknown>;
  const { rows, ...info } = parsed;
  return { rows, info };
}

const info = buildInfo();
const cpu = devices()[0]!;
console.log(`r1v ${info.version} — CPU: ${cpu.name}, ${info.threads} threads, ISA ${info.cpuIsa}; BLAS: ${info.blas ?? 'none'}`);
const cpuPeak = measuredCpuPeakGflops();
console.log(`measured fp32 FMA peak (all threads): ${cpuPeak.toFixed(1)} GFLOP/s`);

const rows: Row[] = [];
const gemmBf16Gflops: Record<string, number> = {};
let peer: { rows: PeerRow[]; info: Record<string, unknown> } | string | undefined;
{
  const engine = Engine.create({ device: 'cpu', seed: 1 });
  for (const c of CPU_CASES) rows.push(...await benchModel(engine, c, cpuPeak));
  engine.dispose();
}
const gpus = devices().filter((d) => d.kind === 'cuda');
for (const gpu of gpus) {
  const engine = Engine.create({ device: gpu.id, seed: 1 });
  // The MFU denominator: a 4096³ bf16 GEMM, the rate this device's matmul reaches on a large square.
  const n = 4096;
  const a = engine.randn([n, n], { dtype: 'bf16', seed: 1 }), b = engine.randn([n, n], { dtype: 'bf16', seed: 2 });
  const gemmMs = await makeContext(engine, { gflops: {}, source: '' }, true).time('matmul bf16 4096³', async () => {
    ops.matmul(a, b).dispose();
    await engine.synchronize();
  }, { minTimeMs: 1000, iterations: 10 });
  a.dispose();
  b.dispose();
  const peak = (2 * n ** 3) / (gemmMs * 1e6);
  gemmBf16Gflops[gpu.id] = Number(peak.toPrecision(4));
  console.log(`\n${gpu.id} (${gpu.name}): measured bf16 GEMM ${n}³ ${(peak / 1000).toFixed(1)} TFLOP/s`);
  rows.push(...await benchModel(engine, GPU_CASE, peak));
  engine.dispose();
}
if (gpus.length > 0) {
  // The peer uses the first GPU (CUDA's default device), so it is compared with the cuda:0 rows.
  peer = runPeer(GPU_CASE);
  if (typeof peer === 'string') {
    console.log(`\nHugging Face peer not run: ${peer}`);
  } else {
    console.log(`  ${JSON.stringify(peer.info)}`);
    for (const p of peer.rows) {
      const mine = rows.find((r) => r.device === gpus[0]!.id && r.batch === p.batch);
      if (!mine) continue;
      mine.vsHf = Number((mine.decodeTokensPerS / p.decode_tokens_per_s).toFixed(2));
      console.log(`  B=${p.batch}: HF decode ${Math.round(p.decode_tokens_per_s)} tokens/s (${(p.decode_ms / (GPU_CASE.newTokens - 1)).toFixed(2)} ms/step); r1v ${mine.decodeTokensPerS} tokens/s = ${mine.vsHf}× (target ≥ 5×)`);
    }
  }
}

console.log();
console.table(rows);

if (process.argv.includes('--save')) {
  const { date, commit, gpus: gpuNames, machine } = runIdentity();
  const command = 'npm run bench:rollout -- --save';
  const record = { date, commit, command, cpu: cpu.name, threads: info.threads, isa: info.cpuIsa, blas: info.blas, gpus: gpuNames, cpuPeakGflops: cpuPeak, gemmBf16Gflops, hfPeer: peer, rows };
  const base = `bench/results/rollout-${machine}-${date.slice(0, 10)}`;
  mkdirSync('bench/results', { recursive: true });
  const table = [
    `# Rollout benchmarks — ${date.slice(0, 10)}`,
    '',
    `- CPU: ${cpu.name}, ${info.threads} threads, ISA ${info.cpuIsa}; measured fp32 FMA peak ${cpuPeak.toFixed(1)} GFLOP/s (the CPU rows' MFU denominator)`,
    `- GPUs: ${gpuNames.join(', ') || 'none'}${Object.entries(gemmBf16Gflops).map(([id, g]) => `; ${id} measured bf16 GEMM 4096³ ${(g / 1000).toFixed(1)} TFLOP/s (its MFU denominator)`).join('')}`,
    '- generate() with B prompts of P tokens (every other one with one image tile), n = 1, exactly M new tokens each, temperature 1. prefill = up to the first B tokens read back (vision tower included); decode = the M − 1 steps after it. Decode FLOPs: 2·N_LM per token plus attention over the cache (formulas in bench/rollout.bench.ts); MFU = FLOPs / decode time / peak.',
    ...(gpuNames.length ? [`- vs HF: r1v decode tokens/s over Hugging Face transformers generate() (random bf16 Qwen2 language model of the same shape, text-only prompts of the same length; bench/hf_generate_peer.py)${typeof peer === 'string' ? ` — not run: ${peer}` : ''}`] : []),
    `- commit ${commit}; command: \`${command}\``,
    '',
    '| device | model | B | P | M | prefill ms | prefill tokens/s | decode ms/step | decode tokens/s | decode GFLOP/s | decode MFU | KV cache MiB | vs HF |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.device} | ${r.model} | ${r.batch} | ${r.promptLen} | ${r.newTokens} | ${r.prefillMs} | ${r.prefillTokensPerS} | ${r.decodeMsPerStep} | ${r.decodeTokensPerS} | ${r.decodeGflops} | ${r.decodeMfu} | ${r.kvCacheMiB} | ${r.vsHf === undefined ? '' : `${r.vsHf}×`} |`),
    '',
  ].join('\n');
  writeFileSync(`${base}.json`, JSON.stringify(record, null, 2) + '\n');
  writeFileSync(`${base}.md`, table);
  console.log(`saved ${base}.json and ${base}.md`);
}
