// What a checkpoint may hold: finite weights (unless asked), a valid optimizer state that
// belongs to the model files beside it (the pair id), the config the weights were saved with
// (an interrupted save's config.json is recognised; a hand edit is honoured), the
// image-context token id; problem lists stay short; a stale save lock is taken over.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  AdamW, R1VError, SafetensorsFile, VisionLanguageModel, writeCheckpoint, writeSafetensors,
  type SafetensorsWriteTensor,
} from '../lib/index.js';
import {
  makeState, optimizerTensors, quiet, qwenConfig, randomize, sameValues, scratch, trainOneStep, valuesOf, vlmConfigWithoutImageToken,
} from './fixtures/checkpoint-states.js';
import { expectR1VRejection, rng } from './helpers.js';

/** Rewrites dir/optimizer.safetensors with `edit` applied to its tensors and metadata. */
async function editOptimizer(dir: string, edit: (tensors: Map<string, Float32Array>, metadata: Record<string, string>) => void): Promise<void> {
  const file = path.join(dir, 'optimizer.safetensors');
  const tensors = await optimizerTensors(dir);
  let metadata: Record<string, string>;
  const shapes = new Map<string, readonly number[]>();
  {
    await using f = await SafetensorsFile.open(file);
    metadata = { ...f.metadata };
    for (const name of f.names()) shapes.set(name, f.entry(name).shape);
  }
  edit(tensors, metadata);
  const list: SafetensorsWriteTensor[] = [...tensors].map(([name, data]) => ({ name, dtype: 'F32', shape: shapes.get(name)!, data }));
  await writeSafetensors(file, list, metadata);
}

