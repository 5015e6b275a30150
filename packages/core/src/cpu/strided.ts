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
