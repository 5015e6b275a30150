/**
 * WebGPU backend throughput, calling the backend's primitive kernels directly on random data:
 * dense matmul TFLOP/s, the block-sparse trio against this backend's dense matmul of the same
 * shape and layout, elementwise/reduction bandwidth against a buffer copy, and the per-op cost of
 * a chain of small adds through the Tensor API. Kernel times are device timestamps around a pass
 * of several launches (median over repeats, after a warm-up pass); where the adapter has no
 * timestamps, wall time of the launches plus one readback.
 *
 *   npx tsx benchmarks/webgpu.ts [--quick] [--write] [--tune [--tune-union] [--tune-only]]
 *     [--blocks 32,16,64] [--variants KEY=a,b,...] [--block-sparse-only]
 *
 * --variants repeats the block-sparse tables with the backend's tuning KEY (packages/webgpu/src/
 * tuning.ts) set to each value in turn (e.g. straightLoop=0,1 or tiles=bsr32=16,4,8,8,8|...), so
 * kernel variants are compared against the same dense baselines in one run; --block-sparse-only
 * skips the bandwidth and dispatch parts. --write replaces the WebGPU section of
 * docs/benchmarks.md with the tables printed here. --tune times candidate tile shapes.
 */
import { BlockSparseMatrix, getBackend, manualSeed, setBackend, type Tensor } from '@sparsegrad/core';
import { matrixAt, type BackendBuffer } from '@sparsegrad/core/backend';
import { parseTuning, setDawnOptions, type WebGPUBackend } from '@sparsegrad/webgpu';
import { blockSparseTable, forEachVariant, median, report, usPerChainedOp } from './util.ts';

const quick = process.argv.includes('--quick');
const write = process.argv.includes('--write');
const argValue = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const blockSizes = (argValue('--blocks') ?? '32,16,64').split(',').map(Number);
// Dawn rounds timestamps to 65.5 us unless told otherwise; benchmarks want them exact.
// Device timestamps unquantized (Dawn rounds them to 100 us by default).
setDawnOptions({ flags: ['disable-dawn-features=timestamp_quantization'] });
await setBackend('webgpu');
manualSeed(0);
const be = getBackend() as WebGPUBackend;
const ctx = be.context;
const doc = report('webgpu-benchmark', 'webgpu.ts');
const { say } = doc;

/** Milliseconds per launch of `record` (which only dispatches kernels). */
async function time(record: () => void, launches = 20, repeats = 7): Promise<number> {
  const samples: number[] = [];
  record(); // compiles pipelines and uploads block indexes outside the timed pass
  for (let r = 0; r <= repeats; r++) {
    let ms: number;
    if (ctx.canTime) {
      ms = await ctx.timePass(() => {
        for (let i = 0; i < launches; i++) record();
      });
    } else {
      const t0 = performance.now();
      for (let i = 0; i < launches; i++) record();
      await be.read(probe, 1);
      ms = performance.now() - t0;
    }
    if (r > 0) samples.push(ms / launches); // the first pass is warm-up
  }
  return median(samples);
}

type RawBuffer = ReturnType<typeof ctx.device.createBuffer>;
const probe = be.alloc(1, 'float32');
function randomBuffer(size: number, key: number): BackendBuffer {
  const b = be.alloc(size, 'float32');
  be.random(b, size, { kind: 'normal', key, a: 0, b: 1 });
  return b;
}
const buf = (t: Tensor) => t.storageFor('benchmark').buffer;
const tflops = (flops: number, ms: number) => (flops / ms / 1e9).toFixed(1);

doc.header(be.device.description, ctx.canTime ? 'device timestamps' : 'wall clock (no timestamp-query)');

