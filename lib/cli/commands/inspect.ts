// `r1v inspect DIR`: what a model directory, trainer checkpoint or run directory (then its latest
// checkpoint) holds, read without loading any weight: the model config (type, sizes), parameter
// counts (total and by part, from the config), the stored tensors, the manifest check (every
// file's size and sha256 against manifest.json), the trainer state and the last line of the
// run's metrics.jsonl. --json prints the same as one object. The exit code is 1 when the
// checkpoint does not match its manifest.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import type { Command } from 'commander';

import { R1VError } from '../../core/errors.js';
import { openCheckpoint } from '../../io/checkpoint.js';
import { openModelDirectory } from '../../io/hf-checkpoint.js';
import { parseModelConfig, type ModelConfig } from '../../model/config.js';
import { numelOf, parameterSpecs } from '../../model/parameters.js';
import { checkpointDirName } from '../../train/checkpoints.js';
import { MANIFEST_FILE, verifyCheckpoint } from '../../train/manifest.js';
import { formatStep, readMetrics, type StepMetrics } from '../../train/metrics.js';
import { readState, STATE_FILE } from '../../train/state.js';
import { EXIT, loadingInput } from '../failures.js';
import { resolveModelDir } from '../model-dir.js';

export function register(program: Command): void {
  program
    .command('inspect')
    .description('describe a model directory, trainer checkpoint or run directory: config, parameters, manifest check, trainer state, last metrics')
    .argument('<dir>', 'model directory, trainer checkpoint, or run directory (its latest checkpoint)')
    .option('--json', 'print the report as JSON')
    .action((dir: string, o: { json?: boolean }) => inspect(dir, o));
}

interface ManifestCheck {
  ok: boolean;
  step?: number;
  createdAt?: string;
  files?: number;
  metrics?: Record<string, number>;
  problems?: string[];
}

async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(() => true, () => false);
}

function describeConfig(c: ModelConfig) {
  const lm = c.language, v = c.vision;
  return {
    modelType: c.modelType,
    language: {
      vocabSize: lm.vocabSize, hiddenSize: lm.hiddenSize, layers: lm.numHiddenLayers, heads: lm.numAttentionHeads,
      keyValueHeads: lm.numKeyValueHeads, intermediateSize: lm.intermediateSize, maxPositions: lm.maxPositionEmbeddings, tiedEmbeddings: lm.tieWordEmbeddings,
    },
    ...(v ? {
      vision: {
        hiddenSize: v.hiddenSize, layers: v.numHiddenLayers, heads: v.numAttentionHeads, imageSize: v.imageSize, patchSize: v.patchSize,
        tokensPerTile: c.connector!.tokensPerTile, maxTiles: c.imageTiling!.dynamicImageSize ? c.imageTiling!.maxDynamicPatch : 1,
      },
    } : {}),
    unknownFields: [...c.unknownFields],
  };
}

/** The tensors as stored (or why they cannot be read), and the parameters the config implies (a critic's value head when stored). */
async function describeWeights(dir: string, config: ModelConfig) {
  let weights: { files: string[]; tensors: number; dtypes: string[]; bytes: number } | { error: string };
  let valueHead = false;
  try {
    await using checkpoint = await openCheckpoint(dir);
    const entries = checkpoint.names().map((n) => checkpoint.entry(n));
    valueHead = checkpoint.has('value_head.weight');
    weights = {
      files: [...new Set(entries.map((e) => path.basename(e.file)))],
      tensors: entries.length,
      dtypes: [...new Set(entries.map((e) => e.dtype))],
      bytes: entries.reduce((a, e) => a + e.byteLength, 0),
    };
  } catch (error) {
    if (!(error instanceof R1VError)) throw error;
    weights = { error: error.message };
  }
  const byPart: Record<string, number> = {};
  for (const spec of parameterSpecs(config, { valueHead })) byPart[spec.part] = (byPart[spec.part] ?? 0) + numelOf(spec.shape);
  return { parameters: { total: Object.values(byPart).reduce((a, b) => a + b, 0), byPart }, weights };
}

async function checkManifest(dir: string): Promise<ManifestCheck | null> {
  if (!(await exists(path.join(dir, MANIFEST_FILE)))) return null;
  try {
    const m = await verifyCheckpoint(dir, 'manifest check');
    const named = /^step-\d+$/.test(path.basename(dir));
    if (named && checkpointDirName(m.step) !== path.basename(dir)) {
      return { ok: false, problems: [`${MANIFEST_FILE} records step ${m.step}, the directory is ${path.basename(dir)}`] };
    }
    return { ok: true, step: m.step, createdAt: m.createdAt, files: m.files.size, metrics: m.metrics };
  } catch (error) {
    if (!(error instanceof R1VError)) throw error;
    // verifyCheckpoint lists one problem per line after its first line.
    const lines = error.message.split('\n').map((l) => l.trim());
    return { ok: false, problems: lines.length > 1 ? lines.slice(1) : lines };
  }
}

