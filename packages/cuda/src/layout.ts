/** Strided operands of the elementwise kernels (mirrors struct Strided in native/kernels/common.cuh). */
import { opError } from '@sparsegrad/core';
import { collapseDims, contiguousStrides, isTranspose, vectorize, type View } from '@sparsegrad/core/backend';

export const MAX_RANK = 6;
export const MAX_OPERANDS = 4;

export interface StridedLayout {
  n: number;
  shape: number[];
  /** Every operand one contiguous run (element i at offset + i). */
  flat: boolean;
  ops: { offset: number; strides: number[] }[];
}

/**
 * Merges the dims of `shape` for the given operand views (the first may be a contiguous output)
 * and checks that indices fit the kernels' 32-bit arithmetic.
 */
export function stridedLayout(op: string, shape: readonly number[], operands: { offset: number; strides: readonly number[] }[]): StridedLayout {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n >= 2 ** 32) throw opError(op, `the CUDA backend indexes elementwise kernels with 32 bits; ${n} elements is too many`);
  const { shape: cs, ops } = collapseDims(shape, operands);
  if (cs.length > MAX_RANK) throw opError(op, `views of rank ${cs.length} after merging dims are not supported by the CUDA backend (max ${MAX_RANK})`);
  for (const o of ops) {
    if (o.offset >= 2 ** 32 || o.strides.some((s) => Math.abs(s) >= 2 ** 31))
      throw opError(op, "a view offset or stride exceeds the CUDA kernels' 32-bit indexing");
  }
  const flat = cs.length === 1 && ops.every((o) => o.strides[0] === 1);
  return { n, shape: cs, flat, ops };
}

/** The output operand of a fresh contiguous buffer. */
export const outputOperand = (shape: readonly number[]) => ({ offset: 0, strides: contiguousStrides(shape) });
export const viewOperand = (v: View) => ({ offset: v.offset, strides: v.strides });

/**
 * The layout in units of 4 elements for the kernels' 4-element forms (float4 ones of float32, 8-byte
 * ones of the 16-bit dtypes; core's vectorize), or undefined.
 */
export function vectorLayout(L: StridedLayout): StridedLayout | undefined {
  const v = vectorize(L.shape, L.ops, 4);
  return v && { n: L.n / 4, shape: v.shape, flat: L.flat, ops: v.ops };
}

/**
 * The grid of the tiled transposing copy (32 x 32 tiles of the last two dims, batches on z) where
 * the copy transposes its last two dims (core's isTranspose) within the grid's limits (< 2^16
 * batches and row tiles); undefined otherwise.
 */
export function transposeGrid(L: StridedLayout): [number, number, number] | undefined {
  if (!isTranspose(L.shape, L.ops)) return undefined;
  const r = L.shape.length;
  const batch = L.shape.slice(0, r - 2).reduce((a, b) => a * b, 1);
  const grid: [number, number, number] = [Math.ceil(L.shape[r - 1] / 32), Math.ceil(L.shape[r - 2] / 32), batch];
  return batch < 65536 && grid[1] < 65536 ? grid : undefined;
}
