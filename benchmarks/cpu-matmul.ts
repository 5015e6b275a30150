/**
 * CPU backend throughput: dense f32 matmul 512x1024x1024 and the block-sparse products
 * (32x32 blocks unless --block-size) at several densities, each as a ratio against the dense
 * matmul of the same shape measured in the same run. Median of repeats after warm-up.
 *
 *   npx tsx benchmarks/cpu-matmul.ts [--repeats 7] [--block-size 32] [--write docs/benchmarks-cpu.md]
 */
import { parseArgs } from 'node:util';
import { BlockSparseMatrix, getBackend, manualSeed, matmul, randn, tidy, type Tensor } from '@sparsegrad/core';
import { bsrKernel, bsrSddmmKernel } from '../packages/core/src/ops/blocksparse.ts';
import { median } from './util.ts';

const { values } = parseArgs({ options: { repeats: { type: 'string', default: '11' }, 'block-size': { type: 'string', default: '32' } } });
const repeats = Number(values.repeats);
const bs = Number(values['block-size']);
manualSeed(1);

/** Runs discarded before timing: JIT and WebAssembly tier-up, on the main thread and the workers. */
const WARMUP = 6;

function time(fn: () => Tensor): number {
  const samples: number[] = [];
  for (let i = 0; i < repeats + WARMUP; i++) {
    const t0 = performance.now();
    const out = tidy(fn);
    const t1 = performance.now();
    out.dispose();
    if (i >= WARMUP) samples.push(t1 - t0);
  }
  return median(samples);
}

const M = 512,
  K = 1024,
  N = 1024;
const x = randn([M, K]);
const w = randn([K, N]);
const denseMs = time(() => matmul(x, w));
const gflops = (2 * M * N * K) / denseMs / 1e6;
console.log(`dense matmul ${M}x${K}x${N}: ${denseMs.toFixed(1)} ms, ${gflops.toFixed(1)} GFLOP/s (${getBackend().device.description})`);

const dy = randn([M, N]);
console.log(`\nblock-sparse W [${N}, ${K}], ${bs}x${bs} blocks, X [${M}, ${K}]; speedup = dense ms / sparse ms,`);
console.log('with the dense time re-measured for each row (this machine is shared and its speed drifts)');
console.log('| density | dense ms | forward ms (speedup) | dX ms (speedup) | dW ms (speedup) |');
console.log('| --- | --- | --- | --- | --- |');
for (const density of [1, 0.5, 0.25, 0.1]) {
  const W = BlockSparseMatrix.random([N, K], { density, blockSize: bs });
  const dense = time(() => matmul(x, w));
  const f = time(() => bsrKernel('forward', x, W.data, W.layout));
  const gi = time(() => bsrKernel('gradInput', dy, W.data, W.layout));
  const gw = time(() => bsrSddmmKernel(dy, x, W.layout));
  const r = (ms: number) => `${ms.toFixed(1)} (${(dense / ms).toFixed(2)}x)`;
  console.log(`| ${density.toFixed(2)} | ${dense.toFixed(1)} | ${r(f)} | ${r(gi)} | ${r(gw)} |`);
  W.data.dispose();
}
