// The only module that loads the native addon. Everything else goes through `native()`.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { R1VError } from './errors.js';

export type NativeDType = 'f32' | 'bf16' | 'f16' | 'i32';

export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: NativeDType;
  readonly device: string;
  readonly numel: number;
  readonly disposed: boolean;
  toArray(): Promise<Float32Array | Int32Array>;
  toArraySync(): Float32Array | Int32Array;
  dispose(): void;
}

export interface NativeMemoryStats {
  allocatedBytes: number;
  peakBytes: number;
  reservedBytes: number;
}

export interface NativeEngine {
  readonly device: string;
  readonly seed: number;
  readonly disposed: boolean;
  tensor(data: Float32Array | Float64Array | Int32Array | number[], shape: number[], dtype: NativeDType): NativeTensor;
  full(shape: number[], dtype: NativeDType, value: number): NativeTensor;
  randn(shape: number[], dtype: NativeDType, seed?: number): NativeTensor;
  memoryStats(): NativeMemoryStats;
  resetPeakMemory(): void;
  setCpuGemm(backend: 'auto' | 'builtin' | 'blas'): void;
  setPoisonNewTensors(on: boolean): void;
  synchronize(): Promise<void>;
  synchronizeSync(): void;
  dispose(): void;
}

export interface NativeDeviceInfo {
  id: string;
  kind: 'cpu' | 'cuda';
  name: string;
  threads?: number;
  memoryBytes?: number;
  computeCapability?: [number, number];
  multiprocessors?: number;
}

export interface NativeBuildInfo {
  version: string;
  cuda: boolean;
  cudaArchitectures: string;
  blas: string | null;
  /** The cuBLASLt library GEMMs on CUDA use, or null (no CUDA build, R1V_CUBLASLT=0, or not found). */
  cublasLt: string | null;
  cpuIsa: string;
  threads: number;
}

export interface NativeAttentionOptions {
  causal?: boolean;
  scale?: number;
  /** Packed layout: cumulative sequence lengths [B+1], validated on the host. */
  cuSeqlensQ?: Int32Array;
  cuSeqlensK?: Int32Array;
  /** KV cache: keys used per sequence [B], a prefix of each cuSeqlensK slot (forward only). */
  seqUsedK?: Int32Array;
}

export interface NativeConnectorParams {
  lnWeight: NativeTensor;
  lnBias: NativeTensor;
  w1: NativeTensor;
  b1: NativeTensor;
  w2: NativeTensor;
  b2: NativeTensor;
}

export interface NativeLinearTokenStatsOptions {
  temperature?: number;
  chunk?: number;
}

export interface NativeAdamWGroup {
  param: NativeTensor;
  grad: NativeTensor;
  m: NativeTensor;
  v: NativeTensor;
  master?: NativeTensor;
  weightDecay?: number;
}

export interface NativeAdamWOptions {
  lr: number;
  step: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  gradScale?: number | NativeTensor;
}

export interface NativeSampleTokensOptions {
  seeds: BigUint64Array | number[];
  offsets: Int32Array | number[];
  temperature?: number;
  topK?: number;
  topP?: number;
  bannedTokenIds?: Int32Array | number[];
}

export interface NativeCommunicatorInfo {
  rank: number;
  worldSize: number;
  localRank: number;
  localSize: number;
  backend: 'mpi' | 'single';
  timeoutMs: number;
}

export type NativeReduceOp = 'sum' | 'max' | 'min';

