// Tensor operations. Each checks its arguments, queues the work on the operands' engine
// stream and returns its result tensors at once; the math runs off the JavaScript thread.
// One module per op family under ops/.
export * from './matmul.js';
export * from './attention.js';
export * from './connector.js';
export * from './token_stats.js';
export * from './elementwise.js';
export * from './optimizer.js';
export * from './norms.js';
export * from './patchify.js';
export * from './rows.js';
export * from './sampling.js';
