/**
 * Strided iteration for the CPU kernels: dimensions that every operand walks contiguously are
 * merged first, so most calls reduce to one flat loop over the innermost run.
 */
export interface Operand {
  offset: number;
  strides: number[];
}

/** Merges adjacent dims i, i+1 wherever stride[i] == stride[i+1] * shape[i+1] for all operands. */
export function collapse(shape: readonly number[], operands: { offset: number; strides: readonly number[] }[]): { shape: number[]; ops: Operand[] } {
  const dims: number[] = [];
  const strides: number[][] = operands.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && operands.every((o, k) => strides[k][last] === o.strides[d] * shape[d])) {
      dims[last] *= shape[d];
      operands.forEach((o, k) => (strides[k][last] = o.strides[d]));
    } else {
      dims.push(shape[d]);
      operands.forEach((o, k) => strides[k].push(o.strides[d]));
    }
  }
  if (dims.length === 0) {
    dims.push(1);
    strides.forEach((s) => s.push(1));
  }
  return { shape: dims, ops: operands.map((o, k) => ({ offset: o.offset, strides: strides[k] })) };
}

/**
 * A collapsed layout in units of `width` elements, for GPU kernels that move vectors (float4):
 * possible where the innermost dim is a multiple of `width` long and contiguous in every operand,
 * and every offset and outer stride is a multiple of `width` (so each vector is aligned, given
 * buffers aligned to 16 bytes); undefined otherwise.
 */
export function vectorize(shape: readonly number[], ops: readonly Operand[], width: number): { shape: number[]; ops: Operand[] } | undefined {
  const r = shape.length;
  if (r === 0 || shape[r - 1] % width !== 0) return undefined;
  for (const o of ops) {
    if (o.offset % width !== 0 || o.strides[r - 1] !== 1 || o.strides.some((s, d) => d < r - 1 && s % width !== 0)) return undefined;
  }
  return {
    shape: shape.map((s, d) => (d === r - 1 ? s / width : s)),
    ops: ops.map((o) => ({ offset: o.offset / width, strides: o.strides.map((s, d) => (d === r - 1 ? 1 : s / width)) })),
  };
}

/**
 * Whether a copy's collapsed layout (operand 0 the destination, 1 the source) transposes its last
 * two dims: the destination contiguous along the last, the source along the one before, as a
 * transposed view made contiguous. GPU backends copy these through shared-memory tiles.
 */
export function isTranspose(shape: readonly number[], ops: readonly Operand[]): boolean {
  const r = shape.length;
  if (r < 2 || shape[r - 1] < 4 || shape[r - 2] < 4) return false;
  const [dst, src] = ops;
  return dst.strides[r - 1] === 1 && src.strides[r - 2] === 1 && src.strides[r - 1] !== 1;
}

/**
 * Calls row(starts, n) for each run along the innermost dimension, where starts[k] is operand k's
 * first element of the run; the output (operand 0 by convention) advances contiguously.
 */
export function forEachRun(shape: readonly number[], ops: Operand[], row: (starts: number[], n: number, inner: number[]) => void): void {
  const rank = shape.length;
  const n = shape[rank - 1];
  const inner = ops.map((o) => o.strides[rank - 1]);
  const idx = new Array<number>(rank - 1).fill(0);
  const starts = ops.map((o) => o.offset);
  let runs = 1;
  for (let d = 0; d < rank - 1; d++) runs *= shape[d];
  for (let r = 0; r < runs; r++) {
    row(starts, n, inner);
    // Advance the odometer over the outer dims.
    for (let d = rank - 2; d >= 0; d--) {
      if (++idx[d] < shape[d]) {
        for (let k = 0; k < ops.length; k++) starts[k] += ops[k].strides[d];
        break;
      }
      idx[d] = 0;
      for (let k = 0; k < ops.length; k++) starts[k] -= ops[k].strides[d] * (shape[d] - 1);
    }
  }
}
