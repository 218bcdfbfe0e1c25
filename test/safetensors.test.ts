import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import {
  bf16ToF32, Engine, f16ToF32, f32ToBf16, f32ToF16, openCheckpoint, R1VError, SafetensorsFile,
  type SafetensorsTensor, type SafetensorsWriteTensor, toFloat32, writeCheckpoint, writeSafetensors,
} from '../lib/index.js';
import { randomArray, rng } from './helpers.js';
import { bf16BitsToNumber, f16BitsToNumber } from './reference/math.js';

async function expectIO(p: Promise<unknown>, ...patterns: RegExp[]): Promise<R1VError> {
  try {
    await p;
  } catch (error) {
    assert.ok(error instanceof R1VError, `expected R1VError, got ${String(error)}`);
    assert.equal(error.code, 'IO', `wrong code for: ${error.message}`);
    for (const re of patterns) assert.match(error.message, re);
    return error;
  }
  return assert.fail('expected R1VError(IO), nothing was thrown');
}

/** The writers' temporaries (hidden `.<name>.<16 hex>.tmp`) left in dir. */
async function temporaries(dir: string): Promise<string[]> {
  return (await fsp.readdir(dir)).filter((n) => n.endsWith('.tmp'));
}

function escape(s: string): RegExp {
  return new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
}

/** A safetensors file assembled byte by byte, independent of the module's writer. */
function buildFile(header: string, data: Uint8Array, declaredLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** An independent minimal parser: header JSON plus each tensor's raw bytes. */
function minimalParse(bytes: Uint8Array): { header: Record<string, any>; raw: (name: string) => DataView } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, any>;
  return {
    header,
    raw: (name) => {
      const [b, e] = header[name].data_offsets as [number, number];
      return new DataView(bytes.buffer, bytes.byteOffset + 8 + n + b, e - b);
    },
  };
}

function randomInt32(n: number, next: () => number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor((next() - 0.5) * 2 ** 32);
  return out;
}

function randomBits16(n: number, next: () => number, dtype: 'BF16' | 'F16'): Uint16Array {
  // Finite patterns only, so comparisons by value are meaningful.
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    let b: number;
    do b = Math.floor(next() * 65536); while (dtype === 'F16' ? ((b >> 10) & 0x1f) === 0x1f : ((b >> 7) & 0xff) === 0xff);
    out[i] = b;
  }
  return out;
}

