// Crash safety and concurrency of saving: a child process saves two known states into one
// directory back to back and is killed (SIGKILL) at a random moment; the directory must then
// load as one of the two states, whole (for a model + optimizer pair: the pair, or a typed
// refusal of the mismatch). Two saves at once leave one whole checkpoint or refuse one save.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { AdamW, R1VError, VisionLanguageModel } from '../lib/index.js';
import {
  type KnownState, makeState, optimizerTensors, quiet, sameValues, scratch, tmpDir, valuesOf, whichState,
} from './fixtures/checkpoint-states.js';
import { rng } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/save-loop.ts', import.meta.url));
const SHARD_BYTES = 2_000;  // the tiny model's ~9 kB of weights in several shards
const TRIALS = 30;

interface ChildSpec {
  dir: string;
  states: Array<{ from: string; maxShardBytes?: number; optimizer?: boolean }>;
  count?: number;
  startAt?: number;
}

/**
 * Runs the save-loop child and returns its stdout lines. With `kill`, kills it (SIGKILL)
 * `delayMs` after it begins its first save of state `writing` (a random moment inside that save
 * when delayMs is below a save's duration); without, waits for it to exit.
 */
function runChild(spec: ChildSpec, kill?: { writing: number; delayMs: number }): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '', killTimer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const begun = out.match(/^begin (\d+)$/gm)?.some((line) => Number(line.slice(6)) % 2 === kill?.writing);
      if (kill && killTimer === undefined && begun) killTimer = setTimeout(() => child.kill('SIGKILL'), kill.delayMs);
    });
    child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString(); });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const killed = signal === 'SIGKILL' && killTimer !== undefined;
      if (!killed && code !== 0) reject(new Error(`save-loop child exited with ${code ?? signal}:\n${err}`));
      else resolve(out.trim().split('\n'));
    });
  });
}

