// The engine demo: what `r1v demo` runs until the training recipe lands. It shows the
// devices, checks a GEMM on the chosen device against a float64 reference, measures GEMM
// throughput, and runs the kernels of one RL update on model-shaped inputs (image tokens
// through the connector, packed causal attention forward and backward, per-token log-prob
// and entropy through the LM head and their backward) — a quick proof that the native
// engine works on this machine; then a tiny VLM learns to read a few MNIST digits by SFT and
// answers them by generation (demo_model.ts).
import { runModelDemo, type ModelDemoReport } from './demo-model.js';
import { buildInfo, devices } from '../core/device.js';
import { Engine } from '../core/engine.js';
import { attention, attentionBackward, connector, linearTokenStats, linearTokenStatsBackward, matmul, tokenStats } from '../ops/index.js';

export interface DemoOptions {
  device?: 'auto' | 'cpu' | `cuda:${number}`;
  size?: number;
  /** SFT steps of the model part (default 120). */
  modelSteps?: number;
  log?: (line: string) => void;
}

export interface DemoReport {
  device: string;
  maxRelativeError: number;
  gflops: Record<string, number>;
  /** Milliseconds per kernel of the RL-shaped step. */
  kernelMs: Record<string, number>;
  /** |linearTokenStats − tokenStats(materialised logits)|, relative: the fused LM head agrees with the plain one. */
  fusedHeadRelativeError: number;
  /** The tiny VLM's SFT on MNIST digits and its generated answers. */
  model: ModelDemoReport;
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  const size = options.size ?? 1024;
  const info = buildInfo();
  log(`r1v ${info.version} — CUDA build: ${info.cuda ? `yes (${info.cudaArchitectures})` : 'no'}; BLAS: ${info.blas ?? 'none'}; CPU ISA: ${info.cpuIsa}`);
  for (const d of devices()) {
    log(d.kind === 'cpu'
      ? `  device cpu: ${d.name}, ${d.threads} threads`
      : `  device ${d.id}: ${d.name}, ${(d.memoryBytes / 2 ** 30).toFixed(1)} GiB, sm_${d.computeCapability.join('')}, ${d.multiprocessors} SMs`);
  }

  using engine = Engine.create({ device: options.device ?? 'auto', seed: 2026 });
  log(`engine on ${engine.device.id}`);

