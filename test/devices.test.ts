import assert from 'node:assert/strict';
import { cpus } from 'node:os';

import { buildInfo, devices, Engine } from '../lib/index.js';
import { expectR1VError } from './helpers.js';

describe('devices and engines', () => {
  it('lists the CPU first, with its name and pool threads', () => {
    const list = devices();
    const cpu = list[0]!;
    assert.equal(cpu.id, 'cpu');
    assert.equal(cpu.kind, 'cpu');
    assert.ok(cpu.name.length > 0);
    assert.ok(cpu.kind === 'cpu' && cpu.threads >= 1 && cpu.threads <= Math.max(cpus().length, 1024));
    for (const d of list.slice(1)) {
      assert.equal(d.kind, 'cuda');
      assert.match(d.id, /^cuda:\d+$/);
      if (d.kind === 'cuda') {
        assert.ok(d.memoryBytes > 0 && d.multiprocessors > 0 && d.computeCapability[0] >= 5);
      }
    }
  });

  it('reports how it was built', () => {
    const info = buildInfo();
    assert.equal(typeof info.cuda, 'boolean');
    assert.ok(['avx512', 'avx2', 'generic'].includes(info.cpuIsa));
    assert.equal(info.threads, devices()[0]!.kind === 'cpu' ? (devices()[0] as { threads: number }).threads : -1);
  });

  it('creates a CPU engine and exposes its device and seed', () => {
    using e = Engine.create({ device: 'cpu', seed: 42 });
    assert.equal(e.device.id, 'cpu');
    assert.equal(e.seed, 42);
    assert.equal(e.disposed, false);
  });

  it("resolves 'auto' to a GPU when present, else the CPU, and R1V_DEVICE overrides it", () => {
    const hasCuda = devices().some((d) => d.kind === 'cuda');
    const saved = process.env.R1V_DEVICE;
    try {
      delete process.env.R1V_DEVICE;
      using auto = Engine.create();
      assert.equal(auto.device.id, hasCuda ? 'cuda:0' : 'cpu');
      process.env.R1V_DEVICE = 'cpu';
      using forced = Engine.create({ device: 'auto' });
      assert.equal(forced.device.id, 'cpu');
      process.env.R1V_DEVICE = 'cuda:7';
      expectR1VError(() => Engine.create(), 'DEVICE', /cuda:7/);
      // An explicit device is not overridden.
      using explicit = Engine.create({ device: 'cpu' });
      assert.equal(explicit.device.id, 'cpu');
    } finally {
      if (saved === undefined) delete process.env.R1V_DEVICE;
      else process.env.R1V_DEVICE = saved;
    }
  });

  it('rejects unknown devices, absent GPUs and bad options with typed errors', () => {
    expectR1VError(() => Engine.create({ device: 'tpu' as 'cpu' }), 'DEVICE', /tpu/);
    expectR1VError(() => Engine.create({ device: 'cuda:x' as 'cpu' }), 'DEVICE');
    const count = devices().filter((d) => d.kind === 'cuda').length;
    expectR1VError(() => Engine.create({ device: `cuda:${count}` }), 'DEVICE', new RegExp(`cuda:${count}`));
    expectR1VError(() => Engine.create({ device: 'cpu', seed: -1 }), 'ARGUMENT', /seed/);
    expectR1VError(() => Engine.create({ device: 'cpu', seed: 1.5 }), 'ARGUMENT', /seed/);
    expectR1VError(() => Engine.create({ device: 'cpu', devise: 'cpu' } as never), 'ARGUMENT', /unknown option 'devise'/);
    expectR1VError(() => Engine.create({ device: 'cpu', cpuGemm: 'mkl' as 'auto' }), 'ARGUMENT', /mkl/);
  });

  it('a disposed engine refuses new work but dispose is idempotent', () => {
    const e = Engine.create({ device: 'cpu' });
    e.dispose();
    e.dispose();
    assert.equal(e.disposed, true);
    expectR1VError(() => e.zeros([2]), 'DISPOSED');
    expectR1VError(() => e.tensor([1], [1]), 'DISPOSED');
  });
});
