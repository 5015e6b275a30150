/**
 * CUDA backend throughput, calling the backend's primitive kernels directly on random data:
 * cuBLAS dense matmul in the three precisions, the block-sparse trio against cuBLAS dense of the
 * same shape in the same precision, elementwise/reduction bandwidth against a device-to-device
 * copy, and the per-op cost of a chain of small adds through the Tensor API. Kernel times come
 * from CUDA events around several launches (median over repeats, after a warm-up pass).
 *
 *   npx tsx benchmarks/cuda.ts [--quick] [--write] [--blocks 32,16,64] [--precisions highest,high,medium,bf16]
 *     [--block-sparse-only] [--variants KEY=a,b,...]
 *
 * --variants repeats the block-sparse tables with the backend's tuning KEY (packages/cuda/src/
 * tuning.ts) set to each value in turn (e.g. tma=0,1 or bf16Union=auto,on,off), so kernel
 * variants are compared against the same cuBLAS baselines in one run.
 * --write replaces the CUDA section of docs/benchmarks.md with the tables printed here.
 */
import { parseArgs } from 'node:util';
import { MATMUL_PRECISIONS, getBackend, manualSeed, setBackend, type BlockLayout, type MatmulPrecision } from '@sparsegrad/core';
import { matrixAt, type BackendBuffer } from '@sparsegrad/core/backend';
import { type BsrProduct, parseTuning, takesDenseRoute, type CudaBackend } from '@sparsegrad/cuda';
import { type TablePrecision, blockSparseTable, forEachVariant, median, report, usPerChainedOp } from './util.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    write: { type: 'boolean', default: false },
    blocks: { type: 'string', default: '32,16,64' },
    precisions: { type: 'string', default: 'highest,high,medium' },
    'block-sparse-only': { type: 'boolean', default: false },
    variants: { type: 'string' },
  },
});
const quick = values.quick!;
await setBackend('cuda');
manualSeed(0);
const be = getBackend() as CudaBackend;
const doc = report('cuda-benchmark', 'cuda.ts');
const { say } = doc;

/** Device milliseconds per launch of `record` (which only queues kernels). */
function time(record: () => void, launches = 5, repeats = 7): number {
  record(); // first use: kernel lookup, block-index upload, cuBLAS handle
  const samples: number[] = [];
  for (let r = 0; r <= repeats; r++) {
    const ms = be.timeDevice(() => {
      for (let i = 0; i < launches; i++) record();
    });
    if (r > 0) samples.push(ms / launches);
  }
  return median(samples);
}

function randomBuffer(size: number, key: number): BackendBuffer {
  const b = be.alloc(size, 'float32');
  be.random(b, size, { kind: 'normal', key, a: 0, b: 1 });
  return b;
}
const tflops = (flops: number, ms: number) => (flops / ms / 1e9).toFixed(1);
const precisions = values.precisions!.split(',') as TablePrecision[];
for (const p of precisions) if (p !== 'bf16' && !MATMUL_PRECISIONS.includes(p)) throw new Error(`--precisions: unknown precision '${p}'`);
/** Whether a product of the table takes the backend's dense route (bfloat16: as blocksparse-routes.ts's half routes decide). */
function denseRouted(layout: BlockLayout, product: BsrProduct, p: TablePrecision): boolean {
  const mode = be.tuning.denseRoute;
  // bfloat16: the forward and dX decide as 'medium' does; dW takes cuBLAS unless turned off.
  if (p === 'bf16' && product === 'sddmm') return mode !== 'off';
  return takesDenseRoute(layout, product, p === 'bf16' ? 'medium' : p, mode);
}

doc.header(be.device.description, 'CUDA events');

// ---- dense (cuBLAS) ----
{
  const N = quick ? 512 : 4096;
  const a = randomBuffer(N * N, 1);
  const b = randomBuffer(N * N, 2);
  const c = be.alloc(N * N, 'float32');
  for (const p of precisions.filter((x): x is MatmulPrecision => x !== 'bf16')) {
    const nn = time(() => be.matmul(matrixAt(a, N, 1), matrixAt(b, N, 1), c, 1, N, N, N, p), 10);
    const nt = time(() => be.matmul(matrixAt(a, N, 1), matrixAt(b, 1, N), c, 1, N, N, N, p), 10);
    say(`cuBLAS ${N}^3, precision '${p}': **${tflops(2 * N ** 3, nn)} TFLOP/s** (${nn.toFixed(3)} ms); with B transposed ${tflops(2 * N ** 3, nt)}.`);
  }
  say();
  for (const x of [a, b, c]) be.free(x);
}

