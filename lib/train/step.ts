// One training step of a stage, as the trainer runs it (a user's own loop can call these, or
// the finer pieces in steps.ts and update.ts, directly):
//   sftStep: the next rows' prompts + reference responses → one SFT update
//   rlStep:  rollout → score → dynamic sampling → reference/old logprobs, critic values →
//            advantages → per epoch, per mini-batch: policy (and critic) update
// Each returns its metrics, or undefined when the signal stopped it mid-way (the step is dropped).
// With data parallelism (ctx.dp) every rank runs the step on its share of the same global batch
// (data-parallel.ts): the metrics returned are the whole batch's, alike on every rank.
import type { DatasetRow } from '../data/dataset.js';
import type { ImageProcessor } from '../data/image.js';
import type { Tokenizer } from '../data/tokenizer.js';
import type { VisionLanguageModel } from '../model/model.js';
import { preparePrompt } from '../rollout/prompts.js';
import type { DataParallel } from './data-parallel.js';
import { rolloutMetrics } from './metrics.js';
import { rowPrompt, type RolloutSample, type Sequence } from './samples.js';
import type { StageContext } from './stage.js';
import { advantages, informativeGroups, klRewardPenalty, perToken, rollout, score } from './steps.js';
import { criticUpdate, policyUpdate, sftUpdate } from './update.js';

export interface StepContext {
  model: VisionLanguageModel;
  tokenizer: Tokenizer;
  stage: StageContext;
  /** The global step this is (1-based). */
  step: number;
  seed: number;
  systemPrompt?: string | undefined;
  signal?: AbortSignal | undefined;
  criticalIds: ReadonlySet<number>;
  imageProcessor?: ImageProcessor | undefined;
  log: (line: string) => void;
  /** Data parallelism across ranks (absent: one process). */
  dp?: DataParallel | undefined;
}

/** The sampling seed of draw `draw` of a step: a function of (run seed, step, draw) only. */
export function stepSeed(seed: number, step: number, draw: number): number {
  return (seed * 1_000_003 + step * 7_919 + draw * 104_729) % 2 ** 48;
}

/** A row's prompt (chat template, images) and reference response + end-of-turn, or undefined when unusable. */
async function sftSequence(ctx: StepContext, row: DatasetRow, index: number): Promise<Sequence | string> {
  if (typeof row.response !== 'string' || row.response === '') return 'no response';
  try {
    const responseIds = Int32Array.from([...ctx.tokenizer.encode(row.response, { addSpecialTokens: false }), ctx.tokenizer.eosTokenId]);
    const prompt = await preparePrompt(rowPrompt(row, ctx.systemPrompt), index, {
      model: ctx.model, tokenizer: ctx.tokenizer, imageProcessor: ctx.imageProcessor, maxNewTokens: responseIds.length, seed: 0,
    });
    return { promptIds: prompt.inputIds, pixelValues: prompt.pixelValues, responseIds };
  } catch (error) {
    return (error as Error).message;
  }
}

export async function sftStep(ctx: StepContext): Promise<Record<string, number> | undefined> {
  const c = ctx.stage.config;
  const started = performance.now();
  const rows = ctx.stage.sampler.next(c.batch.prompts);
  const sequences: Sequence[] = [];
  let skipped = 0;
  for (const i of ctx.dp ? ctx.dp.share(rows.length) : rows.keys()) {
    const s = await sftSequence(ctx, rows[i]!, i);
    if (typeof s === 'string') {
      skipped++;
      ctx.log(`step ${ctx.step}: skipped a row (${s})`);
    } else sequences.push(s);
  }
  if (ctx.signal?.aborted) return undefined;
  const prepared = performance.now();
  let tokens = sequences.reduce((n, s) => n + s.promptIds.length + s.responseIds.length, 0);
  let examples = sequences.length, responseTokens = sequences.reduce((n, s) => n + s.responseIds.length, 0);
  if (ctx.dp) [examples, skipped, tokens, responseTokens] = await ctx.dp.sum([examples, skipped, tokens, responseTokens]) as [number, number, number, number];
  if (examples === 0) return { skipped: 1, skipped_rows: skipped, loss: NaN, grad_norm: NaN };
  const r = await sftUpdate(ctx.model, ctx.stage.optimizer, sequences, {
    microBatchTokens: c.batch.microBatchTokens, maxGradNorm: c.optimizer.maxGradNorm,
    parallel: ctx.dp ? { dp: ctx.dp, whole: { sequences: examples, tokens: responseTokens } } : undefined,
  });
  const done = performance.now();
  return {
    loss: r.loss, grad_norm: r.gradNorm, skipped: r.skipped ? 1 : 0, skipped_rows: skipped, examples,
    response_tokens: r.metrics.tokens ?? 0, tokens_per_second: tokens / ((done - started) / 1000),
    time_data_ms: prepared - started, time_update_ms: done - prepared,
  };
}

