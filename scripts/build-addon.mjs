#!/usr/bin/env node
// Builds the native addon. The primary build is CMake (via cmake-js): CPU always, CUDA
// when nvcc is found (R1V_CUDA=AUTO|ON|OFF, R1V_CUDA_ARCHITECTURES="90;80").
// Without cmake, or with --gyp, node-gyp builds the CPU-only addon from binding.gyp.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);

function run(cmd, cmdArgs) {
  console.log(`[r1v] ${cmd} ${cmdArgs.join(' ')}`);
  const result = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit', env: process.env });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function has(cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

function buildWithGyp() {
  const gyp = process.env.npm_config_node_gyp || require.resolve('node-gyp/bin/node-gyp.js');
  const extra = process.env.npm_config_nodedir ? [`--nodedir=${process.env.npm_config_nodedir}`] : [];
  return run(process.execPath, [gyp, 'rebuild', ...extra]);
}

function buildWithCmake() {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const defs = [`--CDR1V_CUDA=${process.env.R1V_CUDA ?? 'AUTO'}`];
  if (process.env.R1V_CUDA_ARCHITECTURES) defs.push(`--CDR1V_CUDA_ARCHITECTURES=${process.env.R1V_CUDA_ARCHITECTURES}`);
  if (process.env.R1V_BUILD_JOBS) defs.push(`--parallel=${process.env.R1V_BUILD_JOBS}`);
  return run(process.execPath, [cmakeJs, 'compile', ...defs]);
}

let status;
if (args.includes('--gyp')) {
  status = buildWithGyp();
} else if (has('cmake')) {
  status = buildWithCmake();
} else {
  console.log('[r1v] cmake not found: building the CPU-only addon with node-gyp (install cmake for the CUDA build)');
  status = buildWithGyp();
}
if (status !== 0) {
  console.error('[r1v] native build failed. Prerequisites: a C++20 compiler (g++ ≥ 12), cmake ≥ 3.24 (or python3 + make for node-gyp), and nvcc for CUDA.');
}
process.exit(status);
