/**
 * The dense route of the block-sparse trio: above a density where cuBLAS on dense operands runs a
 * product faster than our block-sparse kernel, the backend takes cuBLAS instead. The forward and
 * dX multiply by a dense copy of W (zeroed, the blocks scattered into it); the SDDMM computes the
 * whole dY^T X and gathers W's blocks out of it. Results are the same products (the absent blocks
 * contribute zeros; dW outside the blocks is never read), so only speed and a temporary
 * [rows, cols] matrix change (in the operands' dtype: bfloat16 operands multiply on cuBLAS's bf16
 * path). The point: no layout runs much slower than the dense layer it
 * replaces (16x16 blocks with tensor cores ran 0.17-0.44x of cuBLAS at density 0.25-0.5 on their
 * kernels; the tensor-core SDDMM 0.69-0.84x at 0.5).
 */
import type { CudaTuning } from './tuning.ts';
import type { Backend, BlockLayout, DType, MatmulPrecision } from '@sparsegrad/core';
import { layoutDensity, matrixAt, type BackendBuffer, type LayoutShape } from '@sparsegrad/core/backend';

export type BsrProduct = 'forward' | 'gradInput' | 'sddmm';

/**
 * Densities from which the dense route is faster, per precision, block size and product: where
 * each kernel's time, interpolated linearly in density between the measured densities 0.1, 0.25
 * and 0.5 (extrapolated past 0.5), meets cuBLAS dense in the same run, averaged over the two
 * benchmark shapes (X [16384, 1024] by W [4096, 1024] and X [16384, 4096] by W [1024, 4096]; H100,
 * `benchmarks/cuda.ts`, docs/benchmarks.md, 2026-11-23). One exception, measured with the route
 * in place: the TF32 forward with 32x32 blocks, whose crossover (0.465) lies where the route's
 * own cost (zeroing and filling the dense W: 0.016-0.05 ms) made it slower than the kernel at 0.5
 * for X [16384, 4096] (0.392 ms against 0.357), so it starts at 0.6. Other GPUs run other
 * kernels and were not measured; these are the best estimate there is for them. 128x128 blocks
 * have no kernel of their own yet (issue 27): they take the dense route from density 0.
 */
const ALWAYS: Record<BsrProduct, number> = { forward: 0, gradInput: 0, sddmm: 0 };
const DENSE_FROM: Record<MatmulPrecision, Record<number, Record<BsrProduct, number>>> = {
  highest: {
    16: { forward: 0.46, gradInput: 0.46, sddmm: 0.36 },
    32: { forward: 0.87, gradInput: 0.82, sddmm: 0.62 },
    64: { forward: 0.77, gradInput: 0.73, sddmm: 0.72 },
    128: ALWAYS,
  },
  high: {
    16: { forward: 0.066, gradInput: 0.089, sddmm: 0.145 },
    32: { forward: 0.6, gradInput: 0.54, sddmm: 0.37 },
    64: { forward: 0.51, gradInput: 0.62, sddmm: 0.48 },
    128: ALWAYS,
  },
  medium: {
    16: { forward: 0.088, gradInput: 0.11, sddmm: 0.15 },
    32: { forward: 0.57, gradInput: 0.69, sddmm: 0.37 },
    64: { forward: 0.6, gradInput: 0.76, sddmm: 0.46 },
    128: ALWAYS,
  },
};
/** The dense temporary is bounded: beyond it the kernels run whatever the density. */
export const MAX_DENSE_BYTES = 1 << 30;

/**
 * Whether `product` takes the dense route. `mode` (the tuning's denseRoute) may force the kernels
 * ('off') or the dense route ('on').
 */
export function takesDenseRoute(layout: LayoutShape, product: BsrProduct, precision: MatmulPrecision, mode: CudaTuning['denseRoute'] = 'auto'): boolean {
  if (mode !== 'auto') return mode === 'on';
  if (layout.rows * layout.cols * 4 > MAX_DENSE_BYTES) return false;
  const from = DENSE_FROM[precision][layout.blockSize]?.[product];
  return from !== undefined && layoutDensity(layout) >= from;
}

/** What the dense route needs from the backend. */
export interface DenseRouteHost {
  alloc(size: number, dtype: DType): BackendBuffer;
  free(b: BackendBuffer): void;
  /** Zeroes the first `size` elements of b (any dtype). */
  zero(b: BackendBuffer, size: number): void;
  matmul: Backend['matmul'];
  /** Block data <-> dense [rows, cols] (bsr_blocks_dense); op names the product in errors. */
  blocksDense(op: string, blocks: BackendBuffer, dense: BackendBuffer, layout: BlockLayout, toDense: boolean): void;
}

export function denseRoute(h: DenseRouteHost) {
  /** W as a dense [rows, cols] temporary. */
  const denseW = (op: string, blocks: BackendBuffer, layout: BlockLayout): BackendBuffer => {
    const w = h.alloc(layout.rows * layout.cols, blocks.dtype);
    h.zero(w, layout.rows * layout.cols);
    h.blocksDense(op, blocks, w, layout, true);
    return w;
  };
  return {
    /** out [m, rows] = x [m, cols] W^T */
    forward(x: BackendBuffer, blocks: BackendBuffer, layout: BlockLayout, m: number, out: BackendBuffer, precision: MatmulPrecision): void {
      const w = denseW('bsrMatmul', blocks, layout);
      h.matmul(matrixAt(x, layout.cols, 1), matrixAt(w, 1, layout.cols), out, 1, m, layout.rows, layout.cols, precision);
      h.free(w);
    },
    /** out [m, cols] = dy [m, rows] W */
    gradInput(dy: BackendBuffer, blocks: BackendBuffer, layout: BlockLayout, m: number, out: BackendBuffer, precision: MatmulPrecision): void {
      const w = denseW('bsrMatmulGradInput', blocks, layout);
      h.matmul(matrixAt(dy, layout.rows, 1), matrixAt(w, layout.cols, 1), out, 1, m, layout.cols, layout.rows, precision);
      h.free(w);
    },
    /** out [nnz, bs, bs] = W's blocks of dy^T x */
    sddmm(dy: BackendBuffer, x: BackendBuffer, layout: BlockLayout, m: number, out: BackendBuffer, precision: MatmulPrecision): void {
      const d = h.alloc(layout.rows * layout.cols, out.dtype);
      h.matmul(matrixAt(dy, 1, layout.rows), matrixAt(x, layout.cols, 1), d, 1, layout.rows, layout.cols, m, precision);
      h.blocksDense('bsrSddmm', out, d, layout, false);
      h.free(d);
    },
  };
}
