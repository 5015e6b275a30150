/** Tile shapes of the matrix-product kernels (see gemm.ts), chosen by measurement on an H100. */
import { waveSplits as splitIntoWaves } from '@sparsegrad/core/backend';
import type { GemmShape } from './gemm.ts';
import { DEFAULT_WEBGPU_TUNING, type WebGPUTuning } from './tuning.ts';

export const DENSE_LARGE: GemmShape = { wm: 16, wn: 16, tm: 8, tn: 8, bk: 8 };
export const DENSE_SMALL: GemmShape = { wm: 16, wn: 16, tm: 4, tn: 4, bk: 8 };
/** Products with fewer output tiles than this (one per multiprocessor on an H100) and k >= SPLIT_K_MIN split k. */
export const SPLIT_K_BELOW_TILES = 132;
export const SPLIT_K_MIN = 1024;
/**
 * Workgroups of the 128 x 128 tile taken as running at once on an H100 (two per multiprocessor):
 * the wave that split k fills. Measured on the GPT's weight gradients (NOTES 34): 264 beat 132
 * and 528 (512 x 512 x 8192: 3.20 ms per step against 3.25 and 3.37): the default of the
 * tuning's waveSlots.
 */
/** Split-k chunks are at least this many steps of k long. */
const SPLIT_MIN_CHUNK = 256;

/**
 * The dense matmul's tile and k split. Products with at least 256 tiles of 128 x 128 take them
 * whole (8 x 8 outputs per thread); fewer tiles over a long k (weight gradients, dW = dY^T X)
 * keep those tiles and split k into chunks (partial products, then a sum) so that tiles x chunks
 * fill whole waves of the GPU (waveSplits); short ones take 64 x 64 tiles (4 x 4 per thread).
 * On an H100 (NOTES 34) the GPT's weight gradients went from 64 x 64 tiles (4 x 4 per thread,
 * at most 5 chunks) to these: [2048, 512] over k = 8192 0.667 -> 0.445 ms, [512, 512] 0.190 ->
 * 0.133. The tuning's splitLarge off restores the earlier rule (64 x 64 tiles below 256 large
 * ones, k split below SPLIT_K_BELOW_TILES of them), fitOutput off keeps whole tiles.
 */
export function denseTiling(
  m: number,
  n: number,
  k: number,
  batch: number,
  wide: GemmShape,
  tuning: Pick<WebGPUTuning, 'fitOutput' | 'splitLarge' | 'waveSlots'> = DEFAULT_WEBGPU_TUNING,
): { shape: GemmShape; splits: number } {
  const large = tuning.fitOutput ? fitOutput(wide, m, n) : wide;
  const tilesOf = (s: GemmShape) => Math.ceil(m / (s.wm * s.tm)) * Math.ceil(n / (s.wn * s.tn)) * batch;
  const longK = batch === 1 && k >= SPLIT_K_MIN;
  if (tilesOf(large) >= 256) return { shape: large, splits: 1 };
  if (longK && tuning.splitLarge) return { shape: large, splits: waveSplits(tilesOf(large), k, tuning.waveSlots) };
  const tiles = tilesOf(DENSE_SMALL);
  if (!longK || tiles >= SPLIT_K_BELOW_TILES) return { shape: DENSE_SMALL, splits: 1 };
  return { shape: DENSE_SMALL, splits: Math.min(Math.ceil((2 * SPLIT_K_BELOW_TILES) / tiles), Math.floor(k / (SPLIT_K_MIN / 2))) };
}

/**
 * The large tile halved along a side the output does not fill: products at most half a tile wide
 * (or tall), such as attention's context P V and dV = P^T dO ([256, 64] per head), would leave
 * half of every 128 x 128 tile's outputs empty. On an H100 (NOTES 43), 128 x 64 tiles took those
 * two from 1.58-1.60 and 1.45-1.46 to 1.03 and 1.09-1.10 ms per GPT step (12 calls each).
 */
