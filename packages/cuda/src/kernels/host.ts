/**
 * What the CUDA kernel families share: the host each family is built from (launching, memory, the
 * row and reduction launches families ask of each other) and the launch constants.
 */
import type { DType } from '@sparsegrad/core';
import type { BackendBuffer } from '@sparsegrad/core/backend';
import type { CachingAllocator, CudaBuffer } from '../allocator.ts';
import type { Args } from '../args.ts';
import type { CudaBackend } from '../backend.ts';
import type { deviceIndexErrors } from '../index-errors.ts';
import type { Addon } from '../native.ts';
import type { CudaTuning } from '../tuning.ts';

export const THREADS = 256;
/** Rows up to this long are reduced by one warp each (kernels *_warp), longer ones by a block. */
export const WARP_ROW = 1024;
/** A dtype's name in kernel names (copy_f32_bf16, ...). */
export const tname = (d: DType) => ({ float32: 'f32', int32: 'i32', bfloat16: 'bf16', float16: 'f16' })[d];
/** The suffix of a kernel's 16-bit forms (softmax_bf16, sum_rows_f16): none for float32. */
export const halfSuffix = (d: DType) => (d === 'float32' ? '' : `_${tname(d)}`);
/** A buffer's device pointer. */
export const P = (b: BackendBuffer) => (b as CudaBuffer).ptr;

export interface CudaHost {
  readonly addon: Addon;
  readonly allocator: CachingAllocator;
  /** The one argument builder (reset before each launch). */
  readonly args: Args;
  readonly sms: number;
  /** Compute capability 9.0: the sm_90a kernels (TMA, wgmma) run. */
  readonly hopper: boolean;
  /** The routes in use (tuning.ts). */
  tuning(): Readonly<CudaTuning>;
  launch(op: string, kernel: string, grid: [number, number, number], threads: number, a: Args, sharedBytes?: number): void;
  alloc(size: number, dtype: DType): CudaBuffer;
  free(b: BackendBuffer): void;
  /** A device copy of host data (block-sparse index tables). */
  upload(data: Int32Array): CudaBuffer;
  /** Blocks for a grid-stride loop over n items: enough to fill the GPU, no more. */
  blocksFor(n: number, perBlock?: number): number;
  /** How many pieces to cut a reduction of `n` into when only `outputs` results would keep the GPU too idle. */
  piecesFor(outputs: number, n: number, minPiece: number): number;
  /** A row-wise kernel (softmax, layer norm, row reductions): a warp per row for short rows, else a block. */
  rowLaunch(op: string, kernel: string, rows: number, n: number, a: Args): void;
  /** out [outer, inner] = x [outer, n, inner] reduced over n, float32, device pointers (reduce.ts). */
  reduceF32(op: 'sum' | 'max' | 'min', x: number, outer: number, n: number, inner: number, out: number): void;
  readonly indexErrors: ReturnType<typeof deviceIndexErrors>;
  /** The backend, for what one family asks of another (a fill, a copy). */
  backend(): CudaBackend;
}
