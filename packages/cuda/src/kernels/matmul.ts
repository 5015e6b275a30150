/**
 * Dense batched products through cuBLAS (cuBLASLt where it loaded and the tuning allows): float32
 * operands in the precision the user set, bfloat16 and float16 operands as they are with fp32
 * accumulation; operands cuBLAS cannot read in place are copied first.
 */
import type { Backend, DType, MatmulPrecision } from '@sparsegrad/core';
import { DTYPE_BYTES, type MatrixView } from '@sparsegrad/core/backend';
import type { CudaBuffer } from '../allocator.ts';
import { type CudaHost, P } from './host.ts';

const PRECISION_CODE: Record<MatmulPrecision, number> = { highest: 0, high: 1, medium: 2 };
/** The addon's data type codes (int32 never reaches a product). */
const DTYPE_CODE: Partial<Record<DType, number>> = { float32: 0, bfloat16: 1, float16: 2 };

export function matmulKernels(h: CudaHost): Pick<Backend, 'matmul'> {
  const { addon, alloc, free } = h;
  return {
    matmul(a: MatrixView, b: MatrixView, out, batch, m, n, k, precision) {
      if (batch * m * n === 0) return;
      if (k === 0) return h.backend().fill(out, batch * m * n, 0);
      const dtype = out.dtype;
      const bytes = DTYPE_BYTES[dtype];
      // Row-major C [m, n] = A B is column-major C^T = B^T A^T: cuBLAS gets B as its first operand.
      const opB = blasOperand(k, n, b);
      const opA = blasOperand(m, k, a);
      const temps: CudaBuffer[] = [];
      const dense = (v: MatrixView, r: number, c: number) => {
        // Neither stride is 1 (or a leading dimension is too small): copy to a contiguous batch.
        const t = alloc(batch * r * c, dtype);
        temps.push(t);
        h.backend().copy(
          { buffer: v.buffer, offset: v.offset, shape: [batch, r, c], strides: [v.batchStride, v.rowStride, v.colStride] },
          { buffer: t, offset: 0, shape: [batch, r, c], strides: [r * c, c, 1] },
        );
        return { ptr: t.ptr, op: 0, ld: c, stride: r * c };
      };
      const B = opB ? { ptr: P(b.buffer) + bytes * b.offset, ...opB, stride: b.batchStride } : dense(b, k, n);
      const A = opA ? { ptr: P(a.buffer) + bytes * a.offset, ...opA, stride: a.batchStride } : dense(a, m, k);
      try {
        addon.gemm(
          B.op,
          A.op,
          n,
          m,
          k,
          B.ptr,
          B.ld,
          B.stride,
          A.ptr,
          A.ld,
          A.stride,
          P(out),
          n,
          m * n,
          batch,
          PRECISION_CODE[precision],
          h.tuning().cublasLt ? 1 : 0,
          DTYPE_CODE[dtype]!,
        );
      } catch (e) {
        throw new Error(`cuda: matmul: ${(e as Error).message}`);
      } finally {
        temps.forEach(free);
      }
    },
  };
}

/**
 * How cuBLAS (column-major) can read the transpose of a row-major-indexed r x c matrix with the
 * given strides, without a copy: as a column-major c x r matrix (op N) when columns are
 * contiguous, or as the r x c matrix itself transposed (op T) when rows are. A size-1 dim may
 * have any stride. Null when neither works.
 */
function blasOperand(r: number, c: number, v: MatrixView): { op: number; ld: number } | null {
  const cs = c === 1 ? 1 : v.colStride;
  const rs = r === 1 ? Math.max(c, 1) : v.rowStride;
  if (cs === 1 && rs >= c) return { op: 0, ld: Math.max(rs, 1) };
  const rs2 = r === 1 ? 1 : v.rowStride;
  const cs2 = c === 1 ? Math.max(r, 1) : v.colStride;
  if (rs2 === 1 && cs2 >= r) return { op: 1, ld: Math.max(cs2, 1) };
  return null;
}
