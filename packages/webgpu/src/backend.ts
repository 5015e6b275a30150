/**
 * The WebGPU backend: every primitive of @sparsegrad/core's Backend as a WGSL compute kernel,
 * assembled from one file per kernel family under kernels/:
 *
 *   elementwise.ts  fill, random, copy, unary, binary, where
 *   reduce.ts       reduce (rows, short rows, few long rows, columns, integer and arg reductions)
 *   matmul.ts       matmul (tile shapes from tiles.ts, WGSL from gemm.ts)
 *   indexing.ts     gather, scatterAdd (bad indices reported at the next read)
 *   rows.ts         softmax, layer norm and their backward
 *   lists.ts        adamStep, sumOfSquares, scaleBuffers
 *   blocksparse.ts  the block-sparse trio
 *
 * Each family receives a KernelHost (kernels/common.ts): the context that owns buffers, pipelines
 * and dispatch (context.ts), what the device offers, and this backend for what one family asks of
 * another. Kernels are generated per op, dtype and specialisation and cached by key.
 */
import type { Backend } from '@sparsegrad/core';
import { G, type GpuContext } from './context.ts';
import { blockSparseKernels } from './kernels/blocksparse.ts';
import { kernelHost } from './kernels/common.ts';
import { elementwiseKernels } from './kernels/elementwise.ts';
import { indexingKernels } from './kernels/indexing.ts';
import { listKernels } from './kernels/lists.ts';
import { matmulKernels } from './kernels/matmul.ts';
import { reduceKernels } from './kernels/reduce.ts';
import { rowKernels } from './kernels/rows.ts';

/** The backend object also carries its engine, for benchmarks (device timing) and diagnostics. */
export interface WebGPUBackend extends Backend {
  readonly context: GpuContext;
}

export function createWebGPUBackend(ctx: GpuContext, software = false, rowSubgroups = 0): WebGPUBackend {
  const host = kernelHost(ctx, rowSubgroups, () => backend);
  const backend: WebGPUBackend = {
    name: 'webgpu',
    context: ctx,
    device: { name: 'webgpu', description: ctx.description, software },
    // 16-bit floats are stored as packed words (no shader-f16 needed) and cast by `copy`; every
    // other kernel gets float32 through core's fallback (half-fallback.ts).
    dtypes: ['float32', 'int32', 'bfloat16', 'float16'],

    alloc: (size, dtype) => ctx.alloc(size, dtype),
    upload(data, dtype) {
      const b = ctx.alloc(data.length, dtype);
      ctx.upload(b, data);
      return b;
    },
    read: (b, size) => ctx.read(G(b), size),
    free: (b) => ctx.free(G(b)),
    memory: () => ctx.live,

    ...elementwiseKernels(host),
    ...reduceKernels(host),
    ...matmulKernels(host),
    // The block-sparse trio; its token chunks' partial sums fold through reduce.
    ...blockSparseKernels(ctx, { sumPartials: (partials, parts, size, out) => backend.reduce('sum', partials, 1, parts, size, out) }),
    ...indexingKernels(host),
    ...rowKernels(host),
    ...listKernels(host),
  };
  return backend;
}
