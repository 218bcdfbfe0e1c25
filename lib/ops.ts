// Tensor operations. Each checks its arguments, queues the work on the operands' engine
// stream and returns its result tensors at once; the math runs off the JavaScript thread.
// One module per op family under ops/.
export * from './ops/matmul.js';
export * from './ops/attention.js';
export * from './ops/connector.js';
export * from './ops/token_stats.js';
export * from './ops/elementwise.js';
export * from './ops/optimizer.js';
export * from './ops/norms.js';
export * from './ops/patchify.js';
export * from './ops/rows.js';
export * from './ops/sampling.js';