// ---- tile-shape tuning (--tune): each candidate through the tuning's tiles ----
if (process.argv.includes('--tune')) {
  const N = quick ? 256 : 4096;
  const m = quick ? 256 : 16384;
  const a = randomBuffer(N * N, 1);
  const b = randomBuffer(N * N, 2);
  const c = be.alloc(N * N, 'float32');
  const tiles = (spec: string) => be.context.setTuning({ tiles: spec });
  for (const shape of ['16,16,8,8,4']) {
    tiles(`matmul=${shape}`);
    const ms = await time(() => be.matmul(matrixAt(a, N, 1), matrixAt(b, N, 1), c, 1, N, N, N, 'highest'), 10);
    const mt = await time(() => be.matmul(matrixAt(a, N, 1), matrixAt(b, 1, N), c, 1, N, N, N, 'highest'), 10);
    const tn = await time(() => be.matmul(matrixAt(a, 1, N), matrixAt(b, N, 1), c, 1, N, N, N, 'highest'), 10);
    say(`tune matmul ${shape}: ${tflops(2 * N ** 3, ms)} TFLOP/s, B transposed ${tflops(2 * N ** 3, mt)}, A transposed ${tflops(2 * N ** 3, tn)}`);
  }
  const x = randomBuffer(m * 1024, 3);
  const dy = randomBuffer(m * 4096, 4);
  const y = be.alloc(m * 4096, 'float32');
  const candidates: Record<number, { bsr: string[]; sddmm: string[] }> = {
    16: { bsr: ['32,4,8,4,8'], sddmm: ['4,32,4,4,8'] },
    32: {
      bsr: ['16,8,8,4,16', '16,8,16,4,8', '16,8,16,4,16', '8,8,16,4,16', '32,4,8,8,8', '32,4,8,8,16'],
      sddmm: ['4,32,8,4,8', '4,16,8,8,8', '2,32,16,4,8', '4,32,8,8,8'],
    },
    64: { bsr: ['16,8,8,8,8'], sddmm: ['8,16,8,8,8'] },
  };
  const only = process.argv.includes('--tune-union');
  for (const [bs, density] of only
    ? []
    : [
        [32, 0.5],
        [32, 0.25],
      ]) {
    const W = BlockSparseMatrix.random([4096, 1024], { density, blockSize: bs });
    const dw = be.alloc(W.layout.nnzBlocks * bs * bs, 'float32');
    for (const shape of candidates[bs].bsr) {
      tiles(`bsr${bs}=${shape}`);
      const f = await time(() => be.bsrMatmul(x, buf(W.data), W.layout, m, y, 'highest'), 3);
      const g = await time(() => be.bsrMatmulGradInput(dy, buf(W.data), W.layout, m, y, 'highest'), 3);
      say(`tune bsr${bs} ${shape} density ${density}: forward ${f.toFixed(3)} ms, dX ${g.toFixed(3)} ms`);
    }
    for (const shape of candidates[bs].sddmm) {
      tiles(`sddmm${bs}=${shape}`);
      const g = await time(() => be.bsrSddmm(dy, x, W.layout, m, dw, 'highest'), 3);
      say(`tune sddmm${bs} ${shape} density ${density}: ${g.toFixed(3)} ms`);
    }
    be.free(dw);
    W.data.dispose();
  }
  // Union tiles (forced on) in several shapes against one-block-wide tiles (forced off), both shapes.
  const unionShapes = ['16,16,8,8,8', '16,8,8,8,8', '32,8,8,8,8', '16,16,4,8,8'];
  for (const bs of [32, 16, 64]) {
    for (const [rows, cols] of [
      [4096, 1024],
      [1024, 4096],
    ] as const) {
      const xs = rows === 4096 ? x : dy;
      const dys = rows === 4096 ? dy : x;
      for (const density of [0.5, 0.25, 0.1]) {
        const W = BlockSparseMatrix.random([rows, cols], { density, blockSize: bs });
        const run = async (label: string) => {
          const f = await time(() => be.bsrMatmul(xs, buf(W.data), W.layout, m, y, 'highest'), 3);
          const g = await time(() => be.bsrMatmulGradInput(dys, buf(W.data), W.layout, m, y, 'highest'), 3);
          say(`tune union${bs} [${rows}, ${cols}] density ${density} ${label}: forward ${f.toFixed(3)} ms, dX ${g.toFixed(3)} ms`);
        };
        be.context.setTuning({ unionTiles: 'off' });
        await run('one block wide');
        be.context.setTuning({ unionTiles: 'on' });
        for (const shape of unionShapes) {
          tiles(`union${bs}=${shape};unionGradInput${bs}=${shape}`);
          await run(shape);
        }
        be.context.setTuning({ unionTiles: 'auto' });
        W.data.dispose();
      }
    }
  }
  be.context.setTuning({ tiles: '' });
  for (const t of [a, b, c, x, dy, y]) be.free(t);
  say();
  if (process.argv.includes('--tune-only')) process.exit(0);
}

// ---- dense matmul ----
{
  const N = quick ? 256 : 4096;
  const a = randomBuffer(N * N, 1);
  const b = randomBuffer(N * N, 2);
  const c = be.alloc(N * N, 'float32');
  const nn = await time(() => be.matmul(matrixAt(a, N, 1), matrixAt(b, N, 1), c, 1, N, N, N, 'highest'), 10, 9);
  const nt = await time(() => be.matmul(matrixAt(a, N, 1), matrixAt(b, 1, N), c, 1, N, N, N, 'highest'), 10, 9);
  const tn = await time(() => be.matmul(matrixAt(a, 1, N), matrixAt(b, N, 1), c, 1, N, N, N, 'highest'), 10, 9);
  say(
    `Dense f32 matmul ${N}^3: **${tflops(2 * N ** 3, nn)} TFLOP/s** (${nn.toFixed(2)} ms); with B transposed ${tflops(2 * N ** 3, nt)}, with A transposed ${tflops(2 * N ** 3, tn)}.`,
  );
  say();
  for (const x of [a, b, c]) be.free(x);
}

