/** Every user-facing error names the operation first, then what was wrong and what was expected. */
export function opError(op: string, message: string): Error {
  return new Error(`${op}: ${message}`);
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** An index outside [0, n) (core's edge-case rules): the same message on every backend. */
export function indexOutOfRange(op: string, index: number, n: number): Error {
  return opError(op, `index ${index} is out of range for a dimension of size ${n}`);
}

/**
 * The Error of a GPU's index flags [code, index, n] (code 1 gather, 2 scatter-add, as the kernels
 * record them), or null for code 0: read back after the kernels ran, so it says its results are void.
 */
export function deviceIndexError(code: number, index: number, n: number): Error | null {
  if (code === 0) return null;
  const e = indexOutOfRange(code === 2 ? 'scatterAdd' : 'gather', index, n);
  e.message += ' (found on the GPU by a kernel queued before this read; its results are not valid)';
  return e;
}
