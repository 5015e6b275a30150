/**
 * Gather and scatter-add over [outer, n, inner] with a strided index view (native/kernels/rows.cu).
 * An index out of range is recorded in the index flags (index-errors.ts), which the next read checks.
 */
import type { Backend } from '@sparsegrad/core';
import { type CudaHost, P, THREADS, tname } from './host.ts';

export function indexingKernels(h: CudaHost): Pick<Backend, 'gather' | 'scatterAdd'> {
  const { addon, args, launch, blocksFor, indexErrors } = h;
  return {
    gather(x, idx, outer, n, inner, count, out) {
      const total = outer * count * inner;
      if (total === 0) return;
      launch(
        'gather',
        `gather_${tname(x.dtype)}`,
        [blocksFor(total), 1, 1],
        THREADS,
        args
          .reset()
          .ptr(P(x))
          .ptr(P(idx.buffer))
          .ptr(P(out))
          .u32(outer)
          .u32(n)
          .u32(inner)
          .u32(count)
          .u32(idx.offset)
          .i32(idx.strides[0])
          .i32(idx.strides[1])
          .i32(idx.strides[2])
          .ptr(indexErrors.pointer()),
      );
    },
    scatterAdd(src, idx, outer, n, inner, count, out) {
      addon.memset32(P(out), 0, outer * n * inner);
      const total = outer * count * inner;
      if (total === 0) return;
      launch(
        'scatterAdd',
        `scatter_add_${tname(src.dtype)}`,
        [blocksFor(total), 1, 1],
        THREADS,
        args
          .reset()
          .ptr(P(src))
          .ptr(P(idx.buffer))
          .ptr(P(out))
          .u32(outer)
          .u32(n)
          .u32(inner)
          .u32(count)
          .u32(idx.offset)
          .i32(idx.strides[0])
          .i32(idx.strides[1])
          .i32(idx.strides[2])
          .ptr(indexErrors.pointer()),
      );
    },
  };
}
