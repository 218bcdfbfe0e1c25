// Fence: keeps the JavaScript thread at most one block of work ahead of an engine's stream.
// Op outputs are allocated when an op is queued and freed once the work that uses them has run,
// so a thread that queued a whole training step ahead would hold every intermediate of the step
// at once (and activation recomputation would save nothing). After queuing block i, pass()
// waits until block i − 1 has run, so the device always has the next block queued and the live
// intermediates stay near two blocks.
import type { Engine } from './engine.js';

export class Fence {
  #previous: Promise<unknown> = Promise.resolve(undefined);

  constructor(readonly engine: Engine) {}

  /** Marks the end of a block (everything queued so far) and waits for the end of the one before. */
  async pass(): Promise<void> {
    // Settles with the failure instead of rejecting, so a marker nobody waits for is no unhandled rejection.
    const done = this.engine.synchronize().then(() => undefined, (error: unknown) => error ?? new Error('synchronize failed'));
    const previous = this.#previous;
    this.#previous = done;
    const failure = await previous;
    if (failure !== undefined) throw failure;
  }

  /** Forgets the pending marker (its failure, if any, surfaces at the engine's next synchronize or readback). */
  close(): void {
    this.#previous = Promise.resolve(undefined);
  }
}