export function fitOutput(shape: GemmShape, m: number, n: number): GemmShape {
  if (n <= (shape.wn * shape.tn) / 2 && shape.wn % 2 === 0) return { ...shape, wn: shape.wn / 2 };
  if (m <= (shape.wm * shape.tm) / 2 && shape.wm % 2 === 0) return { ...shape, wm: shape.wm / 2 };
  return shape;
}

/** Chunks of k for `tiles` output tiles of the large dense tile (core's waveSplits). */
export function waveSplits(tiles: number, k: number, slots = DEFAULT_WEBGPU_TUNING.waveSlots): number {
  return splitIntoWaves(tiles, k, slots, SPLIT_MIN_CHUNK);
}
/**
 * The SDDMM splits its tokens into chunks (partial sums, then one reduction) until it has this many
 * workgroups, with chunks of at least SDDMM_MIN_CHUNK tokens. Many short workgroups balance better
 * than a few long ones (the last of ~1000 workgroups of 8192 tokens set the time); on an H100 the
 * 32x32 dW of W [4096, 1024] at density 0.5 took 2.38 ms with a target of 1024 and 2.00-2.02 with
 * 4096, 0.25 1.23 -> 1.11; below 1024 tokens per chunk the reduction of the partial sums cost more
 * than the balance gained (W [1024, 4096] at 0.1: 0.45 -> 0.49 ms with 512-token chunks). The
 * target is the tuning's sddmmGroups (4096).
 */
export const SDDMM_MIN_CHUNK = 1024;

/** Block-sparse products: a tile is one block wide (BN = bs) and 128-256 tokens tall (tuned on an H100). */
export function bsrShape(bs: number): GemmShape {
  // 128 tokens x one block: 8 x 8 outputs per thread for 32x32 and 64x64 blocks (64 and 128
  // threads), 8 x 4 for 16x16 (256 tokens, 128 threads). For 32x32 the 8 x 8 tile reads one byte
  // of workgroup memory per multiply-add where 8 x 4 read 1.5: 3-4% faster forward and dX on an
  // H100 (density 0.5: 2.23 -> 2.16 ms forward, 2.26 -> 2.17 dX) than 128 threads of 8 x 4 with a
  // k-step of 16; a k-step of 16 with 8 x 8 lost 10%.
  // 128x128 blocks (not tuned yet): 64 tokens x one block, 8 x 8 outputs per thread (128 threads).
  if (bs === 128) return { wm: 8, wn: 16, tm: 8, tn: 8, bk: 8 };
  return bs === 16 ? { wm: 32, wn: 4, tm: 8, tn: 4, bk: 8 } : bs === 32 ? { wm: 16, wn: 4, tm: 8, tn: 8, bk: 8 } : { wm: 16, wn: 8, tm: 8, tn: 8, bk: 8 };
}

/**
 * Tokens per band of the one-block-wide forward and dX's work order (blocksparse.ts's workOrder;
 * core's orderBand turns it into token tiles). On an H100 (NOTES 25), bands of 4096 tokens took
 * the 32x32 forward at density 0.5 from 2.11-2.14 to 2.06-2.07 ms and dX from 2.10-2.11 to
 * 2.05-2.06, 64x64 forward 1.75-1.82 to 1.72-1.78; bands of 1024, 2048 and 8192 tokens gained
 * less. 16x16 blocks (256-token tiles) keep the plain order (0): bands of 8192 tokens made them
 * 9-16% slower at density 0.1.
 */
export function orderBandTokens(blockSize: number): number {
  return blockSize === 16 ? 0 : 4096;
}

/**
 * Union tiles of the block-sparse forward and dX: 128 tokens x 64-128 outputs (tuned on an H100
 * for 16x16 blocks), so several block rows (or columns) share each loaded activation tile; a band
 * of outputs is one block wide and its threads whole warps.
 */
export function unionShape(forward: boolean): GemmShape {
  return forward ? { wm: 16, wn: 16, tm: 8, tn: 8, bk: 8 } : { wm: 16, wn: 8, tm: 8, tn: 8, bk: 8 };
}

