// Calls every native entry point with generated bad (and some good) arguments. The
// process must survive all of them, and every failure must be a typed R1VError.
import assert from 'node:assert/strict';

import { Engine, ops, R1VError } from '../lib/index.js';
import { native, type NativeEngine, type NativeTensor } from '../lib/core/native.js';
import { rng } from './helpers.js';

describe('bad-argument fuzzing of the native entry points', () => {
  it('survives thousands of generated calls, failing only with R1VError', async function () {
    this.timeout(300_000);
    const addon = native();
    const next = rng('fuzz');
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;

    const engine = new addon.EngineHandle('cpu', 1);
    const other = new addon.EngineHandle('cpu', 2);
    const good = engine.randn([2, 3], 'f32');
    const square = engine.randn([3, 3], 'f32');
    const half = engine.full([2, 2], 'bf16', 1);
    const ints = engine.full([3], 'i32', 4);
    const foreign = other.randn([3, 2], 'f32');
    const qkv = engine.randn([1, 2, 1, 8], 'f32');
    const patches = engine.randn([1, 2, 2, 2], 'f32');
    const targets = engine.full([2], 'i32', 1);
    const vector = engine.randn([2], 'f32');
    const params = { lnWeight: engine.randn([8], 'f32'), lnBias: vector, w1: engine.randn([3, 8], 'f32'), b1: engine.randn([3], 'f32'), w2: square, b2: engine.randn([3], 'f32') };
    const disposed = engine.randn([3, 2], 'f32');
    disposed.dispose();
    const hostile = new Proxy({}, { get() { throw new Error('hostile getter'); } });
    const sparse: number[] = [];
    sparse.length = 2 ** 32 - 1;

    const values: unknown[] = [
      undefined, null, true, false, 0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 1e300, 3, 6,
      '', 'cpu', 'cuda:0', 'cuda:99', 'gpu', 'f32', 'bf16', 'f16', 'i32', 'f64', 'auto', 'builtin', 'blas',
      1n, Symbol('s'), () => 1, {}, [], [2, 3], [3, 2], [3, 3], [-1], [1.5], [NaN], ['2'], [2 ** 40, 2 ** 40],
      [1e6, 1e6], [1, 2, 3, 4, 5, 6, 7, 8, 9], [0], [6], [1, 2, 3, 4, 5, 6], [3, -1], [-1, -1], [2, -2], sparse,
      new Float32Array(6), new Float64Array(6), new Int32Array(6), new Uint8Array(6), new Float32Array(0),
      new ArrayBuffer(8), { transA: true }, { transA: 'yes' }, { transB: 1 }, hostile,
      Object.create((good as object).constructor.prototype), engine, good, square, half, ints, foreign, disposed,
      qkv, patches, targets, vector, params, { ...params, w1: half }, { ...params, b2: disposed },
      { causal: true }, { scale: -0 }, { cuSeqlensQ: [0, 2], cuSeqlensK: [0, 2] }, { cuSeqlensQ: new Int32Array([0, 3, 1]) },
      { cuSeqlensQ: [0, 1.5] }, { temperature: 0 }, { temperature: -1 }, { chunk: 0 }, { chunk: 2 ** 40 }, { eps: 0 },
      { eps: 1e-5 }, { patch: 1 }, { patch: 0 }, { channels: 2, height: 2, width: 2, patch: 1 }, { bias: vector },
      { bias: good }, { activation: 'gelu' }, { activation: 'tanh' }, { typo: 1 },
    ];

    const tensorMethods = ['toArray', 'toArraySync', 'dispose'] as const;
    const engineMethods = [
      'tensor', 'full', 'randn', 'memoryStats', 'resetPeakMemory', 'setCpuGemm', 'setPoisonNewTensors', 'synchronize',
      'synchronizeSync',
    ] as const;
    const tensorProto = Object.getPrototypeOf(good) as Record<string, unknown>;
    const engineProto = Object.getPrototypeOf(engine) as Record<string, unknown>;
    const getters = (proto: object) =>
      Object.entries(Object.getOwnPropertyDescriptors(proto)).flatMap(([, d]) => (d.get ? [d.get] : []));
    const receivers: unknown[] = [undefined, {}, good, engine, disposed, foreign, half];

    const entryPoints: Array<{ name: string; call: (args: unknown[]) => unknown; wrongReceiver?: boolean }> = [
      { name: 'devices', call: (args) => (addon.devices as (...a: unknown[]) => unknown)(...args) },
      { name: 'buildInfo', call: (args) => (addon.buildInfo as (...a: unknown[]) => unknown)(...args) },
      ...(['matmul', 'attention', 'attentionBackward', 'connector', 'connectorBackward', 'tokenStats', 'tokenStatsBackward',
        'linearTokenStats', 'linearTokenStatsBackward', 'rope', 'ropeBackward', 'swiglu', 'swigluBackward', 'gelu', 'geluBackward', 'embedding',
        'embeddingBackward', 'rmsNorm', 'rmsNormBackward', 'layerNorm', 'layerNormBackward', 'sumOfSquares',
        'adamwStep', 'patchify', 'unpatchify', 'reshape', 'add', 'scale', 'scaleChannels', 'scaleChannelsBackward',
        'sumRows', 'gatherRows', 'scatterAddRows', 'scatterRows', 'writeRows', 'cast', 'copy', 'commWorld', 'commAllReduce',
        'commBroadcast', 'commAllGather', 'commReduceScatter', 'commAllReduceValues', 'commAllGatherBytes',
        'commBroadcastBytes', 'commBarrier', 'commAbort'] as const).map((op) => ({
        name: op,
        call: (args: unknown[]) => (addon[op] as (...a: unknown[]) => unknown)(...args),
      })),
      { name: 'new EngineHandle', call: (args) => new (addon.EngineHandle as new (...a: unknown[]) => unknown)(...args) },
      { name: 'new TensorHandle', call: (args) => new (addon.TensorHandle as unknown as new (...a: unknown[]) => unknown)(...args) },
      ...engineMethods.map((m) => ({ name: `engine.${m}`, call: (args: unknown[]) => (engine[m] as (...a: unknown[]) => unknown)(...args) })),
      ...tensorMethods.map((m) => ({
        name: `tensor.${m}`,
        call: (args: unknown[]) => {
          const target = pick([good, half, ints, disposed]) as NativeTensor;
          return m === 'dispose' ? undefined : (target[m] as (...a: unknown[]) => unknown)(...args);
        },
      })),
      ...[...engineMethods, 'dispose'].map((m) => ({
        name: `EngineHandle.prototype.${m} on another receiver`,
        wrongReceiver: true,
        call: (args: unknown[]) => (engineProto[m] as (...a: unknown[]) => unknown).apply(pick(receivers.filter((r) => r !== engine)), args),
      })),
      ...tensorMethods.map((m) => ({
        name: `TensorHandle.prototype.${m} on another receiver`,
        wrongReceiver: true,
        call: (args: unknown[]) => (tensorProto[m] as (...a: unknown[]) => unknown).apply(pick([undefined, {}, engine, hostile]), args),
      })),
      ...[...getters(tensorProto), ...getters(engineProto)].map((g) => ({
        name: `getter ${g.name}`,
        wrongReceiver: true,
        call: () => g.call(pick(receivers)),
      })),
    ];

    const promises: Promise<unknown>[] = [];
    let calls = 0;
    let r1vErrors = 0;
    const unexpected: string[] = [];
    for (const entry of entryPoints) {
      for (let i = 0; i < 120; i++) {
        const args = Array.from({ length: Math.floor(next() * 5) }, () => pick(values));
        calls++;
        try {
          const result = entry.call(args);
          if (result instanceof Promise) {
            promises.push(result.catch((error: unknown) => {
              if (!(error instanceof R1VError)) unexpected.push(`${entry.name} rejected with ${String(error)}`);
            }));
          } else if (result && typeof result === 'object' && 'dispose' in result && typeof result.dispose === 'function') {
            (result as { dispose(): void }).dispose();
          }
        } catch (error) {
          if (error instanceof R1VError) {
            r1vErrors++;
          } else if (error instanceof Error && error.message === 'hostile getter') {
            // The caller's own getter threw while its options were read: its exception
            // propagates unchanged, as it would from any JavaScript function.
          } else if (!entry.wrongReceiver || !(error instanceof Error)) {
            // A method borrowed onto a non-handle object fails in the wrapper before our
            // code runs; that is an Error too. Anything else must be an R1VError.
            unexpected.push(`${entry.name}(${args.map((a) => typeof a).join(', ')}) threw ${String(error)}`);
          }
        }
      }
    }
    // Explicit cases for the benchmark probe (valid calls take seconds, so only bad ones here).
    for (const bad of [undefined, -1, 0, NaN, 11, 'x', Infinity]) {
      calls++;
      assert.throws(() => (addon.measureCpuPeakGflops as (s: unknown) => number)(bad), R1VError);
    }
    await Promise.all(promises);
    console.log(`    ${calls} calls, ${r1vErrors} rejected with R1VError, ${promises.length} Promises settled`);
    assert.deepEqual(unexpected.slice(0, 10), []);
    assert.ok(calls >= 3000, `only ${calls} calls`);
    assert.ok(r1vErrors > calls / 3, `only ${r1vErrors} of ${calls} calls were rejected`);

    // The process and the engines still work.
    const check = addon.matmul(good, square) as NativeTensor;
    assert.equal(check.toArraySync().length, 6);
    (engine as NativeEngine).dispose();
    (other as NativeEngine).dispose();
    using e = Engine.create({ device: 'cpu' });
    assert.deepEqual(Array.from(ops.matmul(e.tensor([2], [1, 1]), e.tensor([3], [1, 1])).toArraySync()), [6]);
  });

  it('a throwing error class does not take the process down', () => {
    const addon = native();
    addon.setErrorClass(function Broken() { throw new Error('broken'); } as unknown as typeof R1VError);
    try {
      assert.throws(() => (addon.devices as (...a: unknown[]) => unknown).call(null, 1), (e: unknown) => e instanceof Error && (e as { code?: string }).code === 'ARGUMENT');
    } finally {
      addon.setErrorClass(R1VError);
    }
    assert.throws(() => (addon.setErrorClass as (x: unknown) => void)(5), R1VError);
  });
});
