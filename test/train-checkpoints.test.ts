import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { AdamW, Engine, R1VError, VisionLanguageModel } from '../lib/index.js';
import { CheckpointStore, type CheckpointStoreOptions } from '../lib/train/checkpoints.js';
import { expectR1VRejection, rng } from './helpers.js';
import { tinyQwen2Config } from './fixtures/tiny-qwen2.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const runs: string[] = [];

async function tmpRun(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'r1v-ckpt-'));
  runs.push(dir);
  return dir;
}

/** n bytes from the test's generator. */
function randomBytesOf(n: number, next: () => number): Buffer {
  const words = new Uint32Array(Math.ceil(n / 4));
  for (let i = 0; i < words.length; i++) words[i] = Math.floor(next() * 2 ** 32);
  return Buffer.from(words.buffer, 0, n);
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const escape = (s: string): RegExp => new RegExp(s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
/** The checkpoint directory name, spelled out here independently of the store. */
const nameOf = (step: number): string => `step-${step < 1e6 ? `00000${step}`.slice(-6) : String(step)}`;

/** Writes `files` (relative path → bytes) under dir, creating subdirectories. */
async function writeFiles(dir: string, files: Map<string, Buffer>): Promise<void> {
  for (const [rel, data] of files) {
    await fsp.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fsp.writeFile(path.join(dir, rel), data);
  }
}

function checkpointFiles(next: () => number, step: number, mb: number): Map<string, Buffer> {
  return new Map([
    ['config.json', Buffer.from(JSON.stringify({ step, r: next() }))],
    ['model.safetensors', randomBytesOf(Math.floor((0.5 + next()) * mb * (1 << 20)), next)],
    ['critic/optimizer.safetensors', randomBytesOf(1 + Math.floor(next() * mb * (1 << 19)), next)],
    ['critic/deeper/trainer_state.json', Buffer.from(JSON.stringify({ step }))],
    ['empty.bin', Buffer.alloc(0)],
  ]);
}

function noWarnings(): CheckpointStoreOptions['warn'] {
  return (m: string) => assert.fail(`unexpected warning: ${m}`);
}

async function tempEntries(run: string): Promise<string[]> {
  return (await fsp.readdir(path.join(run, 'checkpoints'))).filter((n) => n.startsWith('.'));
}

describe('CheckpointStore (lib/train/checkpoints)', function () {
  this.timeout(120_000);

  after(async () => {
    for (const dir of runs) await fsp.rm(dir, { recursive: true, force: true });
  });

  it('save writes the files and a manifest of their sizes and sha256; list, latest, best; reopen', async () => {
    const next = rng('ckpt-save');
    const run = await tmpRun();
    const store = await CheckpointStore.open(run, { keepLast: 0, selectBy: 'val', mode: 'max', warn: noWarnings() });
    assert.equal(store.list().length, 0);
    assert.equal(await store.latest(), undefined);
    const saved: Array<{ step: number; val: number; files: Map<string, Buffer> }> = [];
    let step = 0;
    for (let i = 0; i < 4; i++, step += 1 + Math.floor(next() * 300_000)) {
      const files = checkpointFiles(next, step, 3);
      const metrics = { val: next(), loss: 5 * next() };
      const info = await store.save(step, (dir) => writeFiles(dir, files), metrics);
      saved.push({ step, val: metrics.val, files });
      assert.equal(info.step, step);
      assert.equal(info.dir, path.join(run, 'checkpoints', nameOf(step)));
      assert.deepEqual(info.metrics, metrics);
      const manifest = JSON.parse(await fsp.readFile(path.join(info.dir, 'manifest.json'), 'utf8'));
      assert.equal(manifest.format, 'r1v-checkpoint');
      assert.equal(manifest.version, 1);
      assert.equal(manifest.step, step);
      assert.equal(manifest.createdAt, info.createdAt);
      assert.ok(Math.abs(Date.parse(manifest.createdAt) - Date.now()) < 60_000);
      assert.deepEqual(Object.keys(manifest.files), [...files.keys()].sort());
      for (const [rel, data] of files) {
        assert.deepEqual(manifest.files[rel], { size: data.length, sha256: sha256(data) }, rel);
        assert.deepEqual(await fsp.readFile(path.join(info.dir, rel)), data);
      }
      assert.equal((await store.latest())?.step, step);
      assert.deepEqual(JSON.parse(await fsp.readFile(path.join(run, 'checkpoints', 'latest.json'), 'utf8')), { step, dir: nameOf(step) });
      assert.deepEqual(await tempEntries(run), []);
    }
    const bestStep = saved.reduce((a, b) => (b.val > a.val ? b : a)).step;
    assert.deepEqual(store.list().map((c) => c.step), saved.map((s) => s.step));
    assert.equal(store.best()?.step, bestStep);
    const reopened = await CheckpointStore.open(run, { keepLast: 0, selectBy: 'val', mode: 'min', warn: noWarnings() });
    assert.deepEqual(reopened.list(), store.list());
    assert.equal(reopened.best()?.step, saved.reduce((a, b) => (b.val < a.val ? b : a)).step);
    assert.deepEqual(await reopened.latest(), await store.latest());
    assert.equal((await reopened.verify(path.join(run, 'checkpoints', nameOf(saved[0]!.step)))).step, saved[0]!.step);
  });

  it('names steps with 6 digits or more, ignores other names, keeps non-finite metrics unranked', async () => {
    const run = await tmpRun();
    const cks = path.join(run, 'checkpoints');
    await fsp.mkdir(path.join(cks, 'step-0000012'), { recursive: true });  // not canonical: never a checkpoint
    await fsp.mkdir(path.join(cks, 'notes'));
    const store = await CheckpointStore.open(run, { keepLast: 0, selectBy: 'loss', mode: 'min', warn: noWarnings() });
    const one = (dir: string): Promise<void> => fsp.writeFile(path.join(dir, 'a'), 'x');
    await store.save(0, one, { loss: NaN, up: Infinity, down: -Infinity });
    await store.save(1_234_567, one, { loss: -Infinity });
    assert.deepEqual((await fsp.readdir(cks)).sort(), ['latest.json', 'notes', 'step-000000', 'step-0000012', 'step-1234567']);
    const metrics = (await CheckpointStore.open(run, { warn: noWarnings() })).list()[0]!.metrics;
    assert.ok(Number.isNaN(metrics.loss) && metrics.up === Infinity && metrics.down === -Infinity);
    assert.equal(store.best(), undefined);
  });

  it('retention keeps the newest keepLast, the best keepBest by selectBy/mode and the latest', async () => {
    const next = rng('ckpt-retention');
    for (let config = 0; config < 8; config++) {
      const keepLast = Math.floor(next() * 4);
      const keepBest = Math.floor(next() * 3);
      const selectBy = next() < 0.8 ? 'score' : undefined;
      const mode = next() < 0.5 ? 'max' as const : 'min' as const;
      const run = await tmpRun();
      const store = await CheckpointStore.open(run, { keepLast, keepBest, mode, warn: noWarnings(), ...(selectBy ? { selectBy } : {}) });
      let kept: Array<{ step: number; score: number | undefined }> = [];
      let maxStep = 0;
      const label = `keepLast ${keepLast} keepBest ${keepBest} selectBy ${selectBy} ${mode}`;
      for (let i = 0; i < 12; i++) {
        const u = next();
        // mostly new higher steps; sometimes a lower one, sometimes the same step again
        const step = u < 0.15 && kept.length > 0 ? kept[Math.floor(next() * kept.length)]!.step
          : u < 0.3 ? Math.floor(next() * maxStep) : (maxStep += 1 + Math.floor(next() * 50));
        const v = next();
        const score = v < 0.15 ? undefined : v < 0.25 ? [NaN, Infinity, -Infinity][Math.floor(next() * 3)]! : Math.floor(next() * 5) / 4;
        await store.save(step, (dir) => fsp.writeFile(path.join(dir, 'w.bin'), randomBytesOf(64, next)), score === undefined ? {} : { score });
        kept = [...kept.filter((c) => c.step !== step), { step, score }];
        // better(a, b): a ranks above b (finite scores only; ties go to the later step)
        const finite = kept.filter((c) => Number.isFinite(c.score));
        const better = (a: typeof kept[0], b: typeof kept[0]): boolean =>
          (mode === 'max' ? a.score! > b.score! : a.score! < b.score!) || (a.score === b.score && a.step > b.step);
        if (keepLast > 0) {
          kept = kept.filter((c) => c.step === step
            || kept.filter((d) => d.step > c.step).length < keepLast
            || (selectBy !== undefined && Number.isFinite(c.score) && finite.filter((d) => better(d, c)).length < keepBest));
        }
        const expected = kept.map((c) => c.step).sort((a, b) => a - b);
        assert.deepEqual(store.list().map((c) => c.step), expected, label);
        const onDisk = (await fsp.readdir(path.join(run, 'checkpoints'))).filter((n) => n.startsWith('step-')).sort();
        assert.deepEqual(onDisk, expected.map(nameOf), label);
        const candidates = kept.filter((c) => Number.isFinite(c.score));
        const best = selectBy === undefined ? undefined : candidates.find((c) => candidates.every((d) => d === c || better(c, d)));
        assert.equal(store.best()?.step, best?.step, label);
        assert.equal((await store.latest())?.step, step, label);
      }
    }
  });

  describe('verify and latest() refuse a damaged checkpoint', () => {
    const outside = async (run: string, data: Buffer): Promise<string> => {
      const file = path.join(run, `outside-${Math.floor(Math.random() * 1e9)}`);
      await fsp.writeFile(file, data);
      return file;
    };
    const editManifest = async (dir: string, edit: (m: { files: Record<string, unknown>; step: number }) => void): Promise<void> => {
      const file = path.join(dir, 'manifest.json');
      const m = JSON.parse(await fsp.readFile(file, 'utf8'));
      edit(m);
      await fsp.writeFile(file, JSON.stringify(m));
    };
    const cases: Array<[string, (dir: string, run: string, next: () => number) => Promise<void>, RegExp]> = [
      ['a truncated file', async (dir, _r, next) => {
        const f = path.join(dir, 'model.safetensors');
        const { size } = await fsp.stat(f);
        await fsp.truncate(f, size - 1 - Math.floor(next() * 1000));
      }, /model\.safetensors: \d+ bytes, manifest says/],
      ['a flipped byte', async (dir, _r, next) => {
        const f = path.join(dir, 'critic/optimizer.safetensors');
        const data = await fsp.readFile(f);
        const at = Math.floor(next() * data.length);
        data[at] = data[at]! ^ (1 + Math.floor(next() * 255));
        await fsp.writeFile(f, data);
      }, /critic\/optimizer\.safetensors: sha256 [0-9a-f]{64}, manifest says/],
      ['an extra file', (dir) => fsp.writeFile(path.join(dir, 'critic/extra.bin'), 'x'), /critic\/extra\.bin: not listed in manifest\.json/],
      ['a missing file', (dir) => fsp.rm(path.join(dir, 'critic/deeper/trainer_state.json')), /critic\/deeper\/trainer_state\.json: missing/],
      ['a manifest path with ..', async (dir, run) => {
        const data = Buffer.from('escaped');
        await fsp.writeFile(path.join(run, 'checkpoints', 'x'), data);
        await editManifest(dir, (m) => { m.files['../x'] = { size: data.length, sha256: sha256(data) }; });
      }, /"\.\.\/x", which has an empty, "\." or "\.\." segment/],
      ['an absolute manifest path', async (dir, run) => {
        const data = Buffer.from('absolute');
        const file = await outside(run, data);
        await editManifest(dir, (m) => { m.files[file] = { size: data.length, sha256: sha256(data) }; });
      }, /outside-\d+", which is absolute/],
      ['a file replaced by a symlink to an identical file outside', async (dir, run) => {
        const f = path.join(dir, 'model.safetensors');
        const target = await outside(run, await fsp.readFile(f));
        await fsp.rm(f);
        await fsp.symlink(target, f);
      }, /model\.safetensors is a symbolic link/],
      ['a directory replaced by a symlink to an identical copy outside', async (dir, run) => {
        const copy = path.join(run, 'critic-copy');
        await fsp.cp(path.join(dir, 'critic'), copy, { recursive: true });
        await fsp.rm(path.join(dir, 'critic'), { recursive: true });
        await fsp.symlink(copy, path.join(dir, 'critic'));
      }, /critic is a symbolic link/],
      ['a corrupt manifest', (dir) => fsp.writeFile(path.join(dir, 'manifest.json'), '{"format": "r1v-checkpoint", '), /manifest\.json is not valid JSON/],
      ['a missing manifest', (dir) => fsp.rm(path.join(dir, 'manifest.json')), /manifest\.json is missing/],
      ['a manifest of another step', (dir) => editManifest(dir, (m) => { m.step += 1; }), /manifest\.json records step 3, the directory is step-000002/],
    ];
    for (const [what, damage, pattern] of cases) {
      it(what, async () => {
        const next = rng(`ckpt-damage-${what}`);
        const run = await tmpRun();
        const warnings: string[] = [];
        const store = await CheckpointStore.open(run, { keepLast: 0, warn: (m) => warnings.push(m) });
        for (const step of [1, 2]) await store.save(step, (dir) => writeFiles(dir, checkpointFiles(next, step, 1)));
        assert.equal(warnings.length, 0, warnings.join('\n'));
        const dir = path.join(run, 'checkpoints', nameOf(2));
        await damage(dir, run, next);
        await expectR1VRejection(store.verify(dir), 'IO', pattern);
        await expectR1VRejection(store.verify(dir), 'IO', escape(dir));
        // the store that saved it and a fresh one fall back to step 1 alike, and say why
        for (const s of [store, await CheckpointStore.open(run, { keepLast: 0, warn: (m) => warnings.push(m) })]) {
          warnings.length = 0;
          assert.equal((await s.latest())?.step, 1);
          assert.ok(warnings.some((w) => w.includes(nameOf(2)) && pattern.test(w)), warnings.join('\n'));
          assert.deepEqual(s.list().map((c) => c.step), [1]);
        }
        await store.verify(path.join(run, 'checkpoints', nameOf(1)));
      });
    }
  });

  it('a failing writer leaves nothing behind; R1VError passes through, other errors become IO naming the step', async () => {
    const run = await tmpRun();
    const store = await CheckpointStore.open(run, { warn: noWarnings() });
    await store.save(3, (dir) => fsp.writeFile(path.join(dir, 'a'), 'a'));
    const own = new R1VError('CONFIG', 'the writer says no');
    await assert.rejects(store.save(4, async (dir) => { await fsp.writeFile(path.join(dir, 'a'), 'a'); throw own; }), (e) => e === own);
    await expectR1VRejection(store.save(5, async () => { throw new TypeError('boom'); }), 'IO', /step 5.*write\(.*\) failed: boom/);
    await expectR1VRejection(store.save(6, () => Promise.reject('a string')), 'IO', /step 6.*a string/);
    await expectR1VRejection(store.save(7, (dir) => fsp.symlink('/etc/passwd', path.join(dir, 'link'))), 'IO', /step 7.*link is a symbolic link/);
    await expectR1VRejection(store.save(8, (dir) => fsp.writeFile(path.join(dir, 'manifest.json'), '{}')), 'IO', /manifest\.json was written by the checkpoint's writer/);
    if (spawnSync('mkfifo', ['--help']).status === 0) {
      await expectR1VRejection(store.save(9, async (dir) => {
        await fsp.mkdir(path.join(dir, 'sub'));
        spawnSync('mkfifo', [path.join(dir, 'sub', 'pipe')]);
      }), 'IO', /sub\/pipe is a FIFO/);
    }
    assert.deepEqual(await tempEntries(run), []);
    assert.deepEqual(store.list().map((c) => c.step), [3]);
    assert.equal((await store.latest())?.step, 3);
  });

  it('checks its arguments', async () => {
    const run = await tmpRun();
    const store = await CheckpointStore.open(run);
    const write = (): Promise<void> => Promise.resolve();
    for (const step of [-1, 2.5, NaN, '3']) await expectR1VRejection(store.save(step as number, write), 'ARGUMENT', /save: step must be an integer ≥ 0/);
    await expectR1VRejection(store.save(1, 'w' as never), 'ARGUMENT', /write must be a function/);
    await expectR1VRejection(store.save(1, write, { acc: '0.5' } as never), 'ARGUMENT', /metrics\.acc must be a number/);
    await expectR1VRejection(store.verify(3 as never), 'ARGUMENT', /verify: dir must be a string/);
    await expectR1VRejection(CheckpointStore.open(run, { keep: 2 } as never), 'ARGUMENT', /unknown option 'keep'/);
    await expectR1VRejection(CheckpointStore.open(run, { keepLast: -1 }), 'ARGUMENT', /keepLast/);
    await expectR1VRejection(CheckpointStore.open(run, { keepBest: 1.5 }), 'ARGUMENT', /keepBest/);
    await expectR1VRejection(CheckpointStore.open(run, { mode: 'avg' as never }), 'ARGUMENT', /mode must be one of 'max', 'min'/);
    await expectR1VRejection(CheckpointStore.open(run, { selectBy: '' }), 'ARGUMENT', /selectBy/);
    await expectR1VRejection(CheckpointStore.open(5 as never), 'ARGUMENT', /runDir must be a string/);
    await expectR1VRejection(CheckpointStore.open(''), 'ARGUMENT', /runDir must be a directory path/);
    const file = path.join(run, 'a-file');
    await fsp.writeFile(file, 'x');
    await expectR1VRejection(CheckpointStore.open(file), 'IO', /cannot prepare/);
  });

  it('open() removes leftover temporary directories and puts back a checkpoint caught mid-replacement', async () => {
    const next = rng('ckpt-recover');
    const run = await tmpRun();
    const cks = path.join(run, 'checkpoints');
    let store = await CheckpointStore.open(run, { keepLast: 0, warn: noWarnings() });
    const first = checkpointFiles(next, 5, 0.2);
    await store.save(5, (dir) => writeFiles(dir, first));
    await store.save(6, (dir) => writeFiles(dir, checkpointFiles(next, 6, 0.2)));
    // a crash between the two renames of a replacement: the old step-000005 aside, the new one sealed
    await fsp.rename(path.join(cks, 'step-000005'), path.join(cks, '.tmp-old-step-000005-0a1b2c'));
    await fsp.cp(path.join(cks, 'step-000006'), path.join(cks, '.tmp-step-000005-3d4e5f'), { recursive: true });
    await fsp.mkdir(path.join(cks, '.tmp-del-step-000001-77aa'));
    await fsp.writeFile(path.join(cks, '.tmp-latest.json-99bb'), '{}');
    store = await CheckpointStore.open(run, { keepLast: 0, warn: noWarnings() });
    assert.deepEqual(await tempEntries(run), []);
    assert.deepEqual(store.list().map((c) => c.step), [5, 6]);
    await store.verify(path.join(cks, 'step-000005'));
    assert.deepEqual(await fsp.readFile(path.join(cks, 'step-000005', 'model.safetensors')), first.get('model.safetensors'));
    // the rename of the new one happened: the old one aside is dropped
    await fsp.cp(path.join(cks, 'step-000006'), path.join(cks, '.tmp-old-step-000006-1234'), { recursive: true });
    await fsp.writeFile(path.join(cks, '.tmp-old-step-000006-1234', 'trainer_state.json'), 'old');
    store = await CheckpointStore.open(run, { keepLast: 0, warn: noWarnings() });
    assert.deepEqual(await tempEntries(run), []);
    await store.verify(path.join(cks, 'step-000006'));
    // saving a step again replaces it; concurrent saves run in call order
    const again = checkpointFiles(next, 5, 0.2);
    const [a, b] = await Promise.all([store.save(5, (dir) => writeFiles(dir, again)), store.save(7, (dir) => fsp.writeFile(path.join(dir, 'x'), 'x'))]);
    assert.deepEqual([a.step, b.step, (await store.latest())?.step], [5, 7, 7]);
    assert.deepEqual(await fsp.readFile(path.join(cks, 'step-000005', 'model.safetensors')), again.get('model.safetensors'));
    assert.deepEqual(await tempEntries(run), []);
  });

  it('SIGKILL at a random moment of back-to-back saves leaves a complete latest checkpoint', async function () {
    const next = rng('ckpt-crash');
    const run = await tmpRun();
    const cks = path.join(run, 'checkpoints');
    const seed = Math.floor(next() * 1000);
    const fixture = path.join(repoRoot, 'test', 'fixtures', 'checkpoint-saver.ts');
    const child = (saves: number) => spawn(process.execPath, ['--import', 'tsx', fixture, run, String(seed), String(saves)], {
      cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const engine = Engine.create({ device: 'cpu' });
    const reference = VisionLanguageModel.create(engine, tinyQwen2Config, { seed, warn: () => undefined });
    const nonceOf = async (dir: string): Promise<string | undefined> =>
      fsp.readFile(path.join(dir, 'trainer_state.json'), 'utf8').then((t) => JSON.parse(t).nonce, () => undefined);
    const landed = new Map<string, number>();
    let latestBefore = -1;
    const trials = 24;
    for (let trial = -1; trial < trials; trial++) {
      // trial -1 runs one save to completion, so that every kill has a checkpoint before it
      const p = child(trial < 0 ? 1 : 0);
      let out = '';
      let stderr = '';
      p.stderr.on('data', (d) => { stderr += d; });
      const exited = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)));
      await new Promise<void>((resolve) => p.stdout.on('data', (d) => {
        out += d;
        if (out.includes('ready\n')) resolve();
      }).on('end', () => resolve()));
      if (trial >= 0) {
        await new Promise((r) => setTimeout(r, next() < 0.1 ? 0 : next() * 600));
        p.kill('SIGKILL');
      }
      const code = await exited;
      assert.ok(trial < 0 ? code === 0 : code === null, `child exited with ${code}: ${stderr}`);
      const lines = out.split('\n').filter((l) => l !== '').map((l) => l.split(' '));
      const begun = lines.filter((l) => l[0] === 'begin').at(-1);
      const done = lines.filter((l) => l[0] === 'done').at(-1);
      const written = lines.filter((l) => l[0] === 'written').at(-1);
      // where the kill landed, from what is on disk before open() cleans up
      const names = await fsp.readdir(cks);
      const pointer = JSON.parse(await fsp.readFile(path.join(cks, 'latest.json'), 'utf8')).step as number;
      const installed = begun !== undefined && await nonceOf(path.join(cks, nameOf(Number(begun[1])))) === begun[2];
      const tmpSave = names.find((n) => n.startsWith('.tmp-step-'));
      const where = trial < 0 ? 'setup' : begun === undefined ? 'before the first save'
        : done?.[2] === begun[2] ? 'between saves'
        : names.some((n) => n.startsWith('.tmp-del-')) ? 'retention'
        : names.some((n) => n.startsWith('.tmp-old-')) ? (installed ? 'installed, old one not yet removed' : 'old one moved aside')
        : tmpSave !== undefined ? ((await fsp.readdir(path.join(cks, tmpSave))).includes('manifest.json') ? 'sealed, before the rename'
          : written?.[2] === begun[2] ? 'fsync and hashing' : 'in write()')
        : installed ? (pointer === Number(begun[1]) ? 'after latest.json' : 'installed, before latest.json')
        : 'before the temporary directory';
      landed.set(where, (landed.get(where) ?? 0) + 1);

      const store = await CheckpointStore.open(run, { keepLast: 2, keepBest: 1, selectBy: 'score', warn: (m) => assert.fail(m) });
      assert.deepEqual(await tempEntries(run), [], where);
      const latest = await store.latest();
      assert.ok(latest, `no checkpoint after a kill (${where})`);
      assert.match(path.basename(latest.dir), /^step-\d{6}$/);
      for (const c of store.list()) await store.verify(c.dir);
      const lastDone = done === undefined ? latestBefore : Number(done[1]);
      assert.ok(latest.step >= lastDone, `latest ${latest.step} is older than ${lastDone} (${where})`);
      assert.ok(latest.step <= Math.max(lastDone, Number(begun?.[1] ?? -1)), `latest ${latest.step} was never begun (${where})`);
      if (where === 'between saves' || where === 'after latest.json') assert.equal(await nonceOf(latest.dir), begun![2], where);
      const model = await VisionLanguageModel.load(engine, latest.dir, { warn: () => undefined });
      for (const p of reference.parameters()) assert.deepEqual(await model.getParameter(p.name), await reference.getParameter(p.name), p.name);
      const optimizer = new AdamW(model);
      await optimizer.load(latest.dir);
      optimizer.dispose();
      model.dispose();
      latestBefore = latest.step;
    }
    console.log(`      kills landed: ${[...landed].filter(([w]) => w !== 'setup').map(([w, n]) => `${w} ${n}`).join(', ')}`);
    reference.dispose();
    engine.dispose();
  });
});
