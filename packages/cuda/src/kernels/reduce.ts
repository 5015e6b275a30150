/**
 * Reductions over the middle axis of [outer, n, inner] (native/kernels/rows.cu): float32 sum, max
 * and min by rows (a warp or a block each, very long rows in pieces) or columns (few columns: the
 * rows in pieces too), integers and argmax/argmin a thread per output.
 */
import type { Backend, HalfDType } from '@sparsegrad/core';
import { flatView, isHalf, type ReduceOp } from '@sparsegrad/core/backend';

import { type CudaHost, halfSuffix, P, THREADS, tname } from './host.ts';

export const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'max', 'min', 'argmax', 'argmin'];

/**
 * out [outer, inner] = x [outer, n, inner] reduced over n into float32, device pointers (the host's
 * reduceF32); `input` names x's element type when it is a 16-bit float (read as float32).
 */
export function reduceF32(
  h: CudaHost,
  op: 'sum' | 'max' | 'min',
  x: number,
  outer: number,
  n: number,
  inner: number,
  out: number,
  split = true,
  input: 'float32' | HalfDType = 'float32',
): void {
  const suffix = halfSuffix(input);
  const { allocator, args, sms, launch, blocksFor, rowLaunch, piecesFor } = h;
  if (inner === 1) {
    // Rows; a few very long rows are cut into pieces reduced in a second pass.
    const pieces = outer < 2 * sms && n > 16384 ? piecesFor(outer * 32, n, 4096) : 1;
    const chunk = Math.ceil(n / pieces);
    const used = Math.ceil(n / chunk);
    const target = used > 1 ? allocator.alloc(outer * used * 4) : out;
    rowLaunch(op, `${op}_rows${suffix}`, outer * used, chunk, args.reset().ptr(x).ptr(target).u32(outer).u32(n).u32(chunk).u32(used));
    if (used > 1) {
      reduceF32(h, op, target, outer, used, 1, out);
      allocator.release(target, outer * used * 4);
    }
    return;
  }
  // Columns; when there are few, the rows are cut into pieces too: partial [outer, pieces, inner],
  // reduced by one more launch without further cuts (at most a few hundred rows remain).
  const pieces = split ? piecesFor(outer * inner, n, 64) : 1;
  const chunk = Math.ceil(n / pieces);
  const used = Math.ceil(n / chunk);
  const target = used > 1 ? allocator.alloc(outer * used * inner * 4) : out;
  launch(
    op,
    `${op}_columns${suffix}`,
    [blocksFor(outer * used * inner), 1, 1],
    THREADS,
    args.reset().ptr(x).ptr(target).u32(outer).u32(n).u32(inner).u32(chunk).u32(used),
  );
  if (used > 1) {
    reduceF32(h, op, target, outer, used, inner, out, false);
    allocator.release(target, outer * used * inner * 4);
  }
}

export function reduceKernels(h: CudaHost): Pick<Backend, 'reduce'> {
  const { args, launch, blocksFor } = h;
  return {
    reduce(op, x, outer, n, inner, out) {
      if (outer * inner === 0) return;
      if (x.dtype === 'float32' && (op === 'sum' || op === 'max' || op === 'min') && n > 0) {
        h.reduceF32(op, P(x), outer, n, inner, P(out));
        return;
      }
      if (isHalf(x.dtype)) {
        // Read as float32 into a float32 result (argmax/argmin: from a float32 copy of x), then
        // rounded into out: the output is n times smaller than the input.
        const size = outer * inner;
        if (op === 'argmax' || op === 'argmin') {
          const wide = h.alloc(outer * n * inner, 'float32');
          h.backend().copy(flatView(x, outer * n * inner), flatView(wide, outer * n * inner));
          h.backend().reduce(op, wide, outer, n, inner, out);
          h.free(wide);
          return;
        }
        const sums = h.alloc(size, 'float32');
        reduceF32(h, op, P(x), outer, n, inner, P(sums), true, x.dtype);
        h.backend().copy(flatView(sums, size), flatView(out, size));
        h.free(sums);
        return;
      }
      const kernel = op === 'argmax' || op === 'argmin' ? (x.dtype === 'float32' ? 'arg_reduce_f32' : 'reduce_simple_i32') : `reduce_simple_${tname(x.dtype)}`;
      launch(
        op,
        kernel,
        [blocksFor(outer * inner), 1, 1],
        THREADS,
        args.reset().ptr(P(x)).ptr(P(out)).i32(REDUCE_OPS.indexOf(op)).u32(outer).u32(n).u32(inner),
      );
    },
  };
}