describe('safetensors', () => {
  let dir: string;
  before(async () => {
    dir = await fsp.mkdtemp(path.join(tmpdir(), 'r1v-safetensors-'));
  });
  after(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  describe('16-bit float conversions', () => {
    let e: Engine;
    before(() => {
      e = Engine.create({ device: 'cpu', seed: 3 });
    });
    after(() => e.dispose());

    it('decode every bf16 and f16 pattern exactly and re-encode it to itself', () => {
      const all = new Uint16Array(65536).map((_, i) => i);
      const bf = bf16ToF32(all);
      const hf = f16ToF32(all);
      for (let i = 0; i < 65536; i++) {
        const bfRef = bf16BitsToNumber(i);
        assert.ok(Object.is(bf[i], bfRef) || (Number.isNaN(bf[i]) && Number.isNaN(bfRef)), `bf16 ${i}`);
        const ref = f16BitsToNumber(i);
        assert.ok(Object.is(hf[i], ref) || (Number.isNaN(hf[i]) && Number.isNaN(ref)), `f16 ${i}: ${hf[i]} vs ${ref}`);
      }
      const bfBack = f32ToBf16(bf);
      const hfBack = f32ToF16(hf);
      for (let i = 0; i < 65536; i++) {
        if (!Number.isNaN(bf[i])) assert.equal(bfBack[i], i, `bf16 ${i}`);
        else assert.ok(Number.isNaN(bf16ToF32(bfBack.subarray(i, i + 1))[0]));
        if (!Number.isNaN(hf[i])) assert.equal(hfBack[i], i, `f16 ${i}`);
        else assert.ok(Number.isNaN(f16ToF32(hfBack.subarray(i, i + 1))[0]));
      }
    });

    it('round f32 to nearest even exactly as the engine does (ties, subnormals, overflow)', async () => {
      const next = rng('conversions');
      const values: number[] = [0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e6, Infinity, -Infinity,
        2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -14 - 2 ** -25, 5.9604645e-8, 1.5 * 2 ** -24, 2.5 * 2 ** -24,
        1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4e38, -1e-40];
      for (let i = 0; i < 4000; i++) {
        const mag = 2 ** Math.floor(next() * 60 - 30);
        values.push((next() * 2 - 1) * mag);
      }
      const x = Float32Array.from(values);
      for (const [dtype, encode, decode] of [['bf16', f32ToBf16, bf16ToF32], ['f16', f32ToF16, f16ToF32]] as const) {
        using t = e.tensor(x, [x.length], { dtype });
        const engine = await t.toArray();
        const ours = decode(encode(x));
        for (let i = 0; i < x.length; i++) {
          assert.ok(Object.is(ours[i], engine[i]), `${dtype}(${x[i]}): ${ours[i]} vs engine ${engine[i]}`);
        }
      }
      assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(Float32Array.of(NaN)))[0]));
      assert.ok(Number.isNaN(f16ToF32(f32ToF16(Float32Array.of(-NaN)))[0]));
    });
  });

  it('round-trips f32/bf16/f16/i32 (and f64/i64/u8) tensors, 0-d and empty ones, and metadata', async () => {
    const next = rng('roundtrip');
    const file = path.join(dir, 'roundtrip.safetensors');
    const f32 = randomArray(3 * 5 * 7, next);
    const bf = randomBits16(11 * 3, next, 'BF16');
    const hf = randomBits16(13, next, 'F16');
    const i32 = randomInt32(2 * 9, next);
    const scalar = randomArray(1, next);
    const f64 = Float64Array.from(randomArray(5, next), (v) => v * Math.PI);
    const i64 = BigInt64Array.of(-(2n ** 60n), 42n, 7n);
    const u8 = Uint8Array.of(0, 255, 17, 1);
    const fromF32 = randomArray(17, next);
    const tensors: SafetensorsWriteTensor[] = [
      { name: 'model.layers.0.w', dtype: 'F32', shape: [3, 5, 7], data: f32 },
      { name: 'bf', dtype: 'BF16', shape: [11, 3], data: bf },
      { name: 'empty', dtype: 'F32', shape: [4, 0], data: new Float32Array(0) },
      { name: 'hf', dtype: 'F16', shape: [13], data: () => hf },
      { name: 'ids', dtype: 'I32', shape: [2, 9], data: async () => i32 },
      { name: 'scalar', dtype: 'F32', shape: [], data: scalar },
      { name: 'empty_bf', dtype: 'BF16', shape: [0], data: new Uint16Array(0) },
      { name: 'f64', dtype: 'F64', shape: [5], data: f64 },
      { name: 'i64', dtype: 'I64', shape: [3], data: i64 },
      { name: 'mask', dtype: 'BOOL', shape: [2, 2], data: u8 },
      { name: 'bf_from_f32', dtype: 'BF16', shape: [17], data: fromF32 },
      { name: 'hf_from_f32', dtype: 'F16', shape: [17], data: fromF32 },
    ];
    const metadata = { format: 'pt', 'note ü': 'wörds "quoted"' };
    await writeSafetensors(file, tensors, metadata);
    assert.deepEqual(await temporaries(dir), []);
    await using f = await SafetensorsFile.open(file);
    assert.deepEqual(f.metadata, metadata);
    assert.deepEqual(f.names(), tensors.map((t) => t.name));
    const expected: Record<string, SafetensorsTensor> = {
      'model.layers.0.w': { dtype: 'F32', shape: [3, 5, 7], data: f32 },
      bf: { dtype: 'BF16', shape: [11, 3], data: bf },
      empty: { dtype: 'F32', shape: [4, 0], data: new Float32Array(0) },
      hf: { dtype: 'F16', shape: [13], data: hf },
      ids: { dtype: 'I32', shape: [2, 9], data: i32 },
      scalar: { dtype: 'F32', shape: [], data: scalar },
      empty_bf: { dtype: 'BF16', shape: [0], data: new Uint16Array(0) },
      f64: { dtype: 'F64', shape: [5], data: f64 },
      i64: { dtype: 'I64', shape: [3], data: i64 },
      mask: { dtype: 'BOOL', shape: [2, 2], data: u8 },
      bf_from_f32: { dtype: 'BF16', shape: [17], data: f32ToBf16(fromF32) },
      hf_from_f32: { dtype: 'F16', shape: [17], data: f32ToF16(fromF32) },
    };
    const all = await Promise.all(f.names().map((n) => f.readTensor(n)));
    for (const [i, name] of f.names().entries()) assert.deepEqual(all[i], expected[name], name);
    assert.deepEqual(f.entry('scalar').shape, []);
    assert.equal(f.entry('scalar').byteLength, 4);
    // bf16 from f32 is within half a bf16 ulp.
    const widened = toFloat32(all[10]!);
    for (let i = 0; i < 17; i++) assert.ok(Math.abs(widened[i]! - fromF32[i]!) <= Math.abs(fromF32[i]!) * 2 ** -8);
    await f.close();
    await expectIO(f.readTensor('bf'), /after close/);
    await expectIO(f.readTensor('nope'), /nope/);
  });

  it('reads a hand-built file', async () => {
    const data = new DataView(new ArrayBuffer(4 * 3 + 2 * 2 + 4 * 2));
    [1.5, -2.25, 1e-3].forEach((v, i) => data.setFloat32(i * 4, v, true));
    data.setUint16(12, 0x3f80, true); // bf16 1.0
    data.setUint16(14, 0xc000, true); // bf16 -2.0
    data.setInt32(16, -7, true);
    data.setInt32(20, 123456789, true);
    // Offsets deliberately out of name order and the header padded with spaces, as the format allows.
    const header = '{"ids":{"dtype":"I32","shape":[2],"data_offsets":[16,24]},'
      + '"__metadata__":{"k":"v"},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[12,16]},'
      + '"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}   ';
    const file = path.join(dir, 'hand.safetensors');
    await fsp.writeFile(file, buildFile(header, new Uint8Array(data.buffer)));
    await using f = await SafetensorsFile.open(file);
    assert.deepEqual(f.names(), ['a', 'b', 'ids']);
    assert.deepEqual(f.metadata, { k: 'v' });
    assert.equal(f.entry('b').fileOffset, 8 + header.length + 12);
    const a = await f.readTensor('a');
    assert.deepEqual(a, { dtype: 'F32', shape: [3], data: Float32Array.of(1.5, -2.25, 1e-3) });
    const b = await f.readTensor('b');
    assert.deepEqual(b, { dtype: 'BF16', shape: [1, 2], data: Uint16Array.of(0x3f80, 0xc000) });
    assert.deepEqual(toFloat32(b), Float32Array.of(1, -2));
    assert.deepEqual(await f.readTensor('ids'), { dtype: 'I32', shape: [2], data: Int32Array.of(-7, 123456789) });
  });

  it('writes files an independent parser reads', async () => {
    const next = rng('independent');
    const w = randomArray(4 * 6, next);
    const h = randomBits16(5, next, 'F16');
    const ids = randomInt32(3, next);
    const file = path.join(dir, 'independent.safetensors');
    await writeSafetensors(file, [
      { name: 'w', dtype: 'F32', shape: [4, 6], data: w },
      { name: 'h', dtype: 'F16', shape: [5], data: h },
      { name: 'ids', dtype: 'I32', shape: [3], data: ids },
    ], { format: 'pt' });
    const bytes = new Uint8Array(await fsp.readFile(file));
    const { header, raw } = minimalParse(bytes);
    const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    assert.equal((8 + headerLength) % 8, 0, 'data starts 8-byte aligned');
    assert.deepEqual(header.__metadata__, { format: 'pt' });
    assert.deepEqual(header.w, { dtype: 'F32', shape: [4, 6], data_offsets: [0, 96] });
    assert.deepEqual(header.h, { dtype: 'F16', shape: [5], data_offsets: [96, 106] });
    assert.deepEqual(header.ids, { dtype: 'I32', shape: [3], data_offsets: [106, 118] });
    assert.equal(bytes.length, 8 + headerLength + 118);
    const rw = raw('w');
    for (let i = 0; i < w.length; i++) assert.equal(rw.getFloat32(i * 4, true), w[i]);
    const rh = raw('h');
    for (let i = 0; i < h.length; i++) assert.equal(rh.getUint16(i * 2, true), h[i]);
    const ri = raw('ids');
    for (let i = 0; i < ids.length; i++) assert.equal(ri.getInt32(i * 4, true), ids[i]);
  });

  it('fails with R1VError(IO) naming the file and offset for corrupt files', async () => {
    const ok = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}';
    const cases: Array<[string, Uint8Array, RegExp[]]> = [
      ['truncated', buildFile(ok, new Uint8Array(10)), [/truncated/, /tensor "b" \(bytes 12\d\.\.12\d\) ends at byte 12\d/, /12\d bytes/]],
      ['trailing', buildFile(ok, new Uint8Array(13)), [/trailing/, /byte \d+/]],
      ['header-too-long', buildFile(ok, new Uint8Array(12), 10_000n), [/header length 10000 at byte 0/, /past the end/]],
      ['tiny', Uint8Array.of(1, 2, 3), [/3 bytes/, /byte 0/]],
      ['bad-json', buildFile('{"a":{"dtype":"F32",', new Uint8Array(0)), [/not valid UTF-8 JSON/, /bytes 8\.\.28/]],
      ['not-object', buildFile('[1,2]', new Uint8Array(0)), [/not a JSON object/, /byte/]],
      ['overlap', buildFile(ok.replace('[8,12]', '[4,8]').replace('"shape":[1]', '"shape":[1]'), new Uint8Array(12)),
        [/"b" at byte \d+/, /overlaps/]],
      ['gap', buildFile(ok.replace('[8,12]', '[12,16]'), new Uint8Array(16)), [/"b" at byte \d+/, /gap/]],
      ['wrong-length', buildFile(ok.replace('"shape":[2]', '"shape":[3]'), new Uint8Array(12)),
        [/"a" at byte \d+/, /hold 8 bytes but F32 \[3\] needs 12/]],
      ['unknown-dtype', buildFile(ok.replace('"F32"', '"Q4"'), new Uint8Array(12)), [/unknown dtype "Q4"/, /"a"/, /byte 8/]],
      ['bad-shape', buildFile(ok.replace('"shape":[2]', '"shape":[-2]'), new Uint8Array(12)), [/shape \[-2\]/, /byte 8/]],
      ['bad-offsets', buildFile(ok.replace('[0,8]', '[8,0]'), new Uint8Array(12)), [/data_offsets \[8,0\]/, /byte 8/]],
      ['bad-metadata', buildFile(`{"__metadata__":{"n":1},${ok.slice(1)}`, new Uint8Array(12)), [/__metadata__/, /byte 8/]],
      ['bad-utf8', buildFile('{"a":"\u00ff"}', new Uint8Array(0)).map((v, i) => (i === 14 ? 0xff : v)), [/UTF-8/, /byte/]],
    ];
    for (const [label, bytes, patterns] of cases) {
      const file = path.join(dir, `corrupt-${label}.safetensors`);
      await fsp.writeFile(file, bytes);
      await expectIO(SafetensorsFile.open(file), escape(file), ...patterns);
    }
    await expectIO(SafetensorsFile.open(path.join(dir, 'absent.safetensors')), /absent\.safetensors/, /cannot open/);
    // A file truncated by the test after a valid write is caught on open too.
    const file = path.join(dir, 'cut.safetensors');
    await writeSafetensors(file, [{ name: 'x', dtype: 'F32', shape: [100], data: new Float32Array(100).fill(1) }]);
    const { size } = await fsp.stat(file);
    await fsp.truncate(file, size - 3);
    await expectIO(SafetensorsFile.open(file), escape(file), /truncated/, new RegExp(`byte ${size}`));
  });

  it('rejects bad tensors to write and leaves no file behind when writing fails', async () => {
    const file = path.join(dir, 'failed.safetensors');
    const bad: Array<[SafetensorsWriteTensor[], string]> = [
      [[{ name: 'a', dtype: 'F32', shape: [3], data: new Float32Array(2) }], 'SHAPE'],
      [[{ name: 'a', dtype: 'I32', shape: [2], data: new Float32Array(2) }], 'DTYPE'],
      [[{ name: 'a', dtype: 'X' as 'F32', shape: [2], data: new Float32Array(2) }], 'DTYPE'],
      [[{ name: 'a', dtype: 'F32', shape: [1.5], data: new Float32Array(2) }], 'SHAPE'],
      [[{ name: 'a', dtype: 'F32', shape: [1], data: new Float32Array(1) }, { name: 'a', dtype: 'F32', shape: [1], data: new Float32Array(1) }], 'ARGUMENT'],
      [[{ name: '__metadata__', dtype: 'F32', shape: [1], data: new Float32Array(1) }], 'ARGUMENT'],
      [[{ name: 'a', dtype: 'F32', shape: [1], data: new Float32Array(1) },
        { name: 'b', dtype: 'F32', shape: [1], data: () => { throw new R1VError('IO', 'source failed'); } }], 'IO'],
    ];
    for (const [tensors, code] of bad) {
      await assert.rejects(writeSafetensors(file, tensors), (err: unknown) => err instanceof R1VError && err.code === code);
      await assert.rejects(fsp.access(file));
      assert.deepEqual(await temporaries(dir), []);
    }
    await assert.rejects(writeSafetensors(path.join(dir, 'no-such-dir', 'x.safetensors'), []),
      (err: unknown) => err instanceof R1VError && err.code === 'IO' && /no-such-dir/.test(err.message));
  });

  it('round-trips sharded checkpoints and names missing shards and tensors', async () => {
    const next = rng('sharded');
    const ckpt = path.join(dir, 'ckpt');
    const tensors: SafetensorsWriteTensor[] = [];
    const values = new Map<string, Float32Array | Uint16Array>();
    for (let i = 0; i < 7; i++) {
      const n = 10 + Math.floor(next() * 40);
      const data = i % 2 ? randomBits16(n, next, 'BF16') : randomArray(n, next);
      values.set(`layer.${i}.weight`, data);
      tensors.push({ name: `layer.${i}.weight`, dtype: i % 2 ? 'BF16' : 'F32', shape: [n], data });
    }
    tensors.push({ name: 'big', dtype: 'F32', shape: [100], data: randomArray(100, next) });
    values.set('big', tensors[7]!.data as Float32Array);
    await writeCheckpoint(ckpt, tensors, { maxShardBytes: 256, metadata: { format: 'pt' } });
    const files = (await fsp.readdir(ckpt)).sort();
    // Shards get fresh names at every save (model-<8 hex>-0000i-of-0000n), so no old shard is overwritten.
    const shardFiles = files.filter((f) => /^model-[0-9a-f]{8}-\d{5}-of-\d{5}\.safetensors$/.test(f));
    assert.ok(shardFiles.length >= 3, `shards: ${files.join(', ')}`);
    assert.ok(files.includes('model.safetensors.index.json'));
    assert.ok(!files.includes('model.safetensors'));
    const index = JSON.parse(await fsp.readFile(path.join(ckpt, 'model.safetensors.index.json'), 'utf8'));
    const total = tensors.reduce((s, t) => s + t.shape[0]! * (t.dtype === 'F32' ? 4 : 2), 0);
    assert.equal(index.metadata.total_size, total);
    for (const s of shardFiles) {
      const { size } = await fsp.stat(path.join(ckpt, s));
      const f = await SafetensorsFile.open(path.join(ckpt, s));
      const dataBytes = f.names().reduce((sum, n) => sum + f.entry(n).byteLength, 0);
      assert.ok(dataBytes <= 256 || f.names().length === 1, `${s} holds ${dataBytes} bytes`);
      assert.ok(size > dataBytes);
      await f.close();
    }
    {
      await using c = await openCheckpoint(ckpt);
      assert.deepEqual(c.names(), tensors.map((t) => t.name));
      assert.deepEqual(c.metadata, { total_size: total });
      for (const t of tensors) {
        const r = await c.readTensor(t.name);
        assert.equal(r.dtype, t.dtype);
        assert.deepEqual(r.shape, t.shape);
        assert.deepEqual(r.data, values.get(t.name));
        assert.equal(path.basename(c.entry(t.name).file), index.weight_map[t.name]);
      }
      await expectIO(c.readTensor('nope'), /nope/, escape(ckpt));
    }

    // A name the index maps to a shard that lacks it.
    const indexPath = path.join(ckpt, 'model.safetensors.index.json');
    const broken = structuredClone(index);
    broken.weight_map['ghost.weight'] = shardFiles[0];
    await fsp.writeFile(indexPath, JSON.stringify(broken));
    await expectIO(openCheckpoint(ckpt), /"ghost\.weight"/, escape(shardFiles[0]!), escape(indexPath));
    // A shard file that is gone.
    await fsp.writeFile(indexPath, JSON.stringify(index));
    await fsp.rm(path.join(ckpt, shardFiles[1]!));
    await expectIO(openCheckpoint(ckpt), /missing/, escape(shardFiles[1]!), escape(indexPath));
    // A shard name that would leave the directory.
    broken.weight_map['ghost.weight'] = '../x.safetensors';
    await fsp.writeFile(indexPath, JSON.stringify(broken));
    await expectIO(openCheckpoint(ckpt), /ghost\.weight/, /not a file name/);
    await expectIO(openCheckpoint(path.join(dir, 'nothing-here')), /neither/);

    // Rewritten small, the directory becomes a single file and the stale index is gone.
    await writeCheckpoint(ckpt, tensors.slice(0, 2));
    assert.ok(!(await fsp.readdir(ckpt)).includes('model.safetensors.index.json'));
    await using single = await openCheckpoint(ckpt);
    assert.deepEqual(single.names(), ['layer.0.weight', 'layer.1.weight']);
    assert.deepEqual((await single.readTensor('layer.1.weight')).data, values.get('layer.1.weight'));
  });

  it('streams: reading one tensor of a 64 MB file allocates about that tensor only', async () => {
    const file = path.join(dir, 'large.safetensors');
    const count = 16;
    const numel = (4 << 20) / 4; // 4 MB of f32 per tensor
    const fill = (k: number): Float32Array => {
      const a = new Float32Array(numel);
      for (let i = 0; i < numel; i += 997) a[i] = k * 1000 + i;
      return a;
    };
    await writeSafetensors(file, Array.from({ length: count }, (_, k) => ({
      name: `w${k}`, dtype: 'F32' as const, shape: [numel], data: () => fill(k),
    })));
    assert.equal((await fsp.stat(file)).size > 64 * 2 ** 20, true);
    global.gc?.();
    await new Promise((r) => setImmediate(r));
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    await using f = await SafetensorsFile.open(file);
    const t = await f.readTensor('w11');
    const delta = process.memoryUsage().arrayBuffers - before;
    assert.equal(t.data.length, numel);
    assert.equal(t.data[997 * 3], 11 * 1000 + 997 * 3);
    assert.equal(t.data[1], 0);
    assert.ok(delta >= 4 << 20, `delta ${delta}`);
    assert.ok(delta < 12 << 20, `reading one 4 MB tensor grew arrayBuffers by ${delta} bytes`);
  });
});
