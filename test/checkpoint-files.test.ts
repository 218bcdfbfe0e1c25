// What loading and saving a checkpoint directory touch: loading reads only regular files inside
// the directory (symlinks that leave it, FIFOs: R1VError('IO') at once, nothing blocked);
// writers never follow a planted symlink; sizes and headers a host cannot hold, or that would
// take long to parse, fail fast with short typed errors.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants as bufferConstants } from 'node:buffer';
import { closeSync, constants, openSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  AdamW, Engine, openCheckpoint, R1VError, SafetensorsFile, toFloat32, VisionLanguageModel, writeCheckpoint, writeSafetensors,
  type SafetensorsTensor,
} from '../lib/index.js';
import { type KnownState, makeState, quiet, qwenConfig, sameValues, scratch, valuesOf } from './fixtures/checkpoint-states.js';
import { expectR1VError, expectR1VRejection, rng } from './helpers.js';

/** p, or a rejection when it has not settled within ms (a load that hangs fails instead of stalling the run). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** The file name of the first shard the index of a sharded checkpoint lists. */
async function firstShard(dir: string): Promise<string> {
  const index = JSON.parse(await fsp.readFile(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
  return Object.values(index.weight_map)[0]!;
}

/** Loads the model of dir, then (for optimizer.safetensors) its optimizer. */
async function loadPair(e: Engine, dir: string): Promise<void> {
  using m = await VisionLanguageModel.load(e, dir, quiet);
  const opt = new AdamW(m);
  try {
    await opt.load(dir, quiet);
  } finally {
    opt.dispose();
  }
}

describe('checkpoint files: only regular files inside the directory are read', function () {
  this.timeout(60_000);
  const ctx = scratch('files');
  let single: KnownState;
  let sharded: string;
  const fifos: string[] = [];
  before(async () => {
    single = await makeState(ctx.e, path.join(ctx.root, 'single'), rng('files-state'), { optimizer: true });
    sharded = path.join(ctx.root, 'sharded');
    await fsp.cp(single.dir, sharded, { recursive: true });
    using m = await VisionLanguageModel.load(ctx.e, single.dir, quiet);
    await m.save(sharded, { maxShardBytes: 2_000 });
  });
  after(() => {
    // Releases any reader a FIFO still holds (opening the write end wakes a blocked open).
    for (const fifo of fifos) {
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // no reader waiting
      }
    }
  });

  /** A copy of `from` in which `entry` (a name, or a function of the copy giving one) is replaced by `plant(path)`. */
  async function withPlanted(from: string, entry: string | ((dir: string) => Promise<string>), plant: (file: string, dir: string) => Promise<void>): Promise<{ dir: string; name: string }> {
    const dir = await fsp.mkdtemp(path.join(ctx.root, 'planted-'));
    await fsp.cp(from, dir, { recursive: true });
    const name = typeof entry === 'string' ? entry : await entry(dir);
    await plant(path.join(dir, name), dir);
    return { dir, name };
  }

  const targets: Array<{ label: string; from: () => string; entry: string | ((dir: string) => Promise<string>) }> = [
    { label: 'model.safetensors', from: () => single.dir, entry: 'model.safetensors' },
    { label: 'a shard', from: () => sharded, entry: firstShard },
    { label: 'config.json', from: () => single.dir, entry: 'config.json' },
    { label: 'the index', from: () => sharded, entry: 'model.safetensors.index.json' },
    { label: 'optimizer.safetensors', from: () => single.dir, entry: 'optimizer.safetensors' },
  ];

  for (const t of targets) {
    it(`${t.label} as a symlink to a file outside the directory → R1VError(IO); a symlink inside still loads`, async () => {
      const outside = await fsp.mkdtemp(path.join(ctx.root, 'elsewhere-'));
      const moveOut = async (file: string): Promise<void> => {
        const target = path.join(outside, path.basename(file));
        await fsp.rename(file, target);
        await fsp.symlink(target, file);
      };
      const { dir, name } = await withPlanted(t.from(), t.entry, moveOut);
      await expectR1VRejection(loadPair(ctx.e, dir), 'IO', new RegExp(`${name.replace(/\./g, '\\.')}.*outside`));
      if (t.label === 'a shard') {
        const { dir: passwd } = await withPlanted(t.from(), t.entry, async (file) => {
          await fsp.rm(file);
          await fsp.symlink('/etc/passwd', file);
        });
        await expectR1VRejection(loadPair(ctx.e, passwd), 'IO', /outside/);
      }
      const moveInside = async (file: string, d: string): Promise<void> => {
        await fsp.mkdir(path.join(d, 'blobs'), { recursive: true });
        await fsp.rename(file, path.join(d, 'blobs', path.basename(file)));
        await fsp.symlink(path.join('blobs', path.basename(file)), file);
      };
      const { dir: inside } = await withPlanted(t.from(), t.entry, moveInside);
      await loadPair(ctx.e, inside);
      using m = await VisionLanguageModel.load(ctx.e, inside, quiet);
      assert.ok(sameValues(await valuesOf(m), single.values));
    });
  }

  it('FIFOs as model.safetensors, a shard, config.json, the index or optimizer.safetensors fail at once and block nothing', async () => {
    for (let round = 0; round < 2; round++) {
      for (const t of targets) {
        const { dir } = await withPlanted(t.from(), t.entry, async (file) => {
          await fsp.rm(file);
          execFileSync('mkfifo', [file]);
          fifos.push(file);
        });
        const started = performance.now();
        await expectR1VRejection(within(loadPair(ctx.e, dir), 3_000, `loading with a FIFO as ${t.label}`), 'IO', /not a regular file/);
        assert.ok(performance.now() - started < 2_000, `${t.label}: took ${performance.now() - started} ms`);
      }
    }
    await expectR1VRejection(within(SafetensorsFile.open(fifos[0]!), 3_000, 'SafetensorsFile.open(FIFO)'), 'IO', /not a regular file/);
    // Ten refused FIFO loads later, unrelated reads still run (no thread of the pool is stuck).
    const text = await within(Promise.all(Array.from({ length: 8 }, () => fsp.readFile(path.join(single.dir, 'config.json'), 'utf8'))), 1_000, 'plain reads');
    assert.ok(text.every((x) => x.includes('qwen2')));
  });

  it('index entries that leave the directory are refused', async () => {
    for (const shard of ['../x.safetensors', '/etc/passwd', 'sub/../../x.safetensors', 'a\0b.safetensors', '..']) {
      const { dir } = await withPlanted(sharded, 'model.safetensors.index.json', async (file) => {
        const index = JSON.parse(await fsp.readFile(file, 'utf8')) as { weight_map: Record<string, string> };
        index.weight_map[Object.keys(index.weight_map)[0]!] = shard;
        await fsp.writeFile(file, JSON.stringify(index));
      });
      await expectR1VRejection(openCheckpoint(dir), 'IO', /not a file name in the directory/);
    }
  });
});

describe('checkpoint files: writers never follow planted symlinks', function () {
  this.timeout(60_000);
  const ctx = scratch('planted');

  it('symlinks at the final names and at guessable temporary names are replaced, not written through', async () => {
    const next = rng('planted-writer');
    const state = await makeState(ctx.e, path.join(ctx.root, 'state'), next, { optimizer: true });
    const dir = path.join(ctx.root, 'ckpt');
    await fsp.cp(state.dir, dir, { recursive: true });
    const names = [
      'config.json', 'model.safetensors', 'optimizer.safetensors', 'model.safetensors.index.json',
      'model-00001-of-00002.safetensors', '.r1v-save.lock',
      ...['config.json', 'model.safetensors', 'optimizer.safetensors', 'model.safetensors.index.json'].flatMap((n) => [`${n}.tmp`, `.${n}.tmp`]),
    ];
    const victims = new Map<string, Buffer>();
    await fsp.mkdir(path.join(ctx.root, 'victims'));
    for (const [i, name] of names.entries()) {
      const victim = path.join(ctx.root, 'victims', `v${i}`);
      const bytes = Buffer.from(Array.from({ length: 64 }, () => Math.floor(next() * 256)));
      await fsp.writeFile(victim, bytes);
      victims.set(victim, bytes);
      await fsp.rm(path.join(dir, name), { force: true });
      await fsp.symlink(victim, path.join(dir, name));
    }
    using m = await VisionLanguageModel.load(ctx.e, state.dir, quiet);
    const opt = new AdamW(m);
    await opt.load(state.dir);
    for (const options of [{}, { maxShardBytes: 2_000 }, {}]) {
      await m.save(dir, options);
      await opt.save(dir);
      for (const [victim, bytes] of victims) assert.deepEqual(await fsp.readFile(victim), bytes, `${victim} was written through a link`);
      const entries = ['config.json', 'optimizer.safetensors', options.maxShardBytes ? 'model.safetensors.index.json' : 'model.safetensors'];
      for (const entry of entries) assert.ok((await fsp.lstat(path.join(dir, entry))).isFile(), `${entry} is not a regular file`);
      using loaded = await VisionLanguageModel.load(ctx.e, dir, quiet);
      assert.ok(sameValues(await valuesOf(loaded), state.values));
    }
    opt.dispose();
  });

  it('saving onto an existing regular file is R1VError(IO) naming the path', async () => {
    const file = path.join(ctx.root, 'a-file');
    await fsp.writeFile(file, 'not a directory');
    using m = VisionLanguageModel.create(ctx.e, qwenConfig(), quiet);
    const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    await expectR1VRejection(m.save(file), 'IO', new RegExp(escaped));
    await expectR1VRejection(new AdamW(m).save(file), 'IO', new RegExp(escaped));
    await expectR1VRejection(writeCheckpoint(file, []), 'IO', new RegExp(escaped));
    await expectR1VRejection(m.save(path.join(file, 'below')), 'IO', new RegExp(escaped));
  });
});

describe('checkpoint files: sizes and headers fail fast with short typed errors', function () {
  this.timeout(60_000);
  const ctx = scratch('sizes');

  /** A safetensors file of `header` (JSON) whose data is `dataBytes` long, sparse (nothing written). */
  async function sparseFile(file: string, header: string, dataBytes: number): Promise<void> {
    const json = Buffer.from(header);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    await fsp.writeFile(file, Buffer.concat([prefix, json]));
    await fsp.truncate(file, 8 + json.length + dataBytes);
  }

  it('a tensor larger than the largest buffer the host can hold → R1VError(IO) naming it and its size, before allocating', async () => {
    const limit = Math.min(bufferConstants.MAX_LENGTH, os.totalmem());
    const numel = Math.floor(limit / 2) + 1;
    const dir = path.join(ctx.root, 'huge');
    await fsp.mkdir(dir);
    const file = path.join(dir, 'model.safetensors');
    await sparseFile(file, JSON.stringify({ small: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, huge: { dtype: 'BF16', shape: [numel], data_offsets: [8, 8 + 2 * numel] } }), 8 + 2 * numel);
    await using f = await SafetensorsFile.open(file);
    assert.deepEqual((await f.readTensor('small')).data, new Float32Array(2));
    await expectR1VRejection(f.readTensor('huge'), 'IO', new RegExp(`"huge".*${2 * numel} bytes`));
    await using c = await openCheckpoint(dir);
    await expectR1VRejection(c.readTensor('huge'), 'IO', new RegExp(`"huge".*${2 * numel} bytes`));
    // Widening 16-bit values to f32 doubles them: checked before allocating too (only the length is read).
    const wide: SafetensorsTensor = { dtype: 'BF16', shape: [numel], data: { length: numel } as Uint16Array };
    expectR1VError(() => toFloat32(wide), 'IO', new RegExp(`${4 * numel} bytes as f32`));
  });

  it('a header of 1.7 million zero-size entries fails in well under a second, with a short message', async () => {
    const n = 1_700_000;
    const parts: string[] = new Array(n);
    for (let i = 0; i < n; i++) parts[i] = `"${i.toString(36)}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`;
    const header = `{${parts.join(',')}}`;
    assert.ok(header.length < 100_000_000, "within the format's 100 MB header limit");
    const file = path.join(ctx.root, 'many.safetensors');
    await sparseFile(file, header, 0);
    const started = performance.now();
    await assert.rejects(SafetensorsFile.open(file), (error: unknown) => {
      assert.ok(error instanceof R1VError && error.code === 'IO', String(error));
      assert.ok(error.message.length < 400, `message of ${error.message.length} characters`);
      assert.match(error.message, /many\.safetensors/);
      return true;
    });
    const ms = performance.now() - started;
    assert.ok(ms < 1_000, `took ${ms} ms`);
  });

  it('writing refuses a header the reader would refuse', async () => {
    const tensors = Array.from({ length: 70_000 }, (_, i) => ({ name: `t${i}`, dtype: 'F32' as const, shape: [0], data: new Float32Array(0) }));
    await expectR1VRejection(writeSafetensors(path.join(ctx.root, 'too-many.safetensors'), tensors), 'ARGUMENT', /70000 tensors|header/);
    await assert.rejects(fsp.access(path.join(ctx.root, 'too-many.safetensors')));
  });
});
