/**
 * The bound every block-sparse cell is held against (issue 27): the faster of cuBLAS's own dense
 * rate applied to the stored blocks only (its dense time x density) and the DRAM floor of the
 * operands as stored (activations in and out at their element size, the stored blocks), on an
 * H100 SXM. benchmarks/floors.ts prints the floors per shape; blockSparseTable (util.ts) reports
 * each measured cell as the fraction of its bound it reaches.
 */
export const DRAM_BYTES_PER_S = 3.35e12;

/**
 * Bytes a product must move at least, for X [m, k] and W [n, k] at `density`: the activations it
 * reads and writes (every output element is written once) and the stored blocks, `elementBytes`
 * each (4 for float32 tensors, 2 for bfloat16). The three products move the same: the forward
 * reads X and writes Y, dX reads dY and writes dX, dW reads dY and X and writes the blocks.
 */
export function leastBytes(m: number, k: number, n: number, density: number, elementBytes = 4): number {
  return elementBytes * (m * k + m * n + n * k * density);
}

/** The bound in ms: max(dense ms x density, the DRAM floor). */
export function boundMs(denseMs: number, m: number, k: number, n: number, density: number, elementBytes = 4): number {
  return Math.max(denseMs * density, (leastBytes(m, k, n, density, elementBytes) / DRAM_BYTES_PER_S) * 1e3);
}
