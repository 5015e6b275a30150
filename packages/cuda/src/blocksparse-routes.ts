/**
 * Which kernel runs a block-sparse product on the CUDA backend: pure functions of the layout's
 * shape and density, the precision, the device (Hopper or not), the tuning and the launch
 * constants the kernels define. kernels/blocksparse.ts launches what these choose; the tests
 * check each rule without a GPU. Every rule cites the H100 measurement behind it (docs and
 * numbers: DESIGN.md, docs/benchmarks.md).
 */
import type { MatmulPrecision } from '@sparsegrad/core';
import { type LayoutShape, layoutDensity } from '@sparsegrad/core/backend';
import { type BsrProduct, MAX_DENSE_BYTES, takesDenseRoute } from './dense-route.ts';
import type { CudaTuning } from './tuning.ts';

/** Launch constants as the kernels define them, read from the device once (setup kernels). */
export interface KernelConstants {
  /** bsr_tc_smem: shared memory by [forward, grad_input, sddmm] x [tf32, bf16] x [16, 32, 64], then tokens by block size. */
  tc: Int32Array;
  /** mma.sync union tiles (blocksparse_tc.cu): shared memory by [tf32, bf16]. */
  union: { group: number; tokens: number; smem: [number, number] };
  /** BF16 union tiles on bf16 operand copies (blocksparse_bf16.cu). */
  bf16Union: { group: number; tokens: number; smem: number };
  /** TMA union tiles (blocksparse_tma.cu, sm_90a): at most maxSteps activation column blocks. */
  tma: { group: number; tokens: number; maxSteps: number; smem: { tf32: number; bf16: number; f32: number }; f32Threads: number };
  /** The 2-D tile SDDMM (blocksparse_sddmm_tile.cu). */
  sddmmTile: { limits: { rows: number; cols: number; blocks: number }; threads: number; smem: number; tokenStep: number };
}

export interface RouteContext {
  /** Compute capability 9.0: the sm_90a kernels (TMA, wgmma) run. */
  hopper: boolean;
  tuning: Readonly<CudaTuning>;
  constants: KernelConstants;
}

/** A union-tile kernel: its name, launch shape, whether it reads bf16 operands, and whether through TMA tensor maps. */
export interface UnionKernel {
  name: string;
  group: number;
  tokens: number;
  smem: number;
  bf16: boolean;
  tma?: boolean;
  /** Threads per CTA where not 384 (a producer warpgroup and two consumer warpgroups). */
  threads?: number;
  /** Whether its grid runs longest first in bands of token tiles (orderBand; TMA kernels only). */
  ordered?: boolean;
}
/** A kernel over one block row (column) per CTA and a tile of tokens. */
export interface LineKernel {
  name: string;
  smem: number;
  tokens: number;
}

/**
 * The forward or dX route: cuBLAS on a dense copy of W (dense-route.ts), union tiles (a 64x64
 * layout through its 32x32 quadrants where `split64`), or one block row (column) per CTA.
 */
export type ProductRoute = { route: 'dense' } | { route: 'union'; kernel: UnionKernel; split64: boolean } | { route: 'lines'; kernel: LineKernel };

/**
 * The dW route: dense, the 2-D tile kernel or the line kernel, on W's layout or (transpose) on
 * W^T's, whose result is transposed back.
 */
export type SddmmRoute = { route: 'dense' } | { route: 'tile'; transpose: boolean } | { route: 'lines'; kernel: LineKernel; transpose: boolean };

/** fp32 line kernels: tokens per CTA by block size (native/kernels/blocksparse.cu); 128 threads. */
const FP32_TOKENS: Record<number, number> = { 16: 256, 32: 128, 64: 128 };
const OP_NAMES: Record<BsrProduct, string> = { forward: 'bsrMatmul', gradInput: 'bsrMatmulGradInput', sddmm: 'bsrSddmm' };
const KERNEL_KINDS: Record<BsrProduct, string> = { forward: 'forward', gradInput: 'grad_input', sddmm: 'sddmm' };

function checkBlockSize(product: BsrProduct, layout: LayoutShape): void {
  const bs = layout.blockSize;
  // 128x128 blocks reach here only where their dense route (dense-route.ts) cannot run.
  if (bs === 128 && layout.rows * layout.cols * 4 > MAX_DENSE_BYTES)
    throw new Error(
      `cuda: ${OP_NAMES[product]}: 128x128 blocks run on a dense copy of W (no kernel of their own yet), which for W [${layout.rows}, ${layout.cols}] would exceed ${MAX_DENSE_BYTES / 2 ** 30} GiB`,
    );
  if (!FP32_TOKENS[bs])
    throw new Error(`cuda: ${OP_NAMES[product]}: no kernel for ${bs}x${bs} blocks (16, 32 and 64 have kernels; 128 runs on a dense copy of W)`);
}

