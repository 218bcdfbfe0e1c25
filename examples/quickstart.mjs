// node examples/quickstart.mjs — the public API in a few lines (run `npm install` first).
import { devices, Engine, ops, R1VError } from '../dist/index.js';

console.log('devices:', devices());
const engine = Engine.create({ device: 'auto', seed: 1 });
const x = engine.randn([4, 8]);
const w = engine.randn([16, 8]);
const y = ops.matmul(x, w, { transB: true }); // queued on the engine's stream
console.log(`${y} first row:`, (await y.toArray()).slice(0, 16)); // waits for the work
try {
  ops.matmul(x, x);
} catch (error) {
  if (error instanceof R1VError) console.log(`expected error: ${error.code}: ${error.message}`);
}
console.log('memory:', engine.memoryStats());
engine.dispose();