  // Correctness: a small product against float64 arithmetic done here in TypeScript.
  const m = 96, k = 80, n = 72;
  const a = engine.randn([m, k]);
  const b = engine.randn([k, n]);
  const [av, bv, cv] = await Promise.all([a.toArray(), b.toArray(), matmul(a, b).toArray()]);
  let worst = 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let ref = 0, scale = 0;
      for (let p = 0; p < k; p++) {
        ref += av[i * k + p]! * bv[p * n + j]!;
        scale += Math.abs(av[i * k + p]! * bv[p * n + j]!);
      }
      worst = Math.max(worst, Math.abs(cv[i * n + j]! - ref) / scale);
    }
  }
  log(`matmul ${m}x${k} · ${k}x${n} vs float64: max relative error ${worst.toExponential(2)} ${worst < 1e-5 ? '(ok)' : '(TOO LARGE)'}`);

  // Throughput.
  const gflops: Record<string, number> = {};
  const backends = engine.device.kind === 'cpu' ? (info.blas ? ['builtin', 'blas'] as const : ['builtin'] as const) : ['gpu'] as const;
  const x = engine.randn([size, size]);
  const y = engine.randn([size, size]);
  for (const backend of backends) {
    if (backend !== 'gpu') engine.setCpuGemm(backend);
    // Best of a few batches after a warm-up: a cold core runs below its clock at first.
    let seconds = Infinity;
    for (let batch = 0; batch < 4; batch++) {
      const reps = 5;
      const start = performance.now();
      for (let r = 0; r < reps; r++) matmul(x, y).dispose();
      await engine.synchronize();
      if (batch > 0) seconds = Math.min(seconds, (performance.now() - start) / 1000 / reps);
    }
    gflops[backend] = (2 * size ** 3) / seconds / 1e9;
    log(`GEMM ${size}³ f32 (${backend}): ${gflops[backend]!.toFixed(1)} GFLOP/s`);
  }
  x.dispose();
  y.dispose();

  // The kernels of one RL update, Qwen2.5-0.5B-like widths (hidden 896, 14 query / 2 kv
  // heads of 64), a 16×16-patch image (64 image tokens) and two packed sequences.
  const kernelMs: Record<string, number> = {};
  const timed = async <T>(name: string, run: () => T): Promise<T> => {
    await engine.synchronize();
    const start = performance.now();
    const result = run();
    await engine.synchronize();
    kernelMs[name] = performance.now() - start;
    return result;
  };
  const hidden = 896, vocab = 32_768, channels = 256;
  const patches = engine.randn([1, 16, 16, channels]);
  const p = {
    lnWeight: engine.full([4 * channels], 1), lnBias: engine.zeros([4 * channels]),
    w1: engine.randn([hidden, 4 * channels]), b1: engine.zeros([hidden]),
    w2: engine.randn([hidden, hidden]), b2: engine.zeros([hidden]),
  };
  (await timed('connector', () => connector(patches, p))).dispose();
  const cu = new Int32Array([0, 300, 512]);
  const q = engine.randn([512, 14, 64]), kv = engine.randn([512, 2, 64]);
  const { out, lse } = await timed('attention', () => attention(q, kv, kv, { causal: true, cuSeqlensQ: cu, cuSeqlensK: cu }));
  const grads = await timed('attentionBackward', () =>
    attentionBackward(q, kv, kv, out, lse, out, { causal: true, cuSeqlensQ: cu, cuSeqlensK: cu }));
  const h = engine.randn([256, hidden]), head = engine.randn([vocab, hidden], { seed: 7 });
  const targets = engine.tensor(Int32Array.from({ length: 256 }, (_, i) => (i * 7919) % vocab), [256], { dtype: 'i32' });
  const fused = await timed('linearTokenStats', () => linearTokenStats(h, head, targets));
  const dl = engine.full([256], -1 / 256), de = engine.full([256], 0.01);
  const dg = await timed('linearTokenStatsBackward', () => linearTokenStatsBackward(h, head, targets, dl, de));
  const logits = matmul(h, head, { transB: true });
  const plain = tokenStats(logits, targets);
  const [fl, pl] = await Promise.all([fused.logprobs.toArray(), plain.logprobs.toArray()]);
  let diff = 0, norm = 0;
  for (let i = 0; i < fl.length; i++) {
    diff += (fl[i]! - pl[i]!) ** 2;
    norm += pl[i]! ** 2;
  }
  const fusedHeadRelativeError = Math.sqrt(diff / norm);
  for (const [name, ms] of Object.entries(kernelMs)) log(`${name.padEnd(26)} ${ms.toFixed(1).padStart(8)} ms`);
  log(`fused LM head (linearTokenStats) vs materialised logits: relative error ${fusedHeadRelativeError.toExponential(2)} ` +
    `${fusedHeadRelativeError < 1e-4 ? '(ok)' : '(TOO LARGE)'}`);
  for (const t of [patches, ...Object.values(p), q, kv, out, lse, grads.dq, grads.dk, grads.dv, h, head, targets,
    fused.logprobs, fused.entropy, dl, de, dg.dHidden, dg.dWeight, logits, plain.logprobs, plain.entropy]) t.dispose();

  const model = await runModelDemo(engine, log, options.modelSteps !== undefined ? { steps: options.modelSteps } : {});
  log('The RL training recipe (SFT → GRPO → connector-only tuning) builds on this engine; see README.');
  return { device: engine.device.id, maxRelativeError: worst, gflops, kernelMs, fusedHeadRelativeError, model };
}