export function productRoute(layout: LayoutShape, product: 'forward' | 'gradInput', precision: MatmulPrecision, c: RouteContext): ProductRoute {
  if (takesDenseRoute(layout, product, precision, c.tuning.denseRoute)) return { route: 'dense' };
  checkBlockSize(product, layout);
  const forward = product === 'forward';
  // 64x64 blocks with tensor cores on Hopper run the 32x32 TMA kernels on their quadrants (a split
  // pass first copies nnz x 16 KB). On an H100 this took the TF32 forward at density 0.5 from 0.68
  // to 0.36 ms (X [16384, 1024] by W [4096, 1024]) and was faster for every product and density in
  // TF32 and BF16. In fp32 the 64x64 SIMT kernels (8 x 8 outputs per thread) are as fast or faster
  // below density 0.5, so 'highest' keeps them.
  if (layout.blockSize === 64 && c.hopper && precision !== 'highest') {
    const kernel = tmaKernel({ ...layout, blockSize: 32, nnzBlocks: layout.nnzBlocks * 4 }, precision, forward, c);
    if (kernel) return { route: 'union', kernel, split64: true };
  }
  const union = unionKernel(layout, precision, forward, c);
  if (union) return { route: 'union', kernel: union, split64: false };
  return { route: 'lines', kernel: lineKernel(product, layout.blockSize, precision, c) };
}

/**
 * The union-tile kernel for a 32x32 forward or dX: the TMA kernels on Hopper, mma.sync ones for
 * tensor cores elsewhere, or null for the line kernels.
 */
function unionKernel(layout: LayoutShape, precision: MatmulPrecision, forward: boolean, c: RouteContext): UnionKernel | null {
  const t = tmaKernel(layout, precision, forward, c);
  if (t) return t;
  const { union, bf16Union } = c.constants;
  if (useBf16Union(layout, precision, forward, c.tuning))
    return { name: `bsr_union_bf16u${bf16Union.group}_32`, group: bf16Union.group, tokens: bf16Union.tokens, smem: bf16Union.smem, bf16: true };
  if (useUnion(layout, precision, forward, c.tuning)) {
    const bf16 = precision !== 'high';
    return { name: `bsr_union_${bf16 ? 'bf16' : 'tf32'}_32`, group: union.group, tokens: union.tokens, smem: union.smem[bf16 ? 1 : 0], bf16: false };
  }
  return null;
}

/**
 * TMA union tiles (blocksparse_tma.cu, sm_90a): every 32x32 forward and dX on Hopper whose
 * activations have at most maxSteps column blocks. 'highest' runs the fp32 FMA consumer on one
 * block row per CTA: 41 vs 35 TFLOP/s per stored block for the SIMT line kernel at density 0.5
 * (1.67 vs 1.95 ms), faster at every density. On an H100 (density 0.5, X [16384, 1024] by W
 * [4096, 1024]) they took the TF32 forward from 0.77 ms (the mma.sync union tiles) to 0.39 and dX
 * from 0.78 to 0.39, and were faster at every density measured. 'medium' runs them on bf16 copies
 * of the operands where density x output width >= 1024 (forward 0.34 vs 0.39 ms in TF32 at
 * density 0.5); below that the conversion pass costs more than it saves, and 'medium' runs the
 * TF32 kernel (more precise, same speed or faster). The tuning's tma turns them off, bf16Union
 * forces bf16 operands on or off.
 */
function tmaKernel(layout: LayoutShape, precision: MatmulPrecision, forward: boolean, c: RouteContext): UnionKernel | null {
  const { tma } = c.constants;
  const [actCols, outCols] = forward ? [layout.cols, layout.rows] : [layout.rows, layout.cols];
  if (!c.hopper || layout.blockSize !== 32 || !c.tuning.tma || actCols / 32 > tma.maxSteps) return null;
  if (precision === 'highest')
    return { name: 'bsr_tma_f32_32', group: 1, tokens: tma.tokens, smem: tma.smem.f32, bf16: false, tma: true, threads: tma.f32Threads, ordered: true };
  const force = c.tuning.bf16Union;
  const bf16 = precision === 'medium' && force !== 'off' && (force === 'on' || layoutDensity(layout) * outCols >= 1024);
  return { name: `bsr_tma_${bf16 ? 'bf16' : 'tf32'}_32`, group: tma.group, tokens: tma.tokens, smem: bf16 ? tma.smem.bf16 : tma.smem.tf32, bf16, tma: true };
}