/** Runs `job` two at a time until `done()` says enough (checked before each start) or a job fails. */
async function twoAtATime(job: () => Promise<void>, done: () => boolean): Promise<void> {
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && !done()) {
      try {
        await job();
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all([worker(), worker()]);
}

/** Which save the kill interrupted: from the child's last line, the state being written (or -1 between saves). */
function interrupted(lines: string[]): { writing: number; previous: number } {
  const last = lines[lines.length - 1]!;
  const k = last === 'ready' ? 0 : Number(last.split(' ')[1]);
  assert.ok(/^(ready|begin \d+|end \d+)$/.test(last), `unexpected child output ${last}`);
  return last.startsWith('begin') ? { writing: k % 2, previous: (k + 1) % 2 } : { writing: -1, previous: k % 2 };
}

type Outcome = 'old' | 'new' | 'refused' | 'between';

describe('saving is crash-safe (SIGKILL at random moments)', function () {
  this.timeout(240_000);
  const ctx = scratch('crash');

  /**
   * Kills save loops over two states until every combination `label(writing, previous)` of
   * the loop has `TRIALS` kills inside a save, loading each directory with `check`; prints and
   * returns the outcome counts per combination.
   */
  async function crashTrials(spec: (dir: string) => ChildSpec, labels: readonly string[],
    check: (dir: string, cut: { writing: number; previous: number }) => Promise<Outcome>,
    label: (writing: number, previous: number) => string): Promise<Map<string, Record<Outcome, number>>> {
    const next = rng(`crash-delays-${labels.join()}`);
    const counts = new Map<string, Record<Outcome, number>>();
    const inSave = (key: string): number => {
      const c = counts.get(key);
      return c ? c.old + c.new + c.refused : 0;
    };
    let started = 0;
    const done = (): boolean => labels.every((l) => inSave(l) >= TRIALS) || started >= 3 * TRIALS * labels.length;
    await twoAtATime(async () => {
      started++;
      // Aim at a save of the combination with the fewest kills so far; a random moment up to ~2 saves in.
      const writing = [0, 1].sort((a, b) => inSave(label(a, 1 - a)) - inSave(label(b, 1 - b)) || next() - 0.5)[0]!;
      const dir = await tmpDir(ctx.root, 'trial');
      const lines = await runChild(spec(dir), { writing, delayMs: Math.floor(next() * 80) });
      const cut = interrupted(lines);
      const outcome = await check(dir, cut);
      const key = cut.writing < 0 ? 'between saves' : label(cut.writing, cut.previous);
      const c = counts.get(key) ?? { old: 0, new: 0, refused: 0, between: 0 };
      c[outcome] += 1;
      counts.set(key, c);
      await fsp.rm(dir, { recursive: true, force: true });
    }, done);
    for (const [key, c] of counts) {
      console.log(`      ${key}: ${c.old + c.new + c.refused + c.between} kills → old ${c.old}, new ${c.new}, refused ${c.refused}${c.between ? `, between saves ${c.between}` : ''}`);
    }
    for (const l of labels) assert.ok(inSave(l) >= TRIALS, `${l}: only ${inSave(l)} kills landed inside a save`);
    return counts;
  }

  /** Loads dir as a model and says which known state it is (the loaded config must be that state's). */
  async function loadedState(dir: string, states: KnownState[], warnings: string[] = []): Promise<{ index: number; model: VisionLanguageModel }> {
    const model = await VisionLanguageModel.load(ctx.e, dir, { warn: (m) => warnings.push(m) });
    const index = whichState(await valuesOf(model), states);
    assert.ok(index >= 0, `${dir} loads as neither known state (a mix)`);
    assert.equal(model.config.language.intermediateSize, states[index]!.intermediate);
    return { index, model };
  }

  function outcomeOf(index: number, cut: { writing: number; previous: number }): Outcome {
    if (cut.writing < 0) {
      assert.equal(index, cut.previous, 'killed between saves, the last save must load');
      return 'between';
    }
    return index === cut.writing ? 'new' : 'old';
  }

  it('single-file and sharded saves over single-file and sharded checkpoints: old or new, never neither or a mix', async () => {
    const next = rng('crash-layouts');
    const states = [await makeState(ctx.e, await tmpDir(ctx.root, 'A'), next), await makeState(ctx.e, await tmpDir(ctx.root, 'B'), next)];
    const layoutName = (shard: boolean): string => (shard ? 'sharded' : 'single file');
    for (const shards of [[false, false], [true, true], [false, true]] as const) {
      const check = async (dir: string, cut: { writing: number; previous: number }): Promise<Outcome> => {
        const { index, model } = await loadedState(dir, states);
        // The next save clears what the killed one left (temporaries, unlisted shards, its lock).
        await model.save(dir);
        model.dispose();
        assert.deepEqual((await fsp.readdir(dir)).sort(), ['config.json', 'model.safetensors']);
        return outcomeOf(index, cut);
      };
      const spec = (dir: string): ChildSpec => ({
        dir, states: states.map((s, i) => ({ from: s.dir, ...(shards[i] ? { maxShardBytes: SHARD_BYTES } : {}) })),
      });
      const label = (w: number, p: number): string => `${layoutName(shards[w]!)} over ${layoutName(shards[p]!)}`;
      await crashTrials(spec, [...new Set([label(1, 0), label(0, 1)])], check, label);
    }
  });

  it('a save that changes the config (and the shapes) leaves the old or the new model, config and weights together', async () => {
    const next = rng('crash-config');
    const states = [
      await makeState(ctx.e, await tmpDir(ctx.root, 'A'), next, { intermediate: 24 }),
      await makeState(ctx.e, await tmpDir(ctx.root, 'B'), next, { intermediate: 32 }),
    ];
    let recovered = 0;
    const check = async (dir: string, cut: { writing: number; previous: number }): Promise<Outcome> => {
      const warnings: string[] = [];
      const { index, model } = await loadedState(dir, states, warnings);
      model.dispose();
      if (warnings.some((w) => /config the weights were saved with/.test(w))) recovered += 1;
      return outcomeOf(index, cut);
    };
    const spec = (dir: string): ChildSpec => ({ dir, states: states.map((s) => ({ from: s.dir })) });
    await crashTrials(spec, ['config change (MLP 24 ↔ 32 wide)'], check, () => 'config change (MLP 24 ↔ 32 wide)');
    console.log(`      (${recovered} of them loaded the new weights with the config stored beside them, config.json still being the old one)`);
  });

  it('a model + optimizer pair loads as a pair, or the mismatch is refused with R1VError(IO)', async () => {
    const next = rng('crash-pair');
    const states = [
      await makeState(ctx.e, await tmpDir(ctx.root, 'A'), next, { optimizer: true }),
      await makeState(ctx.e, await tmpDir(ctx.root, 'B'), next, { optimizer: true }),
    ];
    const check = async (dir: string, cut: { writing: number; previous: number }): Promise<Outcome> => {
      const { index, model } = await loadedState(dir, states);
      const opt = new AdamW(model);
      try {
        await opt.load(dir);
      } catch (error) {
        assert.ok(error instanceof R1VError && error.code === 'IO', String(error));
        assert.match(error.message, /optimizer\.safetensors/);
        assert.match(error.message, /model\.safetensors/);
        return 'refused';
      } finally {
        opt.dispose();
        model.dispose();
      }
      const saved = await optimizerTensors(dir);
      assert.ok(sameValues(saved, states[index]!.optimizer!), 'the optimizer loaded beside model state ' + index + ' is another state\'s');
      return outcomeOf(index, cut);
    };
    const spec = (dir: string): ChildSpec => ({ dir, states: states.map((s) => ({ from: s.dir, optimizer: true })) });
    const counts = await crashTrials(spec, ['model + optimizer pair'], check, () => 'model + optimizer pair');
    const refused = [...counts.values()].reduce((s, c) => s + c.refused, 0);
    console.log(`      (refused: the kill fell between the model's save and its optimizer's; ${refused} in all)`);
  });
});

describe('concurrent saves into one directory', function () {
  this.timeout(120_000);
  const ctx = scratch('concurrent');

  it('two saves at once in one process: one whole checkpoint loads, the other save is refused with R1VError(IO) naming the directory', async () => {
    const next = rng('concurrent-promise-all');
    const states = [await makeState(ctx.e, await tmpDir(ctx.root, 'A'), next), await makeState(ctx.e, await tmpDir(ctx.root, 'B'), next, { intermediate: 32 })];
    using a = await VisionLanguageModel.load(ctx.e, states[0]!.dir, quiet);
    using b = await VisionLanguageModel.load(ctx.e, states[1]!.dir, quiet);
    for (const shard of [undefined, SHARD_BYTES]) {
      const dir = await tmpDir(ctx.root, 'both');
      const options = shard ? { maxShardBytes: shard } : {};
      const results = await Promise.allSettled([a.save(dir, options), b.save(dir, options)]);
      const done = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      for (const r of results) {
        if (r.status === 'rejected') {
          assert.ok(r.reason instanceof R1VError && r.reason.code === 'IO', String(r.reason));
          assert.ok(r.reason.message.includes(dir), r.reason.message);
        }
      }
      assert.equal(done.length, 1, 'one save goes through, the other is refused');
      using loaded = await VisionLanguageModel.load(ctx.e, dir, quiet);
      assert.equal(whichState(await valuesOf(loaded), states), done[0]);
      // The lock is gone after the saves: the next save goes through.
      await b.save(dir, options);
      using again = await VisionLanguageModel.load(ctx.e, dir, quiet);
      assert.equal(whichState(await valuesOf(again), states), 1);
    }
  });

  it('two processes saving into one directory: every save goes through or is refused, and one whole state loads', async () => {
    const next = rng('concurrent-processes');
    const states = [await makeState(ctx.e, await tmpDir(ctx.root, 'A'), next), await makeState(ctx.e, await tmpDir(ctx.root, 'B'), next, { intermediate: 32 })];
    const dir = await tmpDir(ctx.root, 'race');
    const startAt = Date.now() + 3_000;  // both children loaded by then, saving at the same moment
    const outputs = await Promise.all(states.map((s, i) => runChild({ dir, states: [{ from: s.dir, ...(i ? { maxShardBytes: SHARD_BYTES } : {}) }], count: 25, startAt })));
    let saved = 0, refused = 0;
    for (const lines of outputs) {
      for (const line of lines) {
        if (line === 'saved') saved++;
        else if (line.startsWith('refused ')) {
          refused++;
          assert.ok(line.includes(dir), line);
        } else assert.fail(`unexpected child output: ${line}`);
      }
    }
    console.log(`      2 × 25 saves: ${saved} went through, ${refused} refused`);
    assert.ok(saved >= 1);
    using loaded = await VisionLanguageModel.load(ctx.e, dir, quiet);
    assert.ok(whichState(await valuesOf(loaded), states) >= 0, 'the directory loads as one whole state');
  });
});
