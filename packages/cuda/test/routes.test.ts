/**
 * Without a GPU: which kernel each block-sparse product runs (blocksparse-routes.ts), for each
 * device kind, precision, block size, density and forced tuning. The kernels' numbers themselves
 * are checked on the GPU host (cuda.test.ts) and their names against the fatbins
 * (kernel-names.test.ts); this holds the rules that pick among them.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MatmulPrecision } from '@sparsegrad/core';
import { type LayoutShape, orderBand } from '@sparsegrad/core/backend';
import {
  type KernelConstants,
  type RouteContext,
  halfProductRoute,
  halfSddmmRoute,
  orderBandTokens,
  productRoute,
  sddmmRoute,
} from '../src/blocksparse-routes.ts';
import { type CudaTuning, DEFAULT_CUDA_TUNING } from '../src/tuning.ts';

const constants: KernelConstants = {
  tc: Int32Array.from({ length: 21 }, (_, i) => 1000 + i),
  union: { group: 2, tokens: 128, smem: [500, 501] },
  bf16Union: { group: 4, tokens: 128, smem: 600 },
  tma: { group: 2, tokens: 128, maxSteps: 128, smem: { tf32: 700, bf16: 701, f32: 702 }, f32Threads: 256 },
  sddmmTile: { limits: { rows: 8, cols: 16, blocks: 64 }, threads: 256, smem: 200000, tokenStep: 32 },
};
const on = (hopper: boolean, tuning: Partial<CudaTuning> = {}): RouteContext => ({ hopper, tuning: { ...DEFAULT_CUDA_TUNING, ...tuning }, constants });
const H100 = on(true);
const A100 = on(false);
/** W [rows, cols] with `density` of its blockSize x blockSize blocks stored. */
const W = (rows: number, cols: number, blockSize: number, density: number): LayoutShape => ({
  rows,
  cols,
  blockSize,
  nnzBlocks: Math.round((rows / blockSize) * (cols / blockSize) * density),
});
const kernel = (layout: LayoutShape, product: 'forward' | 'gradInput', precision: MatmulPrecision, c: RouteContext) => {
  const r = productRoute(layout, product, precision, c);
  return r.route === 'dense' ? 'dense' : `${r.kernel.name}${r.route === 'union' && r.split64 ? ' (split64)' : ''}`;
};

test('dense route above the measured densities, kernels below, and as the tuning forces', () => {
  assert.is(kernel(W(4096, 1024, 32, 0.9), 'forward', 'highest', H100), 'dense');
  assert.is(kernel(W(4096, 1024, 16, 0.25), 'forward', 'high', H100), 'dense'); // 16x16 tensor cores from 0.066
  assert.is(kernel(W(4096, 1024, 32, 0.9), 'forward', 'highest', on(true, { denseRoute: 'off' })), 'bsr_tma_f32_32');
  assert.is(kernel(W(4096, 1024, 32, 0.1), 'forward', 'highest', on(true, { denseRoute: 'on' })), 'dense');
});

test('32x32 on Hopper: TMA union tiles, fp32 FMA for highest, bf16 operands for medium where density x output width >= 1024', () => {
  const r = productRoute(W(4096, 1024, 32, 0.5), 'forward', 'highest', H100);
  assert.ok(r.route === 'union' && r.kernel.tma && r.kernel.ordered && r.kernel.group === 1);
  assert.is(kernel(W(4096, 1024, 32, 0.5), 'forward', 'high', H100), 'bsr_tma_tf32_32');
  assert.is(kernel(W(4096, 1024, 32, 0.25), 'gradInput', 'high', H100), 'bsr_tma_tf32_32');
  assert.is(kernel(W(4096, 1024, 32, 0.5), 'forward', 'medium', H100), 'bsr_tma_bf16_32'); // 0.5 x 4096 outputs
  assert.is(kernel(W(1024, 4096, 32, 0.25), 'forward', 'medium', H100), 'bsr_tma_tf32_32'); // 0.25 x 1024
  assert.is(kernel(W(1024, 4096, 32, 0.25), 'gradInput', 'medium', H100), 'bsr_tma_bf16_32'); // dX: 0.25 x 4096
  assert.is(kernel(W(1024, 4096, 32, 0.25), 'forward', 'medium', on(true, { bf16Union: 'on' })), 'bsr_tma_bf16_32');
  assert.is(kernel(W(4096, 1024, 32, 0.5), 'forward', 'medium', on(true, { bf16Union: 'off' })), 'bsr_tma_tf32_32');
});