/**
 * BF16 union tiles on bf16 copies of the operands (blocksparse_bf16.cu), for 'medium' 32x32
 * forward and dX off Hopper where they measured faster than the fp32-operand kernels. The
 * conversion pass costs ~0.035 ms per 64 MB of activations and the product's work grows with
 * density x output width, so they pay when density x output width >= 512 (X [16384, 1024] -> 4096
 * outputs at density 0.5: 0.74 -> 0.58 ms; X [16384, 4096] -> 1024 outputs at 0.25: 0.36 -> 0.47
 * ms, not used). The tuning's bf16Union forces them on or off.
 */
function useBf16Union(layout: LayoutShape, precision: MatmulPrecision, forward: boolean, tuning: Readonly<CudaTuning>): boolean {
  if (layout.blockSize !== 32 || precision !== 'medium' || tuning.bf16Union === 'off') return false;
  return tuning.bf16Union === 'on' || layoutDensity(layout) * (forward ? layout.rows : layout.cols) >= 512;
}

/**
 * mma.sync union tiles (blocksparse_tc.cu) for 32x32 blocks where they measured faster on an
 * H100: the TF32 forward (1.06 -> 0.76 ms at density 0.5) and the TF32 dX from density 0.2 (1.05
 * -> 0.78 ms at 0.5; 6% slower at 0.1). With fp32 operands the BF16 fragments' conversions make
 * them slower. The tuning's union 'on' uses them for every tensor-core forward and dX, 'off' never.
 */
function useUnion(layout: LayoutShape, precision: MatmulPrecision, forward: boolean, tuning: Readonly<CudaTuning>): boolean {
  if (layout.blockSize !== 32 || precision === 'highest' || tuning.union === 'off') return false;
  if (tuning.union === 'on') return true;
  return precision === 'high' && (forward || layoutDensity(layout) >= 0.2);
}

/** The line kernel for a product: fp32 FMA for 'highest', tensor cores otherwise. */
function lineKernel(product: BsrProduct, bs: number, precision: MatmulPrecision, c: RouteContext): LineKernel {
  const kind = KERNEL_KINDS[product];
  if (precision === 'highest') return { name: `bsr_${kind}_${bs}`, smem: 0, tokens: FP32_TOKENS[bs] };
  // 'medium' SDDMM runs the TF32 kernel: the BF16 one converts its fp32 operands in the inner
  // loop and measured slower on an H100 at every block size and density (32x32 at density 0.5:
  // 1.27 vs 0.89 ms), and TF32 is the more precise of the two.
  const bf16 = precision === 'medium' && product !== 'sddmm';
  const b = Math.log2(bs) - 4;
  const smem = c.constants.tc[(['forward', 'gradInput', 'sddmm'] as const).indexOf(product) * 6 + (bf16 ? 3 : 0) + b];
  return { name: `bsr_${kind}_tc_${bf16 ? 'bf16' : 'tf32'}_${bs}`, smem, tokens: c.constants.tc[18 + b] };
}

/**
 * The route of a bfloat16 forward or dX (bf16 activations, blocks and output): the dense route
 * where 'medium' takes it; on Hopper with 32x32 blocks the bf16 TMA union tiles, reading the
 * tensors as they are and writing bf16 (no conversion pass: what the 'medium' route pays for on
 * fp32 tensors, so it is taken at every density), 64x64 blocks through their quadrants; 'widened'
 * elsewhere (16x16 blocks, older GPUs): the float32 kernels on float32 copies (core's `widened`),
 * exact but with the copies' traffic.
 */
export type HalfProductRoute = { route: 'dense' } | { route: 'union'; kernel: UnionKernel; split64: boolean } | { route: 'widened' };
export function halfProductRoute(layout: LayoutShape, product: 'forward' | 'gradInput', c: RouteContext): HalfProductRoute {
  if (takesDenseRoute(layout, product, 'medium', c.tuning.denseRoute)) return { route: 'dense' };
  const { tma } = c.constants;
  const actCols = product === 'forward' ? layout.cols : layout.rows;
  // 64x64 blocks as their 32x32 quadrants (copied, 8 KB a block), as the float32 routes take them.
  if (!c.hopper || (layout.blockSize !== 32 && layout.blockSize !== 64) || !c.tuning.tma || actCols / 32 > tma.maxSteps) return { route: 'widened' };
  const kernel = { name: 'bsr_tma_bf16_bf16_32', group: tma.group, tokens: tma.tokens, smem: tma.smem.bf16, bf16: true, tma: true };
  return { route: 'union', kernel, split64: layout.blockSize === 64 };
}

