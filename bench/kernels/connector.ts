// (being written) connector benchmarks.
import type { BenchContext } from './common.js';

export async function run(ctx: BenchContext): Promise<void> {
  void ctx;
}
