/**
 * Where the WebGPU SDDMM (dW) of the block-sparse benchmark's 32x32 layouts spends its time: the
 * token-chunk kernel and the reduction of its partial sums, each dispatch in a timed pass of its
 * own (the context's profiler), per call, on the layouts benchmarks/webgpu.ts seeds.
 *
 *   npx tsx benchmarks/webgpu-sddmm-parts.ts
 */
import { getBackend, setBackend } from '@sparsegrad/core';
import { setDawnOptions, type WebGPUBackend } from '@sparsegrad/webgpu';
import { benchmarkLayout } from './util.ts';
// Dawn rounds timestamps to 65.5 us unless told otherwise.
// Device timestamps unquantized (Dawn rounds them to 100 us by default).
setDawnOptions({ flags: ['disable-dawn-features=timestamp_quantization'] });
await setBackend('webgpu');
const be = getBackend();
const ctx = (be as WebGPUBackend).context;
const M = 16384;
const rnd = (n: number, key: number) => {
  const b = be.alloc(n, 'float32');
  be.random(b, n, { kind: 'normal', key, a: 0, b: 1 });
  return b;
};
for (const [rows, cols] of [
  [4096, 1024],
  [1024, 4096],
]) {
  for (const density of [0.5, 0.25, 0.1]) {
    const W = benchmarkLayout(be, rows, cols, 32, density);
    const x = rnd(M * cols, 3),
      dy = rnd(M * rows, 4),
      dw = be.alloc(W.layout.nnzBlocks * 1024, 'float32');
    for (let i = 0; i < 3; i++) be.bsrSddmm(dy, x, W.layout, M, dw, 'highest');
    await be.read(dw, 1);
    ctx.startProfile();
    for (let i = 0; i < 5; i++) be.bsrSddmm(dy, x, W.layout, M, dw, 'highest');
    await be.read(dw, 1);
    const times = await ctx.stopProfile();
    console.log(`W [${rows}, ${cols}] density ${density}: ${[...times].map(([op, t]) => `${op} ${(t.ms / 5).toFixed(3)} ms x${t.count / 5}`).join(', ')}`);
  }
}
process.exit(0);
