/**
 * WebGPU backend throughput (first, unoptimised kernels): dense matmul TFLOP/s, the block-sparse
 * trio against the backend's own dense matmul of the same shape, elementwise bandwidth against a
 * buffer copy, and the per-op cost of a chain of small adds. Each figure is the median over
 * repeats of (K launches, then one readback that waits for them) / K, after warm-up.
 *
 *   SPARSEGRAD_WEBGPU_EXPERIMENTAL=1 npx tsx benchmarks/webgpu.ts [--quick]
 */
import { BlockSparseMatrix, contiguous, getBackend, manualSeed, matmul, randn, setBackend, tidy, type Tensor } from '@sparsegrad/core';
import { bsrKernel, bsrSddmmKernel } from '../packages/core/src/ops/blocksparse.ts';
import { median } from './util.ts';

const quick = process.argv.includes('--quick');
await setBackend('webgpu');
manualSeed(0);

async function sync(t: Tensor): Promise<void> {
  await t.reshape(-1).slice(0, 0, 1).toArray();
}

async function time(fn: () => Tensor, launches = 5, repeats = 5): Promise<number> {
  const samples: number[] = [];
  for (let r = 0; r < repeats + 1; r++) {
    const outs: Tensor[] = [];
    const t0 = performance.now();
    for (let i = 0; i < launches; i++) outs.push(tidy(fn));
    await sync(outs[outs.length - 1]);
    const ms = (performance.now() - t0) / launches;
    for (const o of outs) o.dispose();
    if (r > 0) samples.push(ms);
  }
  return median(samples);
}

console.log(`device: ${getBackend().device.description}; ${new Date().toISOString().slice(0, 10)}`);
const N = quick ? 1024 : 4096;
const a = randn([N, N]);
const b = randn([N, N]);
const mm = await time(() => matmul(a, b), 3, 3);
console.log(`dense matmul ${N}^3: ${mm.toFixed(2)} ms, ${((2 * N ** 3) / mm / 1e9).toFixed(2)} TFLOP/s`);
a.dispose();
b.dispose();

const M = quick ? 2048 : 16384;
for (const [out, inn] of [[4096, 1024], [1024, 4096]] as const) {
  const x = randn([M, inn]);
  const dy = randn([M, out]);
  const w = randn([out, inn]);
  const dense = await time(() => matmul(x, w.T), 3, 3);
  console.log(`\nX [${M}, ${inn}] W [${out}, ${inn}], 32x32 blocks: dense ${dense.toFixed(2)} ms`);
  console.log('| density | forward ms (speedup) | dX ms (speedup) | dW ms (speedup) |');
  console.log('| --- | --- | --- | --- |');
  for (const density of [0.5, 0.25, 0.1]) {
    const W = BlockSparseMatrix.random([out, inn], { density, blockSize: 32 });
    const f = await time(() => bsrKernel('forward', x, W.data, W.layout), 3, 3);
    const gi = await time(() => bsrKernel('gradInput', dy, W.data, W.layout), 3, 3);
    const gw = await time(() => bsrSddmmKernel(dy, x, W.layout), 3, 3);
    const r = (ms: number) => `${ms.toFixed(2)} (${(dense / ms).toFixed(2)}x)`;
    console.log(`| ${density} | ${r(f)} | ${r(gi)} | ${r(gw)} |`);
    W.data.dispose();
  }
  for (const t of [x, dy, w]) t.dispose();
}

const big = randn([quick ? 1 << 22 : 1 << 26]);
const bytes = big.size * 4;
const copy = await time(() => contiguous(big.reshape(-1)), 5, 5);
const add = await time(() => big.add(1), 5, 5);
const sum = await time(() => big.sum(), 5, 5);
console.log(`\n2^${Math.log2(big.size)} floats: copy ${((2 * bytes) / copy / 1e6).toFixed(0)} GB/s, add-scalar ${((2 * bytes) / add / 1e6).toFixed(0)} GB/s (${((copy / add) * 100).toFixed(0)}% of copy), sum ${(bytes / sum / 1e6).toFixed(0)} GB/s`);
big.dispose();

const small = randn([64]);
const chain = await time(() => {
  let t = small;
  for (let i = 0; i < 1000; i++) t = t.add(1);
  return t;
}, 1, 5);
// `chain` is milliseconds for 1000 ops, i.e. microseconds per op.
console.log(`chain of 1000 small adds: ${chain.toFixed(1)} us per op`);
