/**
 * Runs one block-sparse product a few times on the CUDA backend, for profilers (ncu, compute-
 * sanitizer) to look at one kernel: X [16384, 1024], W [4096, 1024] by default.
 *
 *   ncu -k regex:bsr_ npx tsx benchmarks/cuda-kernel.ts --kind forward --bs 32 --density 0.5 --precision high
 */
import { parseArgs } from 'node:util';
import { BlockSparseMatrix, getBackend, manualSeed, setBackend, type MatmulPrecision } from '@sparsegrad/core';
import type { CudaBackend } from '@sparsegrad/cuda';

const { values } = parseArgs({
  options: {
    kind: { type: 'string', default: 'forward' },
    bs: { type: 'string', default: '32' },
    density: { type: 'string', default: '0.5' },
    precision: { type: 'string', default: 'high' },
    m: { type: 'string', default: '16384' },
    rows: { type: 'string', default: '4096' },
    cols: { type: 'string', default: '1024' },
    repeats: { type: 'string', default: '3' },
  },
});
await setBackend('cuda');
manualSeed(0);
const be = getBackend() as CudaBackend;
const [m, rows, cols] = [Number(values.m), Number(values.rows), Number(values.cols)];
const p = values.precision as MatmulPrecision;
const W = BlockSparseMatrix.random([rows, cols], { density: Number(values.density), blockSize: Number(values.bs) });
const blocks = W.data.storageFor('benchmark').buffer;
const x = be.alloc(m * cols, 'float32');
const dy = be.alloc(m * rows, 'float32');
be.random(x, m * cols, { kind: 'normal', key: 1, a: 0, b: 1 });
be.random(dy, m * rows, { kind: 'normal', key: 2, a: 0, b: 1 });
const out = be.alloc(m * Math.max(rows, cols), 'float32');
const dw = be.alloc(W.layout.nnzBlocks * W.layout.blockSize ** 2, 'float32');
const run = () => {
  if (values.kind === 'forward') be.bsrMatmul(x, blocks, W.layout, m, out, p);
  else if (values.kind === 'dx') be.bsrMatmulGradInput(dy, blocks, W.layout, m, out, p);
  else be.bsrSddmm(dy, x, W.layout, m, dw, p);
};
for (let i = 0; i < Number(values.repeats); i++) console.log(`${values.kind} ${values.bs}x${values.bs} '${p}': ${be.timeDevice(run).toFixed(3)} ms`);
process.exit(0);
