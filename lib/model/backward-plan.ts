// Which blocks a backward must visit, decided from what is trainable before the forward runs:
// a block runs backward when it trains or something before it trains (its dX is needed); it
// keeps its activations only then; a frozen prefix of the model runs forward only. So a frozen
// ViT under a trainable connector keeps nothing but the connector's input, and with everything
// but the connector frozen the decoder still passes dX down to the image rows.
import { anyTrainable, type ModelGroups } from './parameters.js';

export interface BackwardPlan {
  /** Whether backward does anything at all. */
  any: boolean;
  /** languageDx[i]: decoder layer i (or the head for i = N) must return dX, because something before it trains. */
  languageDx: boolean[];
  /** languageLayer[i]: layer i runs backward (so its forward keeps its input). */
  languageLayer: boolean[];
  /** The connector runs backward (its input is kept). */
  connector: boolean;
  visionDx: boolean[];
  visionLayer: boolean[];
  /** The patch/CLS/position embeddings train (the patchified input is kept). */
  visionEmbeddings: boolean;
}

const NONE: BackwardPlan = { any: false, languageDx: [], languageLayer: [], connector: false, visionDx: [], visionLayer: [], visionEmbeddings: false };

/** Walks a stack bottom-up: block i needs dX when anything before it trains. */
function stackPlan(layers: readonly unknown[], trainsBefore: boolean, active: boolean): { dx: boolean[]; runs: boolean[]; after: boolean } {
  const dx: boolean[] = [], runs: boolean[] = [];
  let before = trainsBefore;
  layers.forEach((layer, i) => {
    dx[i] = before;
    const trains = active && anyTrainable(layer);
    runs[i] = before || trains;
    before ||= trains;
  });
  dx[layers.length] = before;
  return { dx, runs, after: before };
}

export function backwardPlan(groups: ModelGroups, images: boolean, grad: boolean): BackwardPlan {
  if (!grad) return NONE;
  const v = groups.vision, lm = groups.language;
  const visionEmbeddings = images && v !== undefined && anyTrainable([v.classEmbedding, v.patchEmbedding, v.positionEmbedding]);
  const vision = stackPlan(v?.layers ?? [], visionEmbeddings, images);
  const connector = vision.after || (images && anyTrainable(groups.connector));
  const language = stackPlan(lm.layers, connector || lm.embedTokens.trainable, true);
  const any = language.after || anyTrainable([lm.norm, lm.head, groups.valueHead]);
  return {
    any, languageDx: language.dx, languageLayer: language.runs, connector, visionDx: vision.dx, visionLayer: vision.runs, visionEmbeddings,
  };
}