test('bfloat16 tensors: the bf16 TMA tiles at any density below the dense route on Hopper (64x64 as quadrants), widened copies elsewhere; dW dense', () => {
  const half = (layout: LayoutShape, product: 'forward' | 'gradInput', c: RouteContext) => {
    const r = halfProductRoute(layout, product, c);
    return r.route === 'union' ? r.kernel.name : r.route;
  };
  assert.is(half(W(1024, 4096, 32, 0.25), 'forward', H100), 'bsr_tma_bf16_bf16_32'); // 'medium' would take TF32 here
  assert.is(half(W(4096, 1024, 32, 0.1), 'gradInput', H100), 'bsr_tma_bf16_bf16_32');
  assert.is(half(W(4096, 1024, 32, 0.9), 'forward', H100), 'dense');
  assert.is(half(W(4096, 1024, 32, 0.25), 'forward', A100), 'widened');
  assert.is(half(W(4096, 1024, 64, 0.25), 'forward', H100), 'bsr_tma_bf16_bf16_32');
  assert.ok((halfProductRoute(W(4096, 1024, 64, 0.25), 'forward', H100) as { split64: boolean }).split64, '64x64 through quadrants');
  assert.is(half(W(4096, 1024, 16, 0.05), 'forward', H100), 'widened'); // 16x16 below its dense route (from 0.088)
  assert.is(half(W(4096, 1024, 32, 0.25), 'forward', on(true, { tma: false })), 'widened');
  assert.is(halfSddmmRoute(W(4096, 1024, 32, 0.1), H100), 'dense');
  assert.is(halfSddmmRoute(W(4096, 1024, 32, 0.1), on(true, { denseRoute: 'off' })), 'widened');
  assert.is(halfSddmmRoute(W(32768, 32768, 32, 0.1), H100), 'widened'); // a 2 GiB dense temporary
});

test('128x128 blocks: a dense copy of W for every product and dtype, an Error past its bound or with the dense route off', () => {
  assert.is(kernel(W(4096, 1024, 128, 0.1), 'forward', 'highest', H100), 'dense');
  assert.is(kernel(W(4096, 1024, 128, 0.1), 'gradInput', 'high', A100), 'dense');
  assert.is(sddmmRoute(W(4096, 1024, 128, 0.1), 'medium', H100).route, 'dense');
  assert.is(halfProductRoute(W(4096, 1024, 128, 0.1), 'forward', H100).route, 'dense');
  assert.throws(
    () => productRoute(W(32768, 16384, 128, 0.1), 'forward', 'high', H100),
    /bsrMatmul: 128x128 blocks run on a dense copy of W .* would exceed 1 GiB/,
  );
  assert.throws(() => productRoute(W(4096, 1024, 128, 0.1), 'forward', 'high', on(true, { denseRoute: 'off' })), /no kernel for 128x128 blocks/);
});

test('32x32 off Hopper (or past the TMA kernels limit): mma.sync union tiles where they measured faster, else line kernels', () => {
  assert.is(kernel(W(4096, 1024, 32, 0.5), 'forward', 'high', A100), 'bsr_union_tf32_32');
  assert.is(kernel(W(4096, 1024, 32, 0.25), 'gradInput', 'high', A100), 'bsr_union_tf32_32');
  assert.is(kernel(W(4096, 1024, 32, 0.1), 'gradInput', 'high', A100), 'bsr_grad_input_tc_tf32_32'); // dX union from 0.2
  assert.is(kernel(W(4096, 1024, 32, 0.5), 'forward', 'medium', A100), 'bsr_union_bf16u4_32'); // 0.5 x 4096 >= 512
  assert.is(kernel(W(1024, 4096, 32, 0.25), 'forward', 'medium', A100), 'bsr_forward_tc_bf16_32'); // 0.25 x 1024 < 512
  assert.is(kernel(W(4096, 1024, 32, 0.5), 'forward', 'highest', A100), 'bsr_forward_32');
  assert.is(kernel(W(4096, 1024, 32, 0.5), 'forward', 'high', on(true, { tma: false })), 'bsr_union_tf32_32');
  assert.is(kernel(W(1024, 4096, 32, 0.1), 'gradInput', 'high', on(false, { union: 'on' })), 'bsr_union_tf32_32');
  assert.is(kernel(W(4096, 1024, 32, 0.5), 'forward', 'high', on(false, { union: 'off' })), 'bsr_forward_tc_tf32_32');
  // Activations of more than maxSteps (128) column blocks: no TMA kernel.
  assert.is(kernel(W(1024, 8192, 32, 0.1), 'forward', 'high', H100), 'bsr_union_tf32_32');
});