export interface NativeAddon {
  EngineHandle: new (device: string, seed: number) => NativeEngine;
  TensorHandle: abstract new (...args: never[]) => NativeTensor;
  setErrorClass(errorClass: typeof R1VError): void;
  devices(): NativeDeviceInfo[];
  buildInfo(): NativeBuildInfo;
  matmul(
    a: NativeTensor,
    b: NativeTensor,
    options?: { transA?: boolean; transB?: boolean; bias?: NativeTensor; activation?: 'none' | 'gelu' | 'silu' },
  ): NativeTensor;
  attention(q: NativeTensor, k: NativeTensor, v: NativeTensor, options?: NativeAttentionOptions): { out: NativeTensor; lse: NativeTensor };
  attentionBackward(
    q: NativeTensor, k: NativeTensor, v: NativeTensor, out: NativeTensor, lse: NativeTensor, dOut: NativeTensor,
    options?: NativeAttentionOptions,
  ): { dq: NativeTensor; dk: NativeTensor; dv: NativeTensor };
  connector(x: NativeTensor, params: NativeConnectorParams, options?: { eps?: number }): NativeTensor;
  connectorBackward(
    x: NativeTensor, params: NativeConnectorParams, dY: NativeTensor, options?: { eps?: number },
  ): Record<'dx' | 'dLnWeight' | 'dLnBias' | 'dW1' | 'dB1' | 'dW2' | 'dB2', NativeTensor>;
  rmsNorm(x: NativeTensor, weight: NativeTensor, options?: { eps?: number }): { y: NativeTensor; rstd: NativeTensor };
  rmsNormBackward(
    x: NativeTensor, weight: NativeTensor, rstd: NativeTensor, dY: NativeTensor,
  ): { dx: NativeTensor; dWeight: NativeTensor };
  layerNorm(
    x: NativeTensor, weight: NativeTensor, bias: NativeTensor, options?: { eps?: number },
  ): { y: NativeTensor; mean: NativeTensor; rstd: NativeTensor };
  layerNormBackward(
    x: NativeTensor, weight: NativeTensor, mean: NativeTensor, rstd: NativeTensor, dY: NativeTensor,
  ): { dx: NativeTensor; dWeight: NativeTensor; dBias: NativeTensor };
  tokenStats(logits: NativeTensor, targets: NativeTensor, options?: { temperature?: number }): { logprobs: NativeTensor; entropy: NativeTensor };
  sampleTokens(logits: NativeTensor, options: NativeSampleTokensOptions): Record<'tokens' | 'logprobs' | 'entropy', NativeTensor>;
  tokenStatsBackward(
    logits: NativeTensor, targets: NativeTensor, dLogprobs: NativeTensor, dEntropy: NativeTensor,
    options?: { temperature?: number },
  ): NativeTensor;
  linearTokenStats(
    hidden: NativeTensor, weight: NativeTensor, targets: NativeTensor, options?: NativeLinearTokenStatsOptions,
  ): { logprobs: NativeTensor; entropy: NativeTensor };
  linearTokenStatsBackward(
    hidden: NativeTensor, weight: NativeTensor, targets: NativeTensor, dLogprobs: NativeTensor, dEntropy: NativeTensor,
    options?: NativeLinearTokenStatsOptions,
  ): { dHidden: NativeTensor; dWeight: NativeTensor };
  rope(x: NativeTensor, positions: NativeTensor, options: { theta: number }): NativeTensor;
  ropeBackward(dY: NativeTensor, positions: NativeTensor, options: { theta: number }): NativeTensor;
  swiglu(gate: NativeTensor, up: NativeTensor): NativeTensor;
  swigluBackward(gate: NativeTensor, up: NativeTensor, dY: NativeTensor): { dGate: NativeTensor; dUp: NativeTensor };
  gelu(z: NativeTensor): NativeTensor;
  geluBackward(z: NativeTensor, dY: NativeTensor): NativeTensor;
  embedding(ids: NativeTensor, table: NativeTensor): NativeTensor;
  embeddingBackward(ids: NativeTensor, dY: NativeTensor, vocab: number): NativeTensor;
  sumOfSquares(tensors: NativeTensor[]): NativeTensor;
  adamwStep(groups: NativeAdamWGroup[], options: NativeAdamWOptions): void;
  patchify(pixels: NativeTensor, options: { patch: number }): NativeTensor;
  unpatchify(patches: NativeTensor, options: { channels: number; height: number; width: number; patch: number }): NativeTensor;
  reshape(x: NativeTensor, shape: number[]): NativeTensor;
  add(a: NativeTensor, b: NativeTensor): NativeTensor;
  scale(x: NativeTensor, alpha: number): NativeTensor;
  scaleChannels(x: NativeTensor, s: NativeTensor): NativeTensor;
  scaleChannelsBackward(x: NativeTensor, s: NativeTensor, dY: NativeTensor): { dx: NativeTensor; dScale: NativeTensor };
  sumRows(x: NativeTensor): NativeTensor;
  gatherRows(x: NativeTensor, idx: NativeTensor): NativeTensor;
  scatterAddRows(src: NativeTensor, idx: NativeTensor, rows: number): NativeTensor;
  scatterRows(base: NativeTensor, idx: NativeTensor, src: NativeTensor): NativeTensor;
  writeRows(dst: NativeTensor, idx: NativeTensor, src: NativeTensor): void;
  cast(x: NativeTensor, dtype: NativeDType): NativeTensor;
  copy(x: NativeTensor): NativeTensor;
  measureCpuPeakGflops(seconds: number): number;
  commWorld(options?: { timeoutMs?: number }): NativeCommunicatorInfo;
  commAllReduce(tensors: NativeTensor[], op: NativeReduceOp): void;
  commAllReduceStart(tensors: NativeTensor[], op: NativeReduceOp): number;
  commWait(id: number): void;
  commBroadcast(tensors: NativeTensor[], root: number): void;
  commAllGather(x: NativeTensor): NativeTensor;
  commReduceScatter(x: NativeTensor, op: NativeReduceOp): NativeTensor;
  commAllReduceValues(values: Float64Array, op: NativeReduceOp): Promise<Float64Array>;
  commAllGatherBytes(bytes: Uint8Array): Promise<Uint8Array[]>;
  commBroadcastBytes(bytes: Uint8Array | undefined, root: number): Promise<Uint8Array>;
  commBarrier(): Promise<void>;
  commAbort(message: string, exitCode: number): void;
}

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where the addon is looked for, in order: $R1V_ADDON, then the cmake-js / node-gyp outputs. */
export function addonCandidates(): string[] {
  const fromEnv = process.env.R1V_ADDON;
  if (fromEnv) return [resolve(fromEnv)];
  return [join(packageRoot, 'build', 'Release', 'r1v.node'), join(packageRoot, 'build', 'Debug', 'r1v.node')];
}

let loaded: NativeAddon | undefined;

/** The native addon, loaded on first use. Throws one R1VError('IO') that says how to rebuild. */
export function native(): NativeAddon {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const path of addonCandidates()) {
    if (!existsSync(path)) {
      tried.push(`${path} (not found)`);
      continue;
    }
    try {
      const addon = require(path) as NativeAddon;
      addon.setErrorClass(R1VError);
      loaded = addon;
      return addon;
    } catch (error) {
      tried.push(`${path} (${error instanceof Error ? error.message : String(error)})`);
    }
  }
  throw new R1VError(
    'IO',
    `r1v could not load its native addon. Tried:\n  ${tried.join('\n  ')}\n` +
      `Rebuild it with \`npm run build:addon\` in the r1v checkout (or \`npm rebuild r1v\` in a project that ` +
      `depends on it). It needs a C++20 compiler and cmake ≥ 3.24 (or python3 and make for the node-gyp ` +
      `fallback); nvcc adds the CUDA backend. Set R1V_ADDON=/path/to/r1v.node to load a specific build.`,
  );
}
