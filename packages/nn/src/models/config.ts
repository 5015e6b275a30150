import { opError } from '@sparsegrad/core';

/** Validates the sizes every Transformer config shares. */
export function checkTransformerSizes(op: string, sizes: { vocabSize: number; seqLen: number; dModel: number; heads: number; layers: number }): void {
  const { vocabSize, seqLen, dModel, heads, layers } = sizes;
  for (const [k, v] of Object.entries({ vocabSize, seqLen, dModel, heads, layers })) {
    if (!Number.isInteger(v) || v <= 0) throw opError(op, `${k} must be a positive integer, got ${v}`);
  }
  if (sizes.dModel % sizes.heads !== 0) throw opError(op, `dModel (${sizes.dModel}) must be divisible by heads (${sizes.heads})`);
}