async function trainerState(dir: string) {
  if (!(await exists(path.join(dir, STATE_FILE)))) return null;
  try {
    const s = await readState(dir);
    return { step: s.step, stage: s.stage, stageName: s.stageName, stageStep: s.stageStep, checkpointRecords: s.history.length };
  } catch (error) {
    if (!(error instanceof R1VError)) throw error;
    return { error: error.message };
  }
}

/** The last line of the metrics.jsonl next to the checkpoint (in the run, the directory or its parent). */
async function lastMetrics(dirs: string[]): Promise<{ file: string; metrics: StepMetrics } | null> {
  for (const d of new Set(dirs)) {
    const file = path.join(d, 'metrics.jsonl');
    if (!(await exists(file))) continue;
    const all = await readMetrics(file);
    return all.length ? { file, metrics: all[all.length - 1]! } : null;
  }
  return null;
}

const count = (n: number) => n.toLocaleString('en-US');

async function inspect(given: string, o: { json?: boolean }): Promise<void> {
  const source = await loadingInput(() => resolveModelDir(given, 'inspect'));
  const report = await loadingInput(async () => {
    const config = await (async () => {
      await using md = await openModelDirectory(source.dir, 'r1v inspect', () => undefined);
      return parseModelConfig(md.config, { source: md.configSource, warn: () => undefined });
    })();
    return {
      dir: source.dir, runDir: source.runDir ?? null, config: describeConfig(config), ...(await describeWeights(source.dir, config)),
      manifest: await checkManifest(source.dir), trainerState: await trainerState(source.dir),
      lastMetrics: await lastMetrics([...(source.runDir ? [source.runDir] : []), source.dir, path.dirname(source.dir)]),
    };
  });
  if (report.manifest?.ok === false) process.exitCode = EXIT.failure;
  if (o.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  const { config: c, parameters: p, weights: w, manifest: m, trainerState: s, lastMetrics: last } = report;
  const lm = c.language;
  const lines: Array<[string, string]> = [['directory', report.dir]];
  if (report.runDir) lines.push(['run', report.runDir]);
  lines.push(['model', c.modelType === 'qwen2' ? 'qwen2 (language model only)' : `${c.modelType} (InternViT → MLP connector → Qwen2)`]);
  lines.push(['language model', `vocabulary ${count(lm.vocabSize)}, hidden ${lm.hiddenSize}, ${lm.layers} layers, ${lm.heads} heads (${lm.keyValueHeads} key/value), `
    + `MLP ${lm.intermediateSize}, context ${lm.maxPositions}${lm.tiedEmbeddings ? ', tied embeddings' : ''}`]);
  if (c.vision) {
    const v = c.vision;
    lines.push(['vision tower', `hidden ${v.hiddenSize}, ${v.layers} layers, ${v.heads} heads, ${v.imageSize}-px tiles of ${v.patchSize}-px patches, `
      + `${v.tokensPerTile} image tokens per tile, up to ${v.maxTiles} tile(s)`]);
  }
  if (c.unknownFields.length) lines.push(['unknown fields', `${c.unknownFields.join(', ')} (ignored)`]);
  lines.push(['parameters', `${count(p.total)} total: ${Object.entries(p.byPart).map(([k, n]) => `${k} ${count(n)}`).join(', ')}`]);
  lines.push(['weights', 'error' in w ? w.error : `${w.files.join(', ')}: ${w.tensors} tensors, ${w.dtypes.join('/')}, ${(w.bytes / 2 ** 20).toFixed(2)} MiB`]);
  if (m === null) lines.push(['manifest', `none (no ${MANIFEST_FILE}: not a trainer checkpoint)`]);
  else if (m.ok) {
    const metrics = Object.entries(m.metrics!).map(([k, x]) => `${k} ${Number.isInteger(x) ? x : x.toFixed(4)}`).join(', ');
    lines.push(['manifest', `OK: step ${m.step}, ${m.files} files match (sizes and sha256), written ${m.createdAt}${metrics ? `; ${metrics}` : ''}`]);
  } else lines.push(['manifest', `FAILED:\n${m.problems!.map((x) => `    ${x}`).join('\n')}`]);
  if (s) {
    lines.push(['trainer state', 'error' in s ? s.error! : `step ${s.step}, stage ${s.stage + 1} '${s.stageName}' after ${s.stageStep} of its steps, ${s.checkpointRecords} checkpoint record(s)`]);
  }
  if (last) lines.push(['last metrics', `${path.relative(process.cwd(), last.file) || last.file}: ${formatStep(last.metrics)}`]);
  for (const [k, v] of lines) console.log(`${k.padEnd(15)} ${v}`);
}
