// A stack of residual blocks (the ViT encoder, the Qwen2 decoder) run forward and backward with
// one loop each way. A block's forward can keep what its backward needs (`saved`); under
// activation recomputation only the block's input is kept and the forward is run again, with
// save, right before its backward. The JavaScript thread waits at a Fence after each block, so
// at most about two blocks of intermediates are alive.
import type { Fence } from '../core/fence.js';
import type { FTensor } from './parameters.js';

/** One block: rows R describe the packed batch, S is what its forward saves for its backward. */
export interface Block<R, S> {
  forward(x: FTensor, rows: R, save: boolean): { y: FTensor; saved?: S };
  /** Consumes saved (except its x) and nothing else; adds parameter gradients; returns dX when asked. */
  backward(saved: S, dY: FTensor, rows: R, needDx: boolean): FTensor | undefined;
  /** Frees a saved state that backward will not consume. */
  disposeSaved(saved: S): void;
}

interface Kept<S> {
  x: FTensor;
  saved: S | undefined;
}

export class Stack<R, S> {
  #kept: Array<Kept<S> | undefined> = [];

  constructor(
    readonly blocks: readonly Block<R, S>[],
    readonly rows: R,
    readonly fence: Fence,
  ) {}

  /**
   * Runs every block on x (consumed) and returns the last output. keep[i]: block i's backward
   * will run, so its input (and, unless recompute, its saved activations) is kept.
   */
  async forward(x: FTensor, keep: readonly boolean[], recompute: boolean): Promise<FTensor> {
    for (const [i, block] of this.blocks.entries()) {
      const r = block.forward(x, this.rows, keep[i]! && !recompute);
      if (keep[i]) this.#kept[i] = { x, saved: r.saved };
      else x.dispose();
      x = r.y;
      await this.fence.pass();
    }
    return x;
  }

  /**
   * Backward from the last block down, consuming dY: block i returns dX when needDx[i]. Stops
   * at the first block that was not kept or passes no gradient on; returns the gradient of the
   * stack's input, or undefined when no block below needs it. done(i): block i's backward is queued.
   */
  async backward(dY: FTensor, needDx: readonly boolean[], done?: (i: number) => void): Promise<FTensor | undefined> {
    let dx: FTensor | undefined = dY;
    for (let i = this.blocks.length - 1; i >= 0 && dx; i--) {
      const kept = this.#kept[i];
      if (!kept) break;
      const block = this.blocks[i]!;
      const saved = kept.saved ?? block.forward(kept.x, this.rows, true).saved!;
      const before: FTensor = dx;
      dx = block.backward(saved, before, this.rows, needDx[i]!);
      done?.(i);
      before.dispose();
      kept.x.dispose();
      this.#kept[i] = undefined;
      if (dx) await this.fence.pass();
    }
    return dx;
  }

  /** Frees whatever forward kept and backward did not consume. */
  dispose(): void {
    for (const [i, kept] of this.#kept.entries()) {
      if (!kept) continue;
      if (kept.saved !== undefined) this.blocks[i]!.disposeSaved(kept.saved);
      kept.x.dispose();
    }
    this.#kept = [];
  }
}
