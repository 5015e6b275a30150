/** Strided operands of the elementwise kernels (mirrors struct Strided in native/kernels/common.cuh). */
import { collapseDims, contiguousStrides, opError, type View } from '@sparsegrad/core';

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
    if (o.offset >= 2 ** 32 || o.strides.some((s) => Math.abs(s) >= 2 ** 31)) throw opError(op, 'a view offset or stride exceeds the CUDA kernels\' 32-bit indexing');
  }
  const flat = cs.length === 1 && ops.every((o) => o.strides[0] === 1);
  return { n, shape: cs, flat, ops };
}

/** The output operand of a fresh contiguous buffer. */
export const outputOperand = (shape: readonly number[]) => ({ offset: 0, strides: contiguousStrides(shape) });
export const viewOperand = (v: View) => ({ offset: v.offset, strides: v.strides });

/**
 * The layout in units of 4 floats, for the kernels' float4 forms (native/kernels/elementwise.cu),
 * where the innermost dim is contiguous in every operand and a multiple of 4 long and every offset
 * and outer stride is a multiple of 4 (device buffers are 256-byte aligned, so such a float4 is
 * 16-byte aligned); undefined otherwise.
 */
export function float4Layout(L: StridedLayout): StridedLayout | undefined {
  const r = L.shape.length;
  if (r === 0 || L.shape[r - 1] % 4 !== 0) return undefined;
  for (const o of L.ops) {
    if (o.offset % 4 !== 0 || o.strides[r - 1] !== 1 || o.strides.some((s, d) => d < r - 1 && s % 4 !== 0)) return undefined;
  }
  return {
    n: L.n / 4,
    shape: L.shape.map((s, d) => (d === r - 1 ? s / 4 : s)),
    flat: L.flat,
    ops: L.ops.map((o) => ({ offset: o.offset / 4, strides: o.strides.map((s, d) => (d === r - 1 ? 1 : s / 4)) })),
  };
}

/**
 * Whether a copy's layout (operand 0 the destination, 1 the source) transposes its last two dims:
 * the destination contiguous along the last, the source along the one before, as a transposed
 * view made contiguous. The tiled kernel then takes it (grid limits: batch and row tiles < 2^16).
 */
export function isTransposingCopy(L: StridedLayout): boolean {
  const r = L.shape.length;
  if (r < 2 || L.shape[r - 1] < 4 || L.shape[r - 2] < 4) return false;
  const [dst, src] = L.ops;
  const batch = L.shape.slice(0, r - 2).reduce((a, b) => a * b, 1);
  return dst.strides[r - 1] === 1 && src.strides[r - 2] === 1 && src.strides[r - 1] !== 1 && batch < 65536 && Math.ceil(L.shape[r - 2] / 32) < 65536;
}
