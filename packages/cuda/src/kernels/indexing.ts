/**
 * Gather and scatter-add over [outer, n, inner] with a strided index view (native/kernels/rows.cu).
 * An index out of range is recorded in the index flags (index-errors.ts), which the next read checks.
 */
import type { Backend } from '@sparsegrad/core';
import type { BackendBuffer, View } from '@sparsegrad/core/backend';
import { type CudaHost, P, THREADS, tname } from './host.ts';

export function indexingKernels(h: CudaHost): Pick<Backend, 'gather' | 'scatterAdd'> {
  const { addon, args, launch, blocksFor, indexErrors } = h;
  /** Both kernels take (data, index, out, outer, n, inner, count, the index view, the error flags). */
  const launchIndexed = (
    op: string,
    kernel: string,
    data: BackendBuffer,
    idx: View,
    out: BackendBuffer,
    outer: number,
    n: number,
    inner: number,
    count: number,
  ) => {
    const total = outer * count * inner;
    if (total === 0) return;
    const [s0, s1, s2] = idx.strides;
    args.reset().ptr(P(data)).ptr(P(idx.buffer)).ptr(P(out)).u32(outer).u32(n).u32(inner).u32(count).u32(idx.offset);
    launch(op, kernel, [blocksFor(total), 1, 1], THREADS, args.i32(s0).i32(s1).i32(s2).ptr(indexErrors.pointer()));
  };
  return {
    gather(x, idx, outer, n, inner, count, out) {
      launchIndexed('gather', `gather_${tname(x.dtype)}`, x, idx, out, outer, n, inner, count);
    },
    scatterAdd(src, idx, outer, n, inner, count, out) {
      addon.memset32(P(out), 0, outer * n * inner);
      launchIndexed('scatterAdd', `scatter_add_${tname(src.dtype)}`, src, idx, out, outer, n, inner, count);
    },
  };
}
