// What VisionLanguageModel.forward returns: the per-token statistics (and a critic's values),
// and, after a { grad: true } forward, backward() from per-token coefficients — the seam every
// RL loss goes through.
import { R1VError } from '../core/errors.js';
import * as is from '../core/validate.js';
import type { ForwardRun } from './forward-run.js';
import type { Parameter } from './parameters.js';

/** Per scored position, in order: log p(target) and the entropy of softmax(logits / T). */
export interface TokenStatsResult {
  logprobs: Float32Array;
  entropy: Float32Array;
}

/**
 * Per-token coefficients of the loss: dL/dlogprob, and optionally dL/dentropy and (a model with a
 * value head) dL/dvalue per scored position. dLogprobs may be omitted when the forward ran
 * without tokenStats.
 */
export interface BackwardInput {
  dLogprobs?: Float32Array;
  dEntropy?: Float32Array;
  dValues?: Float32Array;
}

/** How backward reports its progress. */
export interface BackwardOptions {
  /**
   * Called on the JavaScript thread, as backward queues its work, with parameters whose
   * gradients this backward has finished: work queued from now on sees their final values (an
   * overlapped gradient all-reduce starts here). Every parameter is reported by the end of
   * backward, some more than once.
   */
  onGradients?: (params: readonly Parameter[]) => void;
}

/** The outcome of forward(): the statistics, and backward() when it ran with { grad: true }. */
export class ForwardResult implements TokenStatsResult {
  #run: ForwardRun | undefined;

  /** @internal */
  constructor(run: ForwardRun, readonly logprobs: Float32Array, readonly entropy: Float32Array,
    /** A model with a value head: the value of each scored position. */
    readonly values?: Float32Array) {
    this.#run = run.grad ? run : undefined;
    if (!run.grad) run.dispose();
  }

  /**
   * Adds to every trainable parameter's gradient the gradient of L, where dLogprobs[i] = ∂L/∂logprobs[i]
   * and dEntropy[i] = ∂L/∂entropy[i] for the scored positions, in order. Once per forward; frees the
   * kept activations.
   */
  async backward(input: BackwardInput, options?: BackwardOptions): Promise<void> {
    const fn = 'backward';
    const run = this.#run;
    if (!run) throw new R1VError('ARGUMENT', `${fn}: this forward ran without { grad: true }, or backward already ran`);
    if (typeof input !== 'object' || input === null) throw new R1VError('ARGUMENT', `${fn}: pass { dLogprobs, dEntropy? }`);
    is.options(input, ['dLogprobs', 'dEntropy', 'dValues'], fn, 'field');
    const n = run.plan.scored.length;
    const coefficient = (value: unknown, name: string, present: boolean): Float32Array | undefined => {
      if (value === undefined) return undefined;
      if (!present) is.fail(fn, `${name} given, but the forward computed no ${name === 'dValues' ? 'values (no value head)' : 'token statistics'}`);
      return is.float32Array(value, name, fn, n);
    };
    const dLogprobs = coefficient(input.dLogprobs, 'dLogprobs', run.tokenStats);
    const dEntropy = coefficient(input.dEntropy, 'dEntropy', run.tokenStats);
    const dValues = coefficient(input.dValues, 'dValues', this.values !== undefined);
    if (run.tokenStats && !dLogprobs) is.fail(fn, 'dLogprobs must be a Float32Array, got undefined');
    const o = is.options(options, ['onGradients'], fn);
    const onGradients = o.onGradients === undefined ? undefined : is.func<NonNullable<BackwardOptions['onGradients']>>(o.onGradients, 'onGradients', fn);
    this.#run = undefined;
    try {
      await run.backward({ dLogprobs, dEntropy, dValues }, onGradients);
      await run.model.engine.synchronize();
    } finally {
      run.dispose();
    }
  }

  /** Frees the activations kept for backward (when backward will not be called). */
  dispose(): void {
    this.#run?.dispose();
    this.#run = undefined;
  }
}
