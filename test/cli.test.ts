// The `r1v` command line, run as a child process on tiny inputs (test/fixtures/cli-workspace.ts):
// train (a short run; Ctrl-C during a longer one, then --resume), eval and generate against the
// same computation done here through the library, inspect against parameter counts worked out
// by hand and a damaged copy, and the exit codes and one-line messages of bad input.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  accuracyReward, createProgress, Engine, formatReward, generate, openCheckpoint, readMetrics, rl, rowPrompt, Tokenizer, VisionLanguageModel,
  type DatasetRow,
} from '../lib/index.js';
import { cliWorkspace, type CliWorkspace } from './fixtures/cli-workspace.js';
import { whyNoMpi } from './fixtures/mpi.js';
import { relativeError, rng } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `r1v args` from the repository root; onStderr sees the stderr so far (and may signal the child). */
function r1v(args: readonly string[], onStderr?: (text: string, kill: (s: NodeJS.Signals) => void) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      onStderr?.(stderr, (s) => child.kill(s));
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Bad input: exit code 2 and one line on stderr, `r1v: ...`, without a stack trace. */
function assertBadInput(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit code ${r.code}; stderr: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^r1v: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

/** Step numbers in a run's metrics.jsonl. */
async function metricSteps(runDir: string): Promise<number[]> {
  return (await readMetrics(join(runDir, 'metrics.jsonl'))).map((m) => m.step);
}

async function latestStep(runDir: string): Promise<number> {
  return (JSON.parse(await readFile(join(runDir, 'checkpoints', 'latest.json'), 'utf8')) as { step: number }).step;
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe('r1v command line', function () {
  this.timeout(120_000);
  const next = rng('cli');
  let ws: CliWorkspace;
  let shortRun: string;
  before(async () => {
    ws = await cliWorkspace(next);
    shortRun = join(ws.dir, 'runs', 'short');
  });
  after(async () => ws?.cleanup());

  it('train runs a config to the end: metrics, checkpoints, the summary', async () => {
    const r = await r1v(['train', ws.files.short, '--out', shortRun]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await metricSteps(shortRun), range(1, ws.shortSteps));
    const last = join(shortRun, 'checkpoints', `step-${String(ws.shortSteps).padStart(6, '0')}`);
    assert.equal(await latestStep(shortRun), ws.shortSteps);
    for (const f of ['manifest.json', 'config.json', 'model.safetensors', 'trainer_state.json']) await readFile(join(last, f));
    assert.match(r.stdout, new RegExp(`^run directory: ${shortRun}$`, 'm'));
    assert.match(r.stdout, new RegExp(`^latest checkpoint: ${last} \\(step ${ws.shortSteps}\\)$`, 'm'));
    assert.match(r.stdout, /^best checkpoint: .*step-\d{6} \(val_accuracy \d\.\d{4}\)$/m);
    // not a terminal: a line per step and per checkpoint
    assert.equal(r.stderr.match(/^\[(warmup|grpo) \d+\] step \d+:/gm)?.length, ws.shortSteps);
    assert.deepEqual(r.stderr.match(/^checkpoint .*step-\d+/gm)?.map((l) => Number(l.slice(-6))), ws.shortCheckpoints);
  });

  it('Ctrl-C stops after the current step with a final checkpoint (exit 130); --resume continues to the end', async () => {
    const runDir = join(ws.dir, 'runs', 'long');
    let sent = false;
    const r = await r1v(['train', ws.files.long, '--out', runDir], (text, kill) => {
      if (!sent && /\] step \d+:/.test(text)) {
        sent = true;
        kill('SIGINT');
      }
    });
    assert.ok(sent, r.stderr);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /stopping after the current step/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    const done = await metricSteps(runDir);
    const k = done.length;
    assert.ok(k >= 1 && k < ws.longSteps, `stopped at step ${k}`);
    assert.deepEqual(done, range(1, k));
    assert.equal(await latestStep(runDir), k, 'the final checkpoint is at the last step done');
    assert.match(r.stdout, new RegExp(`latest checkpoint: .*step-${String(k).padStart(6, '0')} \\(step ${k}\\)`));

    const resumed = await r1v(['train', '--resume', runDir]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`resumed from .*step-${String(k).padStart(6, '0')}`));
    assert.deepEqual(await metricSteps(runDir), range(1, ws.longSteps));
    assert.equal(await latestStep(runDir), ws.longSteps);
  });

  it('eval prints the metrics of the checkpoint on the rows (text and --json), as computed here', async () => {
    const samples = 2, limit = 5;
    const [json, text] = await Promise.all([
      r1v(['eval', '--checkpoint', shortRun, '--data', ws.files.val, '--device', 'cpu', '--json']),
      r1v(['eval', '--checkpoint', shortRun, '--data', ws.files.val, '--device', 'cpu', '--samples', String(samples), '--temperature', '1', '--limit', String(limit)]),
    ]);
    assert.equal(json.code, 0, json.stderr);
    assert.equal(text.code, 0, text.stderr);
    const out = JSON.parse(json.stdout) as { checkpoint: string; rows: number; maxNewTokens: number; seed: number; metrics: Record<string, number> };
    const checkpoint = join(shortRun, 'checkpoints', `step-${String(ws.shortSteps).padStart(6, '0')}`);
    assert.equal(out.checkpoint, checkpoint);
    assert.equal(out.rows, ws.valRows.length);
    assert.equal(out.maxNewTokens, 6, "the run's validation.maxNewTokens");
    assert.equal(out.seed, ws.seed, "the run's seed");

    // The same evaluation done here: the checkpoint, greedy (and sampled) answers, the built-in rewards by sample, the digits' entropy.
    const tokenizer = await Tokenizer.load(ws.tokenizerDir);
    using engine = Engine.create({ device: 'cpu', seed: 0 });
    using model = await VisionLanguageModel.load(engine, checkpoint, { imageContextTokenId: tokenizer.imageContextTokenId });
    const digits = rl.criticalTokenIds(tokenizer, ['answer', ...range(0, 9).map(String)]);
    const reference = async (rows: DatasetRow[], n: number, temperature: number) => {
      const g = await generate(model, rows.map((row) => rowPrompt(row)), { tokenizer, n, temperature, maxNewTokens: 6, seed: ws.seed });
      const accuracy = accuracyReward(), format = formatReward();
      let acc = 0, fmt = 0, length = 0, entropy = 0, critical = 0;
      for (const s of g) {
        const sample = { text: s.text, row: rows[s.prompt]!, step: 0, finishReason: s.finishReason, responseLength: s.tokenIds.length };
        acc += await accuracy.fn(sample);
        fmt += await format.fn(sample);
        length += s.tokenIds.length;
        s.tokenIds.forEach((id, t) => {
          if (digits.has(id)) {
            entropy += s.entropy[t]!;
            critical++;
          }
        });
      }
      return { val_accuracy: acc / g.length, val_format: fmt / g.length, val_length: length / g.length, critical_entropy: critical ? entropy / critical : 0, critical_count: critical, val_samples: g.length };
    };
    const greedy = await reference(ws.valRows, 1, 0);
    assert.ok(greedy.critical_count > 0, 'the answers hold critical tokens');
    for (const [k, v] of Object.entries(greedy)) assert.ok(relativeError([out.metrics[k]!], [v]) < 1e-6, `${k}: ${out.metrics[k]} vs ${v}`);
    assert.equal(out.metrics.val_skipped, 0);

    const sampled = await reference(ws.valRows.slice(0, limit), samples, 1);
    const field = (label: string) => text.stdout.match(new RegExp(`^${label} +(\\S+)`, 'm'))?.[1];
    assert.equal(field('accuracy'), sampled.val_accuracy.toFixed(4));
    assert.equal(field('format rate'), sampled.val_format.toFixed(4));
    assert.equal(field('mean length'), sampled.val_length.toFixed(1));
    assert.equal(field('critical entropy'), sampled.critical_entropy.toFixed(4));
    assert.match(text.stdout, new RegExp(`${limit} rows × ${samples} response\\(s\\)`));
  });

  it('generate prints the samples generate() gives for the same prompt and seed, with an image too', async () => {
    const a = Math.floor(next() * 10), b = Math.floor(next() * 10), seed = Math.floor(next() * 1e6);
    const prompt = `copy ${a} ${b}`;
    const [json, text, vision] = await Promise.all([
      r1v(['generate', '--checkpoint', shortRun, '--prompt', prompt, '--n', '3', '--seed', String(seed), '--max-new-tokens', '6', '--device', 'cpu', '--json']),
      r1v(['generate', '--checkpoint', shortRun, '--prompt', prompt, '--n', '2', '--seed', String(seed), '--max-new-tokens', '6', '--device', 'cpu']),
      r1v(['generate', '--checkpoint', ws.files.vlm, '--prompt', 'which digit', '--image', ws.files.image, '--temperature', '0', '--max-new-tokens', '5', '--device', 'cpu', '--json']),
    ]);
    for (const r of [json, text, vision]) assert.equal(r.code, 0, r.stderr);

    const tokenizer = await Tokenizer.load(ws.tokenizerDir);
    using engine = Engine.create({ device: 'cpu', seed: 0 });
    const texts = async (dir: string, row: DatasetRow, o: { n: number; temperature: number; maxNewTokens: number; seed: number }) => {
      using model = await VisionLanguageModel.load(engine, dir, { imageContextTokenId: tokenizer.imageContextTokenId });
      const g = await generate(model, [rowPrompt(row)], { tokenizer, ...o });
      return g.map((s) => ({ text: tokenizer.decode(s.tokenIds, { skipSpecialTokens: true }), tokens: s.tokenIds.length, finishReason: s.finishReason }));
    };
    const expected = await texts(join(shortRun, 'checkpoints', `step-${String(ws.shortSteps).padStart(6, '0')}`), { question: prompt, answer: '' },
      { n: 3, temperature: 1, maxNewTokens: 6, seed });
    assert.deepEqual((JSON.parse(json.stdout) as { samples: unknown }).samples, expected);
    // samples do not depend on n: the first two of three are the two of two
    assert.equal(text.stdout, expected.slice(0, 2).map((s, i) => `--- sample ${i + 1}/2 (${s.finishReason}, ${s.tokens} tokens)\n${s.text}\n`).join(''));
    const withImage = await texts(ws.files.vlm, { question: 'which digit', answer: '', images: [ws.files.image] }, { n: 1, temperature: 0, maxNewTokens: 5, seed: 0 });
    assert.deepEqual((JSON.parse(vision.stdout) as { samples: unknown }).samples, withImage);
  });

  it('inspect reports the config, parameter counts, manifest check, trainer state and last metrics', async () => {
    const c = ws.modelConfig as { vocab_size: number; hidden_size: number; intermediate_size: number; num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number; tie_word_embeddings: boolean };
    const V = c.vocab_size, H = c.hidden_size, I = c.intermediate_size, kv = (H / c.num_attention_heads) * c.num_key_value_heads;
    // per layer: q (H·H + H), k and v (H·kv + kv each), o (H·H), gate/up/down (3·H·I), two RMSNorms (2·H); embedding, final norm, untied head
    const language = V * H + c.num_hidden_layers * (H * H + H + 2 * (H * kv + kv) + H * H + 3 * H * I + 2 * H) + H + (c.tie_word_embeddings ? 0 : V * H);
    const copy = join(ws.dir, 'damaged');
    const last = join(shortRun, 'checkpoints', `step-${String(ws.shortSteps).padStart(6, '0')}`);
    await cp(last, copy, { recursive: true });
    const weights = await readFile(join(copy, 'model.safetensors'));
    const at = weights.length - 1 - Math.floor(next() * 64);
    weights[at] = weights[at]! ^ 0x40;
    await writeFile(join(copy, 'model.safetensors'), weights);

    const [json, text, damaged, plain] = await Promise.all([
      r1v(['inspect', shortRun, '--json']), r1v(['inspect', shortRun]), r1v(['inspect', copy]), r1v(['inspect', ws.files.vlm, '--json']),
    ]);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as {
      dir: string; runDir: string; config: { modelType: string; language: { vocabSize: number } }; parameters: { total: number; byPart: Record<string, number> };
      manifest: { ok: boolean; step: number }; trainerState: { step: number; stageName: string }; lastMetrics: { metrics: { step: number } };
    };
    assert.equal(report.dir, last);
    assert.equal(report.runDir, shortRun);
    assert.equal(report.config.modelType, 'qwen2');
    assert.equal(report.config.language.vocabSize, V);
    assert.deepEqual(report.parameters, { total: language, byPart: { language } });
    assert.deepEqual([report.manifest.ok, report.manifest.step], [true, ws.shortSteps]);
    assert.deepEqual([report.trainerState.step, report.trainerState.stageName], [ws.shortSteps, 'grpo']);
    assert.equal(report.lastMetrics.metrics.step, ws.shortSteps);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^parameters +${language.toLocaleString('en-US')} total: language ${language.toLocaleString('en-US')}$`, 'm'));
    assert.match(text.stdout, /^manifest +OK: step \d+, \d+ files match/m);

    assert.equal(damaged.code, 1, damaged.stderr);
    assert.match(damaged.stdout, /^manifest +FAILED:\n +model\.safetensors: sha256 [0-9a-f]{64}, manifest says [0-9a-f]{64}$/m);

    // a plain model directory: no manifest, no trainer state; the counts add up to the tensors stored
    assert.equal(plain.code, 0, plain.stderr);
    const vlm = JSON.parse(plain.stdout) as { parameters: { total: number; byPart: Record<string, number> }; manifest: unknown; trainerState: unknown; runDir: unknown };
    await using stored = await openCheckpoint(ws.files.vlm);
    const numel = (prefix: string) => stored.names().filter((n) => n.startsWith(prefix)).reduce((n, name) => n + stored.entry(name).shape.reduce((a, d) => a * d, 1), 0);
    const parts = { vision: numel('vision_model.'), connector: numel('mlp1.'), language: numel('language_model.') };
    assert.deepEqual(vlm.parameters.byPart, parts);
    assert.equal(vlm.parameters.total, stored.names().reduce((n, name) => n + stored.entry(name).shape.reduce((a, d) => a * d, 1), 0));
    assert.deepEqual([vlm.manifest, vlm.trainerState, vlm.runDir], [null, null, null]);
  });

  it('launch prints the mpirun command of a data-parallel run; --run runs it, the optimizer state sharded (2 ranks, when Open MPI is here)', async function () {
    const printed = await r1v(['launch', '-n', '3', '--hostfile', 'hosts', ws.files.short]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout.trim(), new RegExp(`^mpirun -np 3 --hostfile hosts .*\\S+ \\S*lib/cli/main\\.ts train ${ws.files.short.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} --distributed$`));
    assertBadInput(await r1v(['launch', '-n', 'two', ws.files.short]), /--ranks must be an integer ≥ 1, got 'two'/);
    assertBadInput(await r1v(['launch', '-n', '2']), /give a training config or --resume/);
    assertBadInput(await r1v(['train', ws.files.short, '--shard-optimizer']), /--shard-optimizer and --\(no-\)overlap-gradients go with --distributed/);
    const why = whyNoMpi();
    if (why && process.env.R1V_REQUIRE_MPI === '1') assert.fail(`R1V_REQUIRE_MPI=1: ${why}`);
    if (why) return this.skip();
    const dir = join(ws.dir, 'runs', 'launched');
    const ran = await r1v(['launch', '-n', '2', '--mpirun-args', '--oversubscribe --bind-to none', '--out', dir, '--shard-optimizer', '--run', ws.files.short]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.deepEqual(await metricSteps(dir), range(1, ws.shortSteps));
    assert.equal(await latestStep(dir), ws.shortSteps);
    assert.equal((ran.stdout.match(/^run directory: /gm) ?? []).length, 1, 'only rank 0 prints the summary');
  });

  it('bad input: exit code 2 and one line naming the problem, no stack trace', async () => {
    const missing = join(ws.dir, 'no-such-checkpoint');
    // a checkpoint copied out of its run: no tokenizer files, no run to take the tokenizer from
    const lonely = join(ws.dir, 'lonely');
    await cp(join(shortRun, 'checkpoints', `step-${String(ws.shortSteps).padStart(6, '0')}`), lonely, { recursive: true });
    const [config, checkpoint, tokenizer, image, usage, verbose] = await Promise.all([
      r1v(['train', ws.files.bad]),
      r1v(['eval', '--checkpoint', missing, '--data', ws.files.val]),
      r1v(['generate', '--checkpoint', lonely, '--prompt', 'copy 1 2', '--device', 'cpu']),
      r1v(['generate', '--checkpoint', ws.files.vlm, '--prompt', 'which digit', '--image', ws.files.brokenImage, '--device', 'cpu']),
      r1v(['generate', '--checkpoint', ws.files.vlm, '--prompt', 'x', '--n', '0']),
      r1v(['--verbose', 'train', ws.files.bad]),
    ]);
    assertBadInput(config, /bad\.yaml: invalid training config: stages\[0\]\.optimiser: unknown key$/);
    assertBadInput(checkpoint, new RegExp(`--checkpoint ${missing}: no such directory`));
    assertBadInput(tokenizer, new RegExp(`no tokenizer for ${lonely}: .*pass --tokenizer DIR or --tokenizer qwen3`));
    assertBadInput(image, /broken\.png/);
    assertBadInput(usage, /option '--n <n>' argument '0' is invalid\. must be an integer ≥ 1/);
    assert.equal(verbose.code, 2);
    assert.match(verbose.stderr, /R1VError CONFIG[\s\S]*\n\s+at parseTrainConfig/);
  });

  it('progress off a terminal: at most a line per interval and one at the end', () => {
    const lines: string[] = [];
    const stream = { isTTY: false, write: (s: string) => lines.push(s) } as unknown as NodeJS.WriteStream;
    const p = createProgress(stream, { plainEveryMs: 1e9 });
    const total = 2 + Math.floor(next() * 5);
    p.begin('work', total);
    for (let i = 0; i < total; i++) p.advance(1, { loss: 0.5 });
    p.end();
    assert.equal(lines.length, 1, lines.join(''));
    assert.match(lines[0]!, new RegExp(`^work: ${total}/${total} \\(\\d+s\\) loss 0\\.500\\n$`));
  });
});
