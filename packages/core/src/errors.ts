/** Every user-facing error names the operation first, then what was wrong and what was expected. */
export function opError(op: string, message: string): Error {
  return new Error(`${op}: ${message}`);
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