/**
 * The route of a bfloat16 dW: cuBLAS's bf16 product of the whole dY^T X, its blocks gathered (the
 * SDDMM kernels read float32, and widening dY and X costs more traffic than the dense product's
 * extra work at the GPT MLP shapes measured), or 'widened' where the dense temporary would be too
 * large or the tuning turns the dense route off.
 */
export function halfSddmmRoute(layout: LayoutShape, c: RouteContext): 'dense' | 'widened' {
  if (c.tuning.denseRoute === 'off') return 'widened';
  return layout.rows * layout.cols * 2 <= MAX_DENSE_BYTES ? 'dense' : 'widened';
}

export function sddmmRoute(layout: LayoutShape, precision: MatmulPrecision, c: RouteContext): SddmmRoute {
  if (takesDenseRoute(layout, 'sddmm', precision, c.tuning.denseRoute)) return { route: 'dense' };
  checkBlockSize('sddmm', layout);
  const transpose = sddmmTransposes(layout, precision, c);
  if (useSddmmTile(layout, precision, c)) return { route: 'tile', transpose };
  return { route: 'lines', kernel: lineKernel('sddmm', layout.blockSize, precision, c), transpose };
}

/**
 * 2-D SDDMM tiles in fp32 (blocksparse_sddmm_tile.cu, 200 KB of shared memory: Hopper): 8 block
 * rows by up to 16 block columns per CTA, only the blocks present computed, 8 x 8 outputs per
 * thread. On an H100 ('highest', 32x32) dW went 2.448 -> 2.168 ms at density 0.5 for X [16384,
 * 1024] by W [4096, 1024], 1.251 -> 1.024 at 0.25 for X [16384, 4096] by W [1024, 4096], faster in
 * 5 of the 6 benchmark cases (6% slower at 0.5 for the second shape). The tuning's sddmmTile
 * turns them off.
 */
function useSddmmTile(layout: LayoutShape, precision: MatmulPrecision, c: RouteContext): boolean {
  return c.hopper && layout.blockSize === 32 && precision === 'highest' && c.tuning.sddmmTile;
}

/**
 * Whether the SDDMM runs on W^T: for 32x32 layouts taller than wide, with the 'highest' 2-D tile
 * kernel, or below density 0.2 with the tensor-core one. On an H100 (NOTES 39) dW of W [4096,
 * 1024] went 1.16 -> 1.02-1.03 ms at density 0.25 and 0.65 -> 0.58 at 0.1 in 'highest' (0.5
 * unchanged), and 0.23 -> 0.20 at 0.1 in TF32 / BF16, where 0.25 ran 2% slower. The tuning's
 * sddmmTranspose turns it off or forces it for any 32x32 layout.
 */
function sddmmTransposes(layout: LayoutShape, precision: MatmulPrecision, c: RouteContext): boolean {
  const forced = c.tuning.sddmmTranspose;
  if (layout.blockSize !== 32 || layout.nnzBlocks === 0 || forced === 'off') return false;
  return forced === 'on' || (layout.rows > layout.cols && (useSddmmTile(layout, precision, c) || layoutDensity(layout) < 0.2));
}

/**
 * Tokens per band of the fp32 TMA kernel's grid order (blocksparse_tma.cu): within a band the
 * block rows (columns) run longest first, each over the band's token tiles, so that the CTAs
 * still running at the end are short ones while the band's activations stay in L2. 0: the plain
 * order, kept for lines of under 4 blocks on average, whose CTAs are short enough that the order
 * costs more locality than it saves tail. On an H100 (NOTES 40) bands of 2048 tokens took
 * 'highest' forward and dX at density 0.5 from 1.66-1.68 to 1.62-1.66 ms, 0.25 from 0.87-0.90 to
 * 0.82-0.90; at 0.1 lines of 12.8 blocks gained 4-5% and lines of 3.2 lost 5%. Core's orderBand
 * turns it into token tiles (or the tuning's bandTiles).
 */
export function orderBandTokens(blocksPerLine: number): number {
  return blocksPerLine >= 4 ? 2048 : 0;
}
