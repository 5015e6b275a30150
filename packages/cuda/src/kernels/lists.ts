/**
 * The optimizer's list kernels (native/kernels/elementwise.cu): one launch per chunk of a list,
 * the tensors' pointers and sizes passed by value (as PyTorch's multi_tensor_apply).
 */
import type { Backend } from '@sparsegrad/core';
import { adamCoefficients } from '@sparsegrad/core/backend';
import { listChunks, listStruct } from '../lists.ts';
import { type CudaHost, P, THREADS } from './host.ts';

export function listKernels(h: CudaHost): Pick<Backend, 'adamStep' | 'sumOfSquares' | 'scaleBuffers'> {
  const { allocator, args, sms, launch, reduceF32 } = h;
  /** Blocks per tensor of a list launch (grid y = the tensors): the largest tensor's share of a few waves. */
  const listBlocks = (sizes: readonly number[]) => Math.max(1, Math.min(Math.ceil(Math.max(...sizes) / THREADS), Math.ceil((sms * 8) / sizes.length) * 4));
  return {
    adamStep(list, spec) {
      const { coupled, shrink, step } = adamCoefficients(spec);
      for (const chunk of listChunks(list.filter((t) => t.size > 0))) {
        const struct = listStruct(
          ['p', 'g', 'm', 'v', 'pOut', 'mOut', 'vOut'].map((k) => chunk.map((t) => P(t[k as 'p']))),
          [chunk.map((t) => t.size)],
        );
        launch(
          'adamStep',
          'adam_step_list',
          [listBlocks(chunk.map((t) => t.size)), chunk.length, 1],
          THREADS,
          args.reset().raw(struct, 8).f32(coupled).f32(shrink).f32(spec.beta1).f32(spec.beta2).f32(step).f32(spec.biasCorrection2).f32(spec.eps),
        );
      }
    },
    sumOfSquares(xs, sizes, out) {
      const items = xs.map((x, i) => ({ x: P(x), n: sizes[i] })).filter((t) => t.n > 0);
      const chunks = listChunks(items);
      const grids = chunks.map((c) => listBlocks(c.map((t) => t.n)));
      const total = chunks.reduce((a, c, i) => a + c.length * grids[i], 0);
      if (total === 0) return h.backend().fill(out, 1, 0);
      const partial = allocator.alloc(total * 4);
      let base = 0;
      chunks.forEach((c, i) => {
        launch(
          'sumOfSquares',
          'sum_squares_list',
          [grids[i], c.length, 1],
          THREADS,
          args
            .reset()
            .raw(listStruct([c.map((t) => t.x)], [c.map((t) => t.n)]), 8)
            .ptr(partial)
            .u32(base),
        );
        base += c.length * grids[i];
      });
      reduceF32('sum', partial, 1, total, 1, P(out));
      allocator.release(partial, total * 4);
    },
    scaleBuffers(xs, sizes, factor, outs) {
      const items = xs.map((x, i) => ({ x: P(x), y: P(outs[i]), n: sizes[i] })).filter((t) => t.n > 0);
      for (const c of listChunks(items)) {
        launch(
          'scaleBuffers',
          'scale_list',
          [listBlocks(c.map((t) => t.n)), c.length, 1],
          THREADS,
          args
            .reset()
            .raw(listStruct([c.map((t) => t.x), c.map((t) => t.y)], [c.map((t) => t.n)]), 8)
            .ptr(P(factor)),
        );
      }
    },
  };
}