// ---- block-sparse trio against dense of the same shapes and layouts ----
const M = quick ? 256 : 16384;
const densities = [0.5, 0.25, 0.1];
async function blockSparseTables(label: string): Promise<void> {
  const cases = blockSizes.map((bs) => ({ precision: 'highest' as const, bs }));
  await blockSparseTable({ be, M, cases, densities, say, time: (record) => time(record, 3), random: randomBuffer, label });
  say();
}
await forEachVariant(
  argValue('--variants'),
  (key, value) => {
    const previous = be.context.setTuning(parseTuning(key, value));
    return () => be.context.setTuning(previous);
  },
  blockSparseTables,
);
if (process.argv.includes('--block-sparse-only')) process.exit(0);

// ---- bandwidth ----
{
  const n = quick ? 1 << 20 : 1 << 26;
  const bytes = n * 4;
  const a = randomBuffer(n, 6);
  const b = randomBuffer(n, 7);
  const c = be.alloc(n, 'float32');
  const r = be.alloc(n / 1024, 'float32');
  const flat = (buffer: BackendBuffer) => ({ buffer, shape: [n], strides: [1], offset: 0 });
  // The reference: a buffer-to-buffer copy by the copy engine (wall clock over many copies).
  const gpuA = (a as unknown as { buffer: RawBuffer }).buffer;
  const gpuC = (c as unknown as { buffer: RawBuffer }).buffer;
  const copies: number[] = [];
  for (let rep = 0; rep < 6; rep++) {
    await be.read(probe, 1);
    const t0 = performance.now();
    const enc = ctx.device.createCommandEncoder();
    for (let i = 0; i < 100; i++) enc.copyBufferToBuffer(gpuA, 0, gpuC, 0, bytes);
    ctx.device.queue.submit([enc.finish()]);
    await be.read(probe, 1);
    if (rep > 0) copies.push((performance.now() - t0) / 100);
  }
  const engineCopy = median(copies);
  const kernelCopy = await time(() => be.copy(flat(a), flat(c)));
  const ref = Math.min(engineCopy, kernelCopy);
  const gbs = (moved: number, ms: number) => `${(moved / ms / 1e6).toFixed(0)} GB/s (${((ref / ms) * (moved / (2 * bytes)) * 100).toFixed(0)}%)`;
  const rows: [string, number, number][] = [
    ['copy kernel', kernelCopy, 2 * bytes],
    ['add (a + b)', await time(() => be.binary('add', flat(a), flat(b), c)), 3 * bytes],
    ['mul by scalar', await time(() => be.binary('mul', flat(a), 2, c)), 2 * bytes],
    ['exp', await time(() => be.unary('exp', flat(a), c)), 2 * bytes],
    ['geluErf', await time(() => be.unary('geluErf', flat(a), c)), 2 * bytes],
    ['sum of everything', await time(() => be.reduce('sum', a, 1, n, 1, probe)), bytes],
    ['sum of rows of 1024', await time(() => be.reduce('sum', a, n / 1024, 1024, 1, r)), bytes],
    ['sum over axis 0 of [1024, n/1024]', await time(() => be.reduce('sum', a, 1, 1024, n / 1024, r)), bytes],
    ['max of rows of 1024', await time(() => be.reduce('max', a, n / 1024, 1024, 1, r)), bytes],
    ['softmax of rows of 1024', await time(() => be.softmax(a, n / 1024, 1024, false, false, c)), 2 * bytes],
  ];
  say(
    `Bandwidth on 2^${Math.log2(n)} floats (bytes read + written per ms). Copy engine (copyBufferToBuffer, wall clock): ${((2 * bytes) / engineCopy / 1e6).toFixed(0)} GB/s; percentages are of the faster of that and the copy kernel.`,
  );
  say();
  say('| op | ms | bandwidth (% of copy) |');
  say('| --- | --- | --- |');
  for (const [name, ms, moved] of rows) say(`| ${name} | ${ms.toFixed(3)} | ${gbs(moved, ms)} |`);
  say();
  for (const x of [a, b, c, r]) be.free(x);
}

// ---- dispatch overhead (host side included: this is what a user's op costs) ----
say(`Chain of 1000 dependent small adds through the Tensor API, then one readback: **${(await usPerChainedOp()).toFixed(1)} us per op**.`);

if (write) doc.write();
process.exit(0);
