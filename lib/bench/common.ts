// Shared harness of the benchmarks (`r1v bench`, `npm run bench:kernels`, bench:model,
// bench:rollout): median timing through tinybench and rows rated against the hardware limit.
// One module per op family under kernels/ adds its rows.
import { Bench } from 'tinybench';

import type { Engine } from '../core/engine.js';

export interface Ceilings {
  /** Measured (CPU) or nominal (GPU) dense FLOP rate per dtype, GFLOP/s. */
  gflops: Partial<Record<'f32' | 'bf16' | 'f16', number>>;
  /** Memory bandwidth, GB/s (measured copy rate), when known. */
  gbps?: number;
  /** How the ceilings were obtained, printed with the table. */
  source: string;
}

export interface Row {
  device: string;
  op: string;
  dtype: string;
  shape: string;
  ms: number;
  /** Throughput in the unit that bounds the op: TFLOP/s for compute, GB/s for memory. */
  rate: number;
  unit: 'TFLOP/s' | 'GB/s';
  /** rate as a % of the matching ceiling, or 'n/a'. */
  ofLimit: string;
  /** Extra facts (peak memory, peer ratio, ...). */
  note?: string;
}

export interface BenchContext {
  engine: Engine;
  ceilings: Ceilings;
  /** Full issue shapes (GPU or R1V_BENCH_FULL=1) or the reduced CPU set. */
  full: boolean;
  rows: Row[];
  /** Where the rows and notes are printed as they come. */
  log: (line: string) => void;
  /** Median latency (ms) of fn (which must finish its work, e.g. await engine.synchronize()). */
  time(label: string, fn: () => Promise<void>, options?: { minTimeMs?: number; iterations?: number }): Promise<number>;
  /** Appends a row with the rate and % of limit computed from flops or bytes. */
  record(row: { op: string; dtype: string; shape: string; ms: number; flops?: number; bytes?: number; note?: string }): Row;
}

export function makeContext(engine: Engine, ceilings: Ceilings, full: boolean, log: (line: string) => void = (line) => console.log(line)): BenchContext {
  const rows: Row[] = [];
  return {
    engine,
    ceilings,
    full,
    rows,
    log,
    async time(label, fn, options = {}) {
      const bench = new Bench({
        time: options.minTimeMs ?? 400,
        iterations: options.iterations ?? 3,
        warmupTime: 100,
        warmupIterations: 1,
      });
      bench.add(label, fn);
      await bench.run();
      const result = bench.tasks[0]!.result;
      if (!('latency' in result)) throw new Error(`${label}: benchmark did not complete (${result.state})`);
      return result.latency.p50;
    },
    record({ op, dtype, shape, ms, flops, bytes, note }) {
      let rate: number;
      let unit: Row['unit'];
      let limit: number | undefined;
      if (flops !== undefined) {
        rate = flops / (ms * 1e9);
        unit = 'TFLOP/s';
        const g = ceilings.gflops[dtype as 'f32'];
        limit = g === undefined ? undefined : g / 1000;
      } else {
        rate = (bytes ?? 0) / (ms * 1e6);
        unit = 'GB/s';
        limit = ceilings.gbps;
      }
      const row: Row = {
        device: engine.device.id,
        op,
        dtype,
        shape,
        ms: Number(ms.toFixed(3)),
        rate: Number(rate.toPrecision(4)),
        unit,
        ofLimit: limit ? `${((100 * rate) / limit).toFixed(0)}%` : 'n/a',
        ...(note ? { note } : {}),
      };
      rows.push(row);
      log(`  ${row.op} ${row.dtype} ${row.shape}: ${row.ms} ms, ${row.rate} ${row.unit} (${row.ofLimit})${note ? ` ${note}` : ''}`);
      return row;
    },
  };
}
