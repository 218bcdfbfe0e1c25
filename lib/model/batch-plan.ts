// Host-side checks and bookkeeping of one packed batch, done before any work is queued: each
// array's type and length, cuSeqlens, token ids and targets in the vocabulary, sequence lengths
// within the context, and `<IMG_CONTEXT>` positions matching the image tiles. Every problem is
// an R1VError naming `batch.<field>`.
import { R1VError } from '../core/errors.js';
import { IGNORE_INDEX, scoredPositions, type Batch } from '../data/batch.js';
import type { ModelConfig } from './config.js';

/** What a forward needs to know about a batch. */
export interface BatchPlan {
  tokens: number;
  tiles: number;
  /** Rows with a target, in order, and their targets. */
  scored: Int32Array;
  scoredTargets: Int32Array;
  /** Rows holding `<IMG_CONTEXT>`, in order (they receive the image embeddings). */
  imagePositions: Int32Array;
  /** Position of each row within its sequence. */
  positions: Int32Array;
}

export function planBatch(config: ModelConfig, imageContextTokenId: number | undefined, batch: Batch, fn: string): BatchPlan {
  if (typeof batch !== 'object' || batch === null) throw new R1VError('ARGUMENT', `${fn}: batch must be an object`);
  const { inputIds, targets, cuSeqlens, pixelValues } = batch;
  for (const [name, value] of [['inputIds', inputIds], ['targets', targets], ['cuSeqlens', cuSeqlens]] as const) {
    if (!(value instanceof Int32Array)) throw new R1VError('ARGUMENT', `${fn}: batch.${name} must be an Int32Array`);
  }
  const tokens = inputIds.length;
  if (targets.length !== tokens) {
    throw new R1VError('SHAPE', `${fn}: batch.targets has ${targets.length} entries but batch.inputIds has ${tokens}`);
  }
  if (cuSeqlens.length < 2 || cuSeqlens[0] !== 0 || cuSeqlens[cuSeqlens.length - 1] !== tokens) {
    throw new R1VError('SHAPE', `${fn}: batch.cuSeqlens must start at 0 and end at inputIds.length (${tokens}), got [${Array.from(cuSeqlens.slice(0, 6)).join(', ')}${cuSeqlens.length > 6 ? ', ...' : ''}]`);
  }
  const lm = config.language;
  const positions = new Int32Array(tokens);
  for (let b = 0; b + 1 < cuSeqlens.length; b++) {
    const start = cuSeqlens[b]!, end = cuSeqlens[b + 1]!;
    if (end < start) throw new R1VError('SHAPE', `${fn}: batch.cuSeqlens decreases at [${b + 1}] (${start} → ${end})`);
    if (end - start > lm.maxPositionEmbeddings) {
      throw new R1VError('SHAPE', `${fn}: sequence ${b} has ${end - start} tokens, more than max_position_embeddings (${lm.maxPositionEmbeddings})`);
    }
    for (let t = start; t < end; t++) positions[t] = t - start;
  }
  for (let t = 0; t < tokens; t++) {
    const id = inputIds[t]!, target = targets[t]!;
    if (id < 0 || id >= lm.vocabSize) throw new R1VError('ARGUMENT', `${fn}: batch.inputIds[${t}] = ${id} is outside [0, ${lm.vocabSize})`);
    if (target !== IGNORE_INDEX && (target < 0 || target >= lm.vocabSize)) {
      throw new R1VError('ARGUMENT', `${fn}: batch.targets[${t}] = ${target} is outside [0, ${lm.vocabSize}) (use ${IGNORE_INDEX} for unscored positions)`);
    }
  }
  const scored = scoredPositions(targets);
  const scoredTargets = Int32Array.from(scored, (t) => targets[t]!);
  const imageList: number[] = [];
  if (imageContextTokenId !== undefined) for (let t = 0; t < tokens; t++) if (inputIds[t] === imageContextTokenId) imageList.push(t);
  let tiles = 0;
  if (pixelValues !== undefined) {
    const v = config.vision;
    if (!v) throw new R1VError('ARGUMENT', `${fn}: batch.pixelValues given, but this is a text-only model`);
    if (!(pixelValues instanceof Float32Array)) throw new R1VError('ARGUMENT', `${fn}: batch.pixelValues must be a Float32Array`);
    const perTile = v.numChannels * v.imageSize * v.imageSize;
    if (pixelValues.length === 0 || pixelValues.length % perTile !== 0) {
      throw new R1VError('SHAPE', `${fn}: batch.pixelValues has ${pixelValues.length} values, not a positive multiple of ${v.numChannels}·${v.imageSize}·${v.imageSize} = ${perTile} (one tile)`);
    }
    if (imageContextTokenId === undefined) {
      throw new R1VError('CONFIG', `${fn}: the <IMG_CONTEXT> token id is unknown: pass imageContextTokenId when creating or loading the model (the tokenizer has it)`);
    }
    tiles = pixelValues.length / perTile;
  }
  const perTileTokens = config.connector?.tokensPerTile ?? 0;
  const expected = tiles * perTileTokens;
  if (imageList.length !== expected) {
    throw new R1VError('SHAPE', `${fn}: batch.inputIds has ${imageList.length} <IMG_CONTEXT> tokens (id ${imageContextTokenId}) but batch.pixelValues has ${tiles} tiles × ${perTileTokens} tokens per tile = ${expected}`);
  }
  return { tokens, tiles, scored, scoredTargets, imagePositions: Int32Array.from(imageList), positions };
}