test('64x64: tensor cores on Hopper through the 32x32 quadrants; fp32 and other devices keep the 64x64 kernels', () => {
  const r = productRoute(W(4096, 1024, 64, 0.25), 'forward', 'high', H100);
  assert.ok(r.route === 'union' && r.split64 && r.kernel.name === 'bsr_tma_tf32_32');
  assert.is(kernel(W(4096, 1024, 64, 0.5), 'forward', 'medium', H100), 'bsr_tma_bf16_32 (split64)');
  assert.is(kernel(W(4096, 1024, 64, 0.25), 'forward', 'highest', H100), 'bsr_forward_64');
  assert.is(kernel(W(4096, 1024, 64, 0.25), 'gradInput', 'high', A100), 'bsr_grad_input_tc_tf32_64');
  assert.is(kernel(W(4096, 1024, 64, 0.25), 'forward', 'high', on(true, { tma: false })), 'bsr_forward_tc_tf32_64');
});

test('line kernels carry their shared memory and token tiles from the kernels table', () => {
  const r = productRoute(W(1024, 1024, 16, 0.05), 'gradInput', 'medium', H100);
  assert.equal(r, { route: 'lines', kernel: { name: 'bsr_grad_input_tc_bf16_16', smem: 1000 + 6 + 3, tokens: 1000 + 18 } });
  assert.equal(productRoute(W(1024, 1024, 16, 0.25), 'forward', 'highest', H100), { route: 'lines', kernel: { name: 'bsr_forward_16', smem: 0, tokens: 256 } });
});

test('SDDMM: the 2-D tile kernel for fp32 32x32 on Hopper, on W^T for tall layouts; TF32 kernel for medium', () => {
  assert.equal(sddmmRoute(W(4096, 1024, 32, 0.25), 'highest', H100), { route: 'tile', transpose: true });
  assert.equal(sddmmRoute(W(1024, 4096, 32, 0.25), 'highest', H100), { route: 'tile', transpose: false });
  assert.equal(sddmmRoute(W(4096, 1024, 32, 0.25), 'highest', on(true, { sddmmTranspose: 'off' })), { route: 'tile', transpose: false });
  const tall = sddmmRoute(W(4096, 1024, 32, 0.1), 'medium', H100);
  assert.ok(tall.route === 'lines' && tall.transpose && tall.kernel.name === 'bsr_sddmm_tc_tf32_32');
  const at25 = sddmmRoute(W(4096, 1024, 32, 0.25), 'high', H100);
  assert.ok(at25.route === 'lines' && !at25.transpose); // tensor cores transpose below 0.2 only
  const a100 = sddmmRoute(W(4096, 1024, 32, 0.25), 'highest', A100);
  assert.ok(a100.route === 'lines' && !a100.transpose && a100.kernel.name === 'bsr_sddmm_32');
  assert.equal(sddmmRoute(W(4096, 1024, 64, 0.25), 'highest', on(true, { sddmmTranspose: 'on' })).route, 'lines');
  assert.equal(sddmmRoute(W(4096, 1024, 32, 0.9), 'high', H100), { route: 'dense' });
});

test('unsupported block sizes name the product and the sizes there are', () => {
  assert.throws(
    () => productRoute(W(1024, 1024, 8, 0.1), 'gradInput', 'highest', H100),
    /cuda: bsrMatmulGradInput: no kernel for 8x8 blocks \(16, 32 and 64 have kernels; 128 runs on a dense copy of W\)/,
  );
  assert.throws(() => sddmmRoute(W(1024, 1024, 128, 0.1), 'highest', on(true, { denseRoute: 'off' })), /cuda: bsrSddmm: no kernel for 128x128 blocks/);
});

test('work-order bands: 2048 tokens for lines of 4 blocks or more, else the plain order', () => {
  assert.is(orderBand(orderBandTokens(12.8), 128, 128), 16);
  assert.is(orderBand(orderBandTokens(3.2), 128, 128), 0);
  assert.is(orderBand(orderBandTokens(12.8), 128, 8), 8);
  assert.is(orderBand(orderBandTokens(3.2), 128, 128, 4), 4); // the tuning's bandTiles
});

test.run();