/** Whole groups, consecutive, split into `parts` runs of about equal numbers of groups. */
function miniBatches(samples: readonly RolloutSample[], parts: number): RolloutSample[][] {
  const groups = [...new Set(samples.map((s) => s.group))];
  const per = Math.ceil(groups.length / parts);
  const out: RolloutSample[][] = [];
  for (let i = 0; i < groups.length; i += per) {
    const chunk = new Set(groups.slice(i, i + per));
    out.push(samples.filter((s) => chunk.has(s.group)));
  }
  return out;
}

export async function rlStep(ctx: StepContext): Promise<Record<string, number> | undefined> {
  const st = ctx.stage, c = st.config, a = c.algorithm, g = c.batch.samplesPerPrompt;
  const times = { rollout: 0, reward: 0, update: 0 };
  // samples: the whole batch (with dp, every rank's, in group order); own: this rank's part of it
  let samples: RolloutSample[] = [];
  const owned = new Set<number>();
  let skippedRows = 0, generated = 0, rewardFailures = 0, draws = 0, groups = 0;
  // ---- rollout and scoring; DAPO dynamic sampling draws again until the batch is full of informative groups
  for (;;) {
    const want = c.batch.prompts - new Set(samples.map((s) => s.group)).size;
    const rows = st.sampler.next(want);
    const mine = ctx.dp?.share(rows.length);
    let t = performance.now();
    const r = await rollout(ctx.model, mine ? mine.map((i) => rows[i]!) : rows, {
      tokenizer: ctx.tokenizer, samplesPerPrompt: g, maxNewTokens: c.rollout.maxNewTokens, temperature: c.rollout.temperature,
      topP: c.rollout.topP, topK: c.rollout.topK, stopStrings: c.rollout.stopStrings, seed: stepSeed(ctx.seed, ctx.step, draws),
      systemPrompt: ctx.systemPrompt, imageProcessor: ctx.imageProcessor, signal: ctx.signal, firstGroup: groups,
    });
    times.rollout += performance.now() - t;
    if (ctx.signal?.aborted) return undefined;
    // with dp, rollout numbered this rank's prompts from `groups`: number them as in the whole batch
    if (mine) for (const s of r.samples) s.group = groups + mine[s.group - groups]!;
    for (const s of r.samples) owned.add(s.group);
    groups += rows.length;
    generated += r.generatedTokens;
    skippedRows += r.skipped.length;
    for (const s of r.skipped) ctx.log(`step ${ctx.step}: skipped a row (${s.error.message})`);
    t = performance.now();
    const scored = await score(r.samples, st.rewards, {
      step: ctx.step, overlong: c.overlong.enabled ? { ...c.overlong, maxNewTokens: c.rollout.maxNewTokens } : undefined,
      onError: (name, i, error) => ctx.log(`step ${ctx.step}: reward '${name}' failed on a sample (scored 0): ${(error as Error)?.message ?? String(error)}`),
    });
    times.reward += performance.now() - t;
    rewardFailures += Object.values(scored.failures).reduce((n, f) => n + f.thrown + f.invalid + f.timedOut, 0);
    draws++;
    const drawn = ctx.dp ? await ctx.dp.gatherSamples(r.samples) : r.samples;
    if (!c.dynamicSampling.enabled) {
      samples = drawn;
      break;
    }
    const keep = informativeGroups(drawn);
    samples.push(...drawn.filter((s) => keep.has(s.group)));
    if (new Set(samples.map((s) => s.group)).size >= c.batch.prompts || draws > c.dynamicSampling.maxDraws) break;
  }
  const metrics = rolloutMetrics(samples, ctx.criticalIds);
  if (c.dynamicSampling.enabled) {
    const keep = [...new Set(samples.map((s) => s.group))].slice(0, c.batch.prompts);
    samples = samples.filter((s) => keep.includes(s.group));
  }
  const own = ctx.dp ? samples.filter((s) => owned.has(s.group)) : samples;
  let trained = own.reduce((n, s) => n + s.promptIds.length + s.responseIds.length, 0);
  if (ctx.dp) {
    [skippedRows, generated, rewardFailures, trained] = await ctx.dp.sum([skippedRows, generated, rewardFailures, trained]) as [number, number, number, number];
  }
  const base = {
    ...metrics, skipped_rows: skippedRows, reward_failures: rewardFailures, draws, generated_tokens: generated,
    time_rollout_ms: times.rollout, time_reward_ms: times.reward,
  };
  if (samples.length === 0) return { ...base, skipped: 1, time_update_ms: 0, tokens_per_second: 0 };
  // ---- what the update compares against
  const started = performance.now();
  const forward = { microBatchTokens: c.batch.microBatchTokens, temperature: c.rollout.temperature };
  if (a.kl?.mode === 'reward' || (a.kl && (a.ppoEpochs > 1 || a.miniBatches > 1))) {
    const ref = await perToken(st.reference!, own, 'logprobs', forward);
    own.forEach((s, i) => (s.refLogprobs = ref[i]));
    if (a.kl.mode === 'reward' && a.advantage !== 'gae') klRewardPenalty(own, a.kl);
  }
  if (a.ppoEpochs > 1 || a.miniBatches > 1) {
    const old = await perToken(ctx.model, own, 'logprobs', forward);
    own.forEach((s, i) => (s.oldLogprobs = old[i]));
  }
  if (st.critic) {
    const values = await perToken(st.critic.model, own, 'values', forward);
    own.forEach((s, i) => (s.values = values[i]));
  }
  // the advantages need every rank's rewards (after KL) and values: the whole batch again
  if (ctx.dp && (a.kl?.mode === 'reward' || st.critic)) samples = await ctx.dp.gatherSamples(own);
  advantages(samples, a, g);
  // ---- updates
  const sums = new Map<string, number>();
  let updates = 0, skipped = 0;
  const add = (prefix: string, m: Record<string, number>) => {
    for (const [k, v] of Object.entries(m)) sums.set(prefix + k, (sums.get(prefix + k) ?? 0) + v);
  };
  for (let epoch = 0; epoch < a.ppoEpochs; epoch++) {
    for (const whole of miniBatches(samples, a.miniBatches)) {
      const mb = ctx.dp ? whole.filter((s) => owned.has(s.group)) : whole;
      const parallel = ctx.dp
        ? { dp: ctx.dp, whole: { sequences: whole.length, tokens: whole.reduce((n, s) => n + s.responseIds.length, 0) } }
        : undefined;
      const u = await policyUpdate(ctx.model, st.optimizer, mb, {
        algorithm: a, microBatchTokens: c.batch.microBatchTokens, temperature: c.rollout.temperature, maxGradNorm: c.optimizer.maxGradNorm,
        maxLength: c.rollout.maxNewTokens, reference: st.reference, parallel,
      });
      const m = u.metrics;
      add('', {
        loss: u.loss, grad_norm: u.gradNorm, clip_frac_low: m.clipFracLow ?? 0, clip_frac_high: m.clipFracHigh ?? 0, approx_kl: m.approxKl ?? 0,
        ...(m.kl !== undefined ? { kl: m.kl } : {}),
      });
      if (u.skipped) skipped++;
      if (st.critic) {
        const v = await criticUpdate(st.critic.model, st.critic.optimizer, mb, {
          microBatchTokens: c.batch.microBatchTokens, clip: c.critic!.clip, coef: c.critic!.coef, aggregation: 'token-mean', maxGradNorm: c.critic!.maxGradNorm,
          parallel,
        });
        add('critic_', { loss: v.loss, grad_norm: v.gradNorm, clip_frac: v.metrics.clipFrac ?? 0, value_mean: v.metrics.meanValue ?? 0 });
      }
      updates++;
    }
  }
  const time = performance.now() - started;
  const averaged = Object.fromEntries([...sums].map(([k, v]) => [k, v / updates]));
  return {
    ...base, ...averaged, skipped: skipped > 0 ? 1 : 0, updates, time_update_ms: time,
    tokens_per_second: (generated + trained) / ((times.rollout + times.reward + time) / 1000),
  };
}