// ---- block-sparse trio against cuBLAS dense of the same operands ----
const M = quick ? 512 : 16384;
const densities = [0.5, 0.25, 0.1];
async function blockSparseTables(label: string): Promise<void> {
  await blockSparseTable({
    be,
    M,
    cases: precisions.flatMap((precision) => values.blocks!.split(',').map((bs) => ({ precision, bs: Number(bs) }))),
    densities,
    say,
    time: (record) => time(record),
    random: randomBuffer,
    mark: (layout, product, p) => (denseRouted(layout, product, p) ? ' †' : ''),
    markNote:
      "† the backend's dense route (cuBLAS through a dense copy of W, or a dense dW gathered into blocks, where that measured faster than the block-sparse kernel).",
    label,
  });
  say();
}
await forEachVariant(
  values.variants,
  (key, value) => {
    const previous = be.setTuning(parseTuning(key, value));
    return () => be.setTuning(previous);
  },
  blockSparseTables,
);

// ---- bandwidth ----
if (!values['block-sparse-only']) {
  const n = quick ? 1 << 20 : 1 << 26;
  const bytes = n * 4;
  const a = randomBuffer(n, 6);
  const b = randomBuffer(n, 7);
  const c = be.alloc(n, 'float32');
  const r = be.alloc(n / 1024, 'float32');
  const probe = be.alloc(1, 'float32');
  const flat = (buffer: BackendBuffer) => ({ buffer, shape: [n], strides: [1], offset: 0 });
  const copy = time(() => be.copy(flat(a), flat(c)), 10);
  const rows: [string, number, number][] = [
    ['add (a + b)', time(() => be.binary('add', flat(a), flat(b), c), 10), 3 * bytes],
    ['mul by scalar', time(() => be.binary('mul', flat(a), 2, c), 10), 2 * bytes],
    ['exp', time(() => be.unary('exp', flat(a), c), 10), 2 * bytes],
    ['geluErf', time(() => be.unary('geluErf', flat(a), c), 10), 2 * bytes],
    ['sum of everything', time(() => be.reduce('sum', a, 1, n, 1, probe), 10), bytes],
    ['sum of rows of 1024', time(() => be.reduce('sum', a, n / 1024, 1024, 1, r), 10), bytes],
    ['sum over axis 0 of [1024, n/1024]', time(() => be.reduce('sum', a, 1, 1024, n / 1024, r), 10), bytes],
    ['softmax of rows of 1024', time(() => be.softmax(a, n / 1024, 1024, false, false, c), 10), 2 * bytes],
    ['layer norm of rows of 1024', time(() => be.layerNorm(a, null, null, n / 1024, 1024, 1e-5, c, r, r), 10), 2 * bytes],
  ];
  say(
    `Bandwidth on 2^${Math.log2(n)} floats (bytes read + written per ms). Device-to-device copy (cuMemcpyDtoDAsync): ${((2 * bytes) / copy / 1e6).toFixed(0)} GB/s.`,
  );
  say();
  say('| op | ms | bandwidth (% of copy) |');
  say('| --- | --- | --- |');
  for (const [name, ms, moved] of rows)
    say(`| ${name} | ${ms.toFixed(3)} | ${(moved / ms / 1e6).toFixed(0)} GB/s (${((((copy / ms) * moved) / (2 * bytes)) * 100).toFixed(0)}%) |`);
  say();
  for (const x of [a, b, c, r, probe]) be.free(x);
}

// ---- launch overhead (host side included: what a user's op costs) ----
if (!values['block-sparse-only'])
  say(`Chain of 1000 dependent small adds through the Tensor API, then one readback: **${(await usPerChainedOp()).toFixed(1)} us per op**.`);

if (values.write) doc.write();
process.exit(0);
