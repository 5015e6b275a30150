/**
 * Routes float32 elementwise work to the WebAssembly SIMD kernels (assembly/elementwise.ts) when
 * every operand walks its innermost run contiguously (or is a scalar); anything else falls back
 * to the generated JS loops. Op codes are the constants of the same names in assembly/elementwise.ts
 * (test/simd-codes.test.ts checks them).
 */
import type { BackendBuffer, BinaryOp, UnaryOp, View } from '../backend.ts';
import { contiguousStrides } from '../shape.ts';
import { collapse, forEachRun } from './strided.ts';
import type { WasmKernels } from './wasm/gemm.ts';

export const UNARY_CODES: Partial<Record<UnaryOp, number>> = { exp: 0, sigmoid: 1, tanh: 2, geluTanh: 3, geluTanhGrad: 4, relu: 5, neg: 6 };
export const BINARY_CODES: Partial<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3, maximum: 4, minimum: 5 };

type Ptr = (b: BackendBuffer, elementOffset?: number) => number;

export function simdUnary(wasm: WasmKernels, ptr: Ptr, op: UnaryOp, x: View, out: BackendBuffer): boolean {
  const code = UNARY_CODES[op];
  if (code === undefined || x.buffer.dtype !== 'float32') return false;
  return runs(x.shape, [x], (starts, n) => wasm.k.unary(code, ptr(x.buffer, starts[1]), ptr(out, starts[0]), n));
}

export function simdBinary(wasm: WasmKernels, ptr: Ptr, op: BinaryOp, a: View | number, b: View | number, out: BackendBuffer): boolean {
  const code = BINARY_CODES[op];
  if (code === undefined || out.dtype !== 'float32') return false;
  const views = [a, b].filter((v): v is View => typeof v !== 'number');
  if (views.some((v) => v.buffer.dtype !== 'float32')) return false;
  const shape = views[0].shape;
  const sa = typeof a === 'number' ? a : 0;
  const sb = typeof b === 'number' ? b : 0;
  // starts[1..] follow `views`; a scalar operand has no start and is passed by value (address 0).
  const ia = typeof a === 'number' ? -1 : 1;
  const ib = typeof b === 'number' ? -1 : ia === 1 ? 2 : 1;
  const bufA = typeof a === 'number' ? out : a.buffer;
  const bufB = typeof b === 'number' ? out : b.buffer;
  return runs(shape, views, (starts, n) => {
    const pa = ia < 0 ? 0 : ptr(bufA, starts[ia]);
    const pb = ib < 0 ? 0 : ptr(bufB, starts[ib]);
    wasm.k.binary(code, pa, sa, pb, sb, ptr(out, starts[0]), n);
  });
}

/** Calls run(starts, n) for each innermost run if all operands are unit-stride there; false otherwise. */
function runs(shape: readonly number[], views: View[], run: (starts: number[], n: number) => void): boolean {
  const { shape: cs, ops } = collapse(shape, [{ offset: 0, strides: contiguousStrides(shape) }, ...views]);
  const inner = cs.length - 1;
  if (ops.some((o, i) => i > 0 && o.strides[inner] !== 1) || cs[inner] < 4) return false;
  forEachRun(cs, ops, (starts, n) => run(starts, n));
  return true;
}
