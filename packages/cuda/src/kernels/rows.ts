/**
 * Fused row kernels over contiguous [rows, n] (native/kernels/rows.cu): softmax (plain, log,
 * causal) and its backward, layer norm and its backward (parameter gradients as column sums).
 */
import type { Backend } from '@sparsegrad/core';
import type { BackendBuffer } from '@sparsegrad/core/backend';
import { type CudaHost, halfSuffix, P, THREADS } from './host.ts';

export function rowKernels(h: CudaHost): Pick<Backend, 'softmax' | 'softmaxBackward' | 'layerNorm' | 'layerNormBackward'> {
  const { allocator, args, launch, blocksFor, rowLaunch, reduceF32, piecesFor } = h;
  return {
    softmax(x, rows, n, log, causal, out) {
      rowLaunch(
        'softmax',
        `softmax${halfSuffix(x.dtype)}`,
        rows,
        n,
        args
          .reset()
          .ptr(P(x))
          .ptr(P(out))
          .u32(rows)
          .u32(n)
          .i32(log ? 1 : 0)
          .i32(causal ? 1 : 0),
      );
    },
    softmaxBackward(y, dy, rows, n, log, out) {
      rowLaunch(
        'softmaxBackward',
        `softmax_backward${halfSuffix(y.dtype)}`,
        rows,
        n,
        args
          .reset()
          .ptr(P(y))
          .ptr(P(dy))
          .ptr(P(out))
          .u32(rows)
          .u32(n)
          .i32(log ? 1 : 0),
      );
    },
    layerNorm(x, gamma, beta, rows, n, eps, out, mean, rstd) {
      rowLaunch(
        'layerNorm',
        'layer_norm',
        rows,
        n,
        args
          .reset()
          .ptr(P(x))
          .ptr(gamma ? P(gamma) : 0)
          .ptr(beta ? P(beta) : 0)
          .ptr(P(out))
          .ptr(P(mean))
          .ptr(P(rstd))
          .u32(rows)
          .u32(n)
          .f32(eps),
      );
    },
    layerNormBackward(x, gamma, mean, rstd, dy, rows, n, dx, dgamma, dbeta) {
      rowLaunch(
        'layerNormBackward',
        'layer_norm_backward',
        rows,
        n,
        args
          .reset()
          .ptr(P(x))
          .ptr(gamma ? P(gamma) : 0)
          .ptr(P(mean))
          .ptr(P(rstd))
          .ptr(P(dy))
          .ptr(P(dx))
          .u32(rows)
          .u32(n),
      );
      if (!dgamma && !dbeta) return;
      // Column sums over the rows, in pieces when the columns alone would leave the GPU idle.
      const pieces = piecesFor(n, rows, 64);
      const chunk = Math.ceil(rows / pieces);
      const used = Math.ceil(rows / chunk);
      const scratch = (b: BackendBuffer | null) => (used > 1 || !b ? allocator.alloc(used * n * 4) : P(b));
      const dg = scratch(dgamma);
      const db = scratch(dbeta);
      launch(
        'layerNormBackward',
        'layer_norm_params',
        [blocksFor(used * n), 1, 1],
        THREADS,
        args.reset().ptr(P(x)).ptr(P(mean)).ptr(P(rstd)).ptr(P(dy)).ptr(dg).ptr(db).u32(rows).u32(n).u32(chunk).u32(used),
      );
      if (used > 1) {
        if (dgamma) reduceF32('sum', dg, 1, used, n, P(dgamma));
        if (dbeta) reduceF32('sum', db, 1, used, n, P(dbeta));
      }
      if (dg !== (dgamma && P(dgamma))) allocator.release(dg, used * n * 4);
      if (db !== (dbeta && P(dbeta))) allocator.release(db, used * n * 4);
    },
  };
}