/**
 * Whether a product runs on union tiles. Measured on an H100 (docs/benchmarks.md, DESIGN.md): they
 * beat one-block-wide tiles only for 16x16 blocks, and only where at least a third of the union's
 * band-steps hold a block (density ~0.5 forward, ~0.25 and up for dX); 32x32 and 64x64 blocks
 * lose at every density. `mode` (the tuning's unionTiles) may force them on or off.
 */
export function useUnionTiles(blockSize: number, liveFraction: () => number, mode: WebGPUTuning['unionTiles'] = 'auto'): boolean {
  if (mode !== 'auto') return mode === 'on';
  return blockSize === 16 && liveFraction() >= 1 / 3;
}

/**
 * SDDMM: a workgroup computes several blocks of one block row, which share each dY value it loads
 * (or of one block column, sharing X's: blocksparse.ts's sddmmPlan; "row" below is either).
 * One block row tall, 128 columns wide (128 / bs blocks of the row), 128 threads; for 32x32 blocks
 * in rows of under 5 blocks on average, 64 columns (64 threads), so that fewer block slots stay
 * empty. On an H100 (dW of W [4096, 1024], X [16384, 1024]): 3.2 blocks per row 0.71 -> 0.59 ms
 * with 64 columns; 8 per row 1.22 -> 1.38 ms and 12.8 per row 0.45 -> 0.58 (W [1024, 4096]) the
 * other way. The 32x32 tile's threads own 4 rows x 8 columns: against 8 x 4, dW at density 0.5
 * 1.95 -> 1.93 ms, 0.25 1.06 -> 1.04-1.05, 0.1 0.48 -> 0.47 (NOTES 30); 8 x 8 (64 threads), 4 x 4
 * (256), 4 x 16 and a k-step of 16 lost 3-20%.
 */
export function sddmmShape(bs: number, blocksPerRow = Infinity): GemmShape {
  if (bs === 32 && blocksPerRow < 5) return { wm: 4, wn: 16, tm: 8, tn: 4, bk: 8 };
  // 128x128 blocks (not tuned yet): one block per workgroup, 8 x 8 outputs per thread (256 threads).
  if (bs === 128) return { wm: 16, wn: 16, tm: 8, tn: 8, bk: 8 };
  return bs === 16 ? { wm: 4, wn: 32, tm: 4, tn: 4, bk: 8 } : bs === 32 ? { wm: 8, wn: 16, tm: 4, tn: 8, bk: 8 } : { wm: 8, wn: 16, tm: 8, tn: 8, bk: 8 };
}

export const shapeKey = (s: GemmShape) => `${s.wm}x${s.wn}x${s.tm}x${s.tn}x${s.bk}`;

/** A tile shape the tuning's `tiles` spec sets for `kernel` (benchmarks tune them), if any. */
export function tuned(kernel: string, spec: string): GemmShape | undefined {
  const entry = spec.split(';').find((e) => e.startsWith(`${kernel}=`));
  if (!entry) return undefined;
  const [wm, wn, tm, tn, bk] = entry
    .slice(kernel.length + 1)
    .split(',')
    .map(Number);
  return { wm, wn, tm, tn, bk };
}

/** Upper bound of a shape's workgroup memory: two stages of A and B rows with the largest padding. */
function workgroupBytes(s: GemmShape): number {
  return 2 * s.bk * ((s.wm * s.tm) / 4 + 8 + (s.wn * s.tn) / 4 + 8) * 16 + 16;
}

/**
 * A shape whose tiles fit the device's workgroup memory: halves the k-step (down to 4), then the
 * rows per thread (down to 4), keeping the tile's width (block-sparse tiles must stay one block
 * wide). The tuned shapes need up to ~34 KB; WebGPU guarantees only 16 KB.
 */
export function fitShape(shape: GemmShape, limit: number): GemmShape {
  let s = shape;
  while (workgroupBytes(s) > limit && s.bk > 4) s = { ...s, bk: s.bk / 2 };
  while (workgroupBytes(s) > limit && s.tm > 4) s = { ...s, tm: s.tm / 2 };
  return s;
}