describe('checkpoint contents', function () {
  this.timeout(60_000);
  const ctx = scratch('contents');
  let dirCount = 0;
  const fresh = async (): Promise<string> => path.join(ctx.root, `d${dirCount++}`);

  it('non-finite weights are refused, naming the tensors (at most 20), unless allowNonFinite', async () => {
    const next = rng('contents-nonfinite');
    using m = VisionLanguageModel.create(ctx.e, qwenConfig(), quiet);
    randomize(m, next);
    const names = m.parameters().map((p) => p.name);
    const poisoned = [names[3]!, names[7]!];
    for (const [k, name] of poisoned.entries()) {
      const v = await m.getParameter(name);
      v[Math.floor(next() * v.length)] = k === 0 ? NaN : -Infinity;
      m.setParameter(name, v);
    }
    const dir = await fresh();
    await m.save(dir);
    await assert.rejects(VisionLanguageModel.load(ctx.e, dir, quiet), (error: unknown) => {
      assert.ok(error instanceof R1VError && error.code === 'IO', String(error));
      for (const name of poisoned) assert.ok(error.message.includes(name), error.message);
      assert.match(error.message, /non-finite/);
      assert.match(error.message, /allowNonFinite/);
      return true;
    });
    using loaded = await VisionLanguageModel.load(ctx.e, dir, { ...quiet, allowNonFinite: true });
    assert.ok(sameValues(await valuesOf(loaded), await valuesOf(m)));
    // Every tensor non-finite: the message names 20 and counts the rest.
    for (const name of names) m.setParameter(name, new Float32Array(m.parameters().find((p) => p.name === name)!.shape.reduce((a, b) => a * b, 1)).fill(Infinity));
    await m.save(dir);
    await expectR1VRejection(VisionLanguageModel.load(ctx.e, dir, quiet), 'IO', new RegExp(`and ${names.length - 20} more`));
  });

  it('a checkpoint with 50,000 unexpected entries fails with a short message that counts them', async () => {
    using m = VisionLanguageModel.create(ctx.e, qwenConfig(), { ...quiet, seed: 3 });
    const dir = await fresh();
    await m.save(dir);
    const tensors: SafetensorsWriteTensor[] = [];
    for (const p of m.parameters()) tensors.push({ name: p.name, dtype: 'F32', shape: p.shape, data: await m.getParameter(p.name) });
    for (let i = 0; i < 50_000; i++) tensors.push({ name: `extra.${i}`, dtype: 'F32', shape: [0], data: new Float32Array(0) });
    await writeCheckpoint(dir, tensors);
    const started = performance.now();
    await assert.rejects(VisionLanguageModel.load(ctx.e, dir, quiet), (error: unknown) => {
      assert.ok(error instanceof R1VError && error.code === 'IO', String(error));
      assert.ok(error.message.length < 3_000, `message of ${error.message.length} characters`);
      assert.match(error.message, /50000 problems/);
      assert.match(error.message, /and 49980 more/);
      return true;
    });
    assert.ok(performance.now() - started < 2_000);
  });

  it('invalid optimizer state is refused: negative or non-finite second moments, non-finite first moments, bad step counts', async () => {
    const next = rng('contents-optimizer');
    const state = await makeState(ctx.e, await fresh(), next, { optimizer: true });
    const [name] = [...state.optimizer!.keys()].filter((k) => k.endsWith('.exp_avg_sq'));
    const param = name!.slice(0, -'.exp_avg_sq'.length);
    const cases: Array<[string, (t: Map<string, Float32Array>, meta: Record<string, string>) => void, RegExp]> = [
      ['negative exp_avg_sq', (t) => { t.get(`${param}.exp_avg_sq`)![1] = -0.5; }, /exp_avg_sq: 1 negative/],
      ['NaN exp_avg_sq', (t) => { t.get(`${param}.exp_avg_sq`)![0] = NaN; }, /exp_avg_sq: 1 non-finite/],
      ['Inf exp_avg', (t) => { t.get(`${param}.exp_avg`)![2] = Infinity; }, /exp_avg: 1 non-finite/],
      ['negative step', (_, meta) => { meta.steps = JSON.stringify({ ...JSON.parse(meta.steps!), [param]: -1 }); }, /bad step count -1/],
      ['fractional step', (_, meta) => { meta.steps = JSON.stringify({ ...JSON.parse(meta.steps!), [param]: 1.5 }); }, /bad step count 1\.5/],
    ];
    using m = await VisionLanguageModel.load(ctx.e, state.dir, quiet);
    for (const [label, edit, pattern] of cases) {
      const dir = await fresh();
      await fsp.cp(state.dir, dir, { recursive: true });
      await editOptimizer(dir, edit);
      const opt = new AdamW(m);
      await assert.rejects(opt.load(dir, quiet), (error: unknown) => {
        assert.ok(error instanceof R1VError && error.code === 'IO', `${label}: ${String(error)}`);
        assert.match(error.message, pattern, label);
        assert.ok(error.message.includes(param), `${label}: ${error.message}`);
        return true;
      });
      opt.dispose();
    }
  });

  it('an optimizer saved with other model weights than the files beside it is refused, naming both files', async () => {
    const next = rng('contents-pair');
    using m = VisionLanguageModel.create(ctx.e, qwenConfig(), quiet);
    randomize(m, next);
    const opt = new AdamW(m, { lr: 1e-2 });
    await trainOneStep(m, opt, next);
    for (const options of [{}, { maxShardBytes: 2_000 }]) {
      const dir = await fresh();
      const modelFile = options.maxShardBytes ? 'model.safetensors.index.json' : 'model.safetensors';
      // Saved together, in either order: the pair loads.
      await opt.save(dir);
      await m.save(dir, options);
      {
        using loaded = await VisionLanguageModel.load(ctx.e, dir, quiet);
        const o = new AdamW(loaded);
        await o.load(dir, quiet);
        o.dispose();
      }
      // One more step saved for the model only: the optimizer on disk belongs to the old weights.
      await trainOneStep(m, opt, next);
      await m.save(dir, options);
      using loaded = await VisionLanguageModel.load(ctx.e, dir, quiet);
      const o = new AdamW(loaded);
      await expectR1VRejection(o.load(dir, quiet), 'IO', new RegExp(`optimizer\\.safetensors[\\s\\S]*${modelFile.replace(/\./g, '\\.')}|${modelFile.replace(/\./g, '\\.')}[\\s\\S]*optimizer\\.safetensors`));
      await opt.save(dir);
      await o.load(dir, quiet);
      o.dispose();
    }
    // Without model files in the directory, the optimizer is checked against the model's current weights.
    const alone = await fresh();
    await opt.save(alone);
    const o = new AdamW(m);
    await o.load(alone, quiet);
    await trainOneStep(m, opt, next);
    await expectR1VRejection(o.load(alone, quiet), 'IO', /optimizer\.safetensors.*current weights/);
    o.dispose();
    opt.dispose();
  });

  it('older files without ids: an optimizer without one loads with a warning; model files without one refuse an optimizer that has one', async () => {
    const next = rng('contents-old-ids');
    const state = await makeState(ctx.e, await fresh(), next, { optimizer: true });
    using m = await VisionLanguageModel.load(ctx.e, state.dir, quiet);
    const older = await fresh();
    await fsp.cp(state.dir, older, { recursive: true });
    await editOptimizer(older, (_, meta) => {
      for (const key of Object.keys(meta)) if (key.startsWith('r1v_')) delete meta[key];
    });
    const warnings: string[] = [];
    const opt = new AdamW(m);
    await opt.load(older, { warn: (w) => warnings.push(w) });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /optimizer\.safetensors.*no record of the model/);
    // Model files written without r1v's metadata (another tool), beside an r1v optimizer.
    const foreign = await fresh();
    await fsp.cp(state.dir, foreign, { recursive: true });
    const tensors: SafetensorsWriteTensor[] = [];
    for (const p of m.parameters()) tensors.push({ name: p.name, dtype: 'F32', shape: p.shape, data: await m.getParameter(p.name) });
    await writeCheckpoint(foreign, tensors, { metadata: { format: 'pt' } });
    await expectR1VRejection(opt.load(foreign, quiet), 'IO', /optimizer\.safetensors[\s\S]*model\.safetensors/);
    opt.dispose();
  });

  it('config.json left behind by an interrupted save is recognised; a hand edit is honoured; a missing one is restored', async () => {
    const next = rng('contents-config');
    const a = await makeState(ctx.e, await fresh(), next, { intermediate: 24 });
    const b = await makeState(ctx.e, await fresh(), next, { intermediate: 32 });
    const dir = await fresh();
    await fsp.cp(a.dir, dir, { recursive: true });
    const oldConfig = await fsp.readFile(path.join(dir, 'config.json'));
    using mb = await VisionLanguageModel.load(ctx.e, b.dir, quiet);
    await mb.save(dir);
    // As if the save had been killed after the weights' commit, before config.json was replaced.
    await fsp.writeFile(path.join(dir, 'config.json'), oldConfig);
    const warnings: string[] = [];
    {
      using m = await VisionLanguageModel.load(ctx.e, dir, { warn: (w) => warnings.push(w) });
      assert.equal(m.config.language.intermediateSize, 32);
      assert.ok(sameValues(await valuesOf(m), b.values));
    }
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /config\.json is the config the last save replaced.*config the weights were saved with/);
    // A hand edit that fits the weights is used as written, without a warning.
    const edited = { ...JSON.parse(oldConfig.toString()), intermediate_size: 32, rope_theta: 5000 };
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(edited));
    warnings.length = 0;
    {
      using m = await VisionLanguageModel.load(ctx.e, dir, { warn: (w) => warnings.push(w) });
      assert.equal(m.config.language.ropeTheta, 5000);
      assert.equal(warnings.length, 0, warnings.join("\n"));
    }
    // One that does not fit is the usual shape error.
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...edited, intermediate_size: 40 }));
    await expectR1VRejection(VisionLanguageModel.load(ctx.e, dir, quiet), 'IO', /the config needs \[40/);
    // No config.json at all: the weights' config, with a warning.
    await fsp.rm(path.join(dir, 'config.json'));
    warnings.length = 0;
    using m = await VisionLanguageModel.load(ctx.e, dir, { warn: (w) => warnings.push(w) });
    assert.equal(m.config.language.intermediateSize, 32);
    assert.match(warnings.join('\n'), /config\.json is missing/);
  });

  it('the saved config.json carries the image-context token id the model was given', async () => {
    const next = rng('contents-img-context');
    const id = 40;
    using m = VisionLanguageModel.create(ctx.e, vlmConfigWithoutImageToken(), { ...quiet, imageContextTokenId: id });
    randomize(m, next);
    const dir = await fresh();
    await m.save(dir);
    const saved = JSON.parse(await fsp.readFile(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(saved.img_context_token_id, id);
    using loaded = await VisionLanguageModel.load(ctx.e, dir, quiet);
    assert.equal(loaded.imageContextTokenId, id);
    const inputIds = Int32Array.from([5, 7, id, id, id, id, 9, 11, 3]);
    const targets = Int32Array.from(inputIds, (_, i) => (i >= 6 && i + 1 < inputIds.length ? inputIds[i + 1]! : -100));
    const pixelValues = Float32Array.from({ length: 3 * 28 * 28 }, () => next() * 2 - 1);
    const batch = { inputIds, targets, cuSeqlens: Int32Array.from([0, inputIds.length]), pixelValues };
    assert.deepEqual((await loaded.forward(batch)).logprobs, (await m.forward(batch)).logprobs);
    // A config that has the id keeps its own.
    using other = VisionLanguageModel.create(ctx.e, { ...vlmConfigWithoutImageToken(), img_context_token_id: 41 }, { ...quiet, imageContextTokenId: id });
    await other.save(dir);
    assert.equal((JSON.parse(await fsp.readFile(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>).img_context_token_id, 41);
  });

  it('a save lock left by a dead process is taken over; one held by a live process refuses the save', async () => {
    const next = rng('contents-lock');
    const state = await makeState(ctx.e, await fresh(), next);
    using m = await VisionLanguageModel.load(ctx.e, state.dir, quiet);
    const dir = await fresh();
    await fsp.mkdir(dir);
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const lock = path.join(dir, '.r1v-save.lock');
    await fsp.writeFile(lock, JSON.stringify({ pid: dead, host: os.hostname(), token: 'x' }));
    await m.save(dir);
    await assert.rejects(fsp.access(lock));
    await fsp.writeFile(lock, JSON.stringify({ pid: process.pid, host: os.hostname(), token: 'y' }));
    await expectR1VRejection(m.save(dir), 'IO', new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*process ${process.pid}`));
    await fsp.rm(lock);
    await m.save(dir);
    using loaded = await VisionLanguageModel.load(ctx.e, dir, quiet);
    assert.ok(sameValues(await valuesOf(loaded), state.values));
  });
});
