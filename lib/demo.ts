// The foundation demo: what `r1v demo` runs until the training recipe lands. It shows the
// devices, checks a GEMM on the chosen device against a float64 reference, and measures
// GEMM throughput — a quick proof that the native engine works on this machine.
import { buildInfo, devices } from './device.js';
import { Engine } from './engine.js';
import { matmul } from './ops.js';

export interface DemoOptions {
  device?: 'auto' | 'cpu' | `cuda:${number}`;
  size?: number;
  log?: (line: string) => void;
}

export interface DemoReport {
  device: string;
  maxRelativeError: number;
  gflops: Record<string, number>;
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
    matmul(x, y).dispose();
    await engine.synchronize();
    const reps = 5;
    const start = performance.now();
    for (let r = 0; r < reps; r++) matmul(x, y).dispose();
    await engine.synchronize();
    const seconds = (performance.now() - start) / 1000 / reps;
    gflops[backend] = (2 * size ** 3) / seconds / 1e9;
    log(`GEMM ${size}³ f32 (${backend}): ${gflops[backend]!.toFixed(1)} GFLOP/s`);
  }
  log('The RL training recipe (SFT → GRPO → connector-only tuning) builds on this engine; see README.');
  return { device: engine.device.id, maxRelativeError: worst, gflops };
}
