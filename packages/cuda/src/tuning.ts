/**
 * The kernel routes of the CUDA backend that benchmarks and tests compare. The defaults are what
 * measured fastest on an H100 (each use cites its measurement); product code reads the backend's
 * tuning, never the environment. Benchmarks pass variants as `--variants key=a,b` (parseTuning),
 * tests through the backend's setTuning.
 */
import { parseTuningEntry } from '@sparsegrad/core/backend';

export interface CudaTuning {
  /** Union tiles (mma.sync) for tensor-core 32x32 forward and dX: by the measured rule, or forced. */
  union: 'auto' | 'on' | 'off';
  /** bf16 copies of the operands for 'medium' 32x32 union and TMA kernels: by the measured rule, or forced. */
  bf16Union: 'auto' | 'on' | 'off';
  /** The TMA-fed kernels on compute capability 9.0. */
  tma: boolean;
  /** Union groups collect block rows that share activation blocks. */
  unionCluster: boolean;
  /** The 2-D tile SDDMM for 'highest' 32x32 dW on Hopper. */
  sddmmTile: boolean;
  /** ...filling its items with several token chunks. */
  sddmmFill: boolean;
  /** The SDDMM on W^T's layout: by the measured rule, or forced. */
  sddmmTranspose: 'auto' | 'on' | 'off';
  /** Token tiles per band of the work order (0: plain); undefined: by the lines' length. */
  bandTiles?: number;
  /** A block-sparse product through cuBLAS on a dense copy: by the measured densities (dense-route.ts), or forced. */
  denseRoute: 'auto' | 'on' | 'off';
  /** Dense products through cuBLASLt where it loads (else cublasGemmStridedBatchedEx). */
  cublasLt: boolean;
  /** The fused attention kernels where they fit (else core composes attention). */
  fusedAttention: boolean;
  /**
   * The attention backward's dQ: gathered by float32 atomics in the dK / dV kernel ('atomic'), or
   * computed by a kernel of its own that walks the keys per query block ('separate', no atomics).
   */
  attentionDq: 'atomic' | 'separate';
  /** Every new buffer filled with NaN, so that an output element a kernel fails to write shows (tests). */
  poison: boolean;
}

export const DEFAULT_CUDA_TUNING: Readonly<CudaTuning> = Object.freeze({
  union: 'auto',
  bf16Union: 'auto',
  tma: true,
  unionCluster: true,
  sddmmTile: true,
  sddmmFill: true,
  sddmmTranspose: 'auto',
  bandTiles: undefined,
  denseRoute: 'auto',
  cublasLt: true,
  fusedAttention: true,
  attentionDq: 'atomic',
  poison: false,
});

const MODE = ['auto', 'on', 'off'] as const;

/** One tuning entry from its text (benchmarks' `--variants key=value`): booleans as 0/1, modes and numbers as written. */
export function parseTuning(key: string, value: string): Partial<CudaTuning> {
  const modes = { union: MODE, bf16Union: MODE, sddmmTranspose: MODE, denseRoute: MODE, attentionDq: ['atomic', 'separate'] as const };
  return parseTuningEntry({ backend: 'cuda', defaults: DEFAULT_CUDA_TUNING, modes, integers: ['bandTiles'] }, key, value);
}
