/**
 * Dense batched products: the tile and any split of k from tiles.ts (denseTiling), the WGSL from
 * gemm.ts, batches beyond the grid's z limit in slices.
 */
import type { Backend } from '@sparsegrad/core';
import type { MatrixView } from '@sparsegrad/core/backend';
import { G, MAX_GROUPS_X } from '../context.ts';
import { gemmKernel, tileCols, tileRows, type GemmShape } from '../gemm.ts';
import { DENSE_LARGE, denseTiling, fitShape, shapeKey, tuned } from '../tiles.ts';
import { uniforms } from '../uniforms.ts';
import { PARAMS } from '../wgsl.ts';
import type { KernelHost } from './common.ts';

/**
 * Dense products other than X W^T's layout store vec4s up to this k per workgroup (dY W's layout:
 * the first; measured slower at 1024 and 4096, NOTES 37); longer ones store scalars.
 */
const VEC_STORE_KN_MAX_K = 512;
const VEC_STORE_MAX_K = 2048;

/**
 * The product's words: C [M, N] (at cOffset, batch entries M x N apart) from A's and B's offsets,
 * batch strides and strides along rows / k and k / columns; each batch entry covers `chunk` of k,
 * cut at K (split-K: the whole k; an ordinary batch: 0xffffffff).
 */
const WORDS = uniforms(['M', 'N', 'chunk', 'aOffset', 'aBatch', 'aRS', 'aKS', 'bOffset', 'bBatch', 'bKS', 'bNS', 'cOffset', 'K']);
const strides = (a: MatrixView, b: MatrixView) => ({ aRS: a.rowStride, aKS: a.colStride, bKS: b.rowStride, bNS: b.colStride });

export function matmulKernels(h: KernelHost): Pick<Backend, 'matmul'> {
  const { ctx, pipe } = h;
  const fit = (shape: GemmShape) => fitShape(shape, ctx.device.limits.maxComputeWorkgroupStorageSize);
  return {
    matmul(a: MatrixView, b: MatrixView, out, batch, m, n, k) {
      // The tile and any split of k: tiles.ts's denseTiling.
      const aC = a.colStride === 1 ? 'k' : 'm';
      const bC = b.colStride === 1 ? 'n' : 'k';
      // Measured on an H100: with both operands row-major a k-step of 4 beats 8 (40 vs 37 TFLOP/s).
      const large = aC === 'k' && bC === 'n' ? { ...DENSE_LARGE, bk: 4 } : DENSE_LARGE;
      const tiling = denseTiling(m, n, k, batch, large, ctx.tuning);
      const shape = fit(tuned('matmul', ctx.tuning.tiles) ?? tiling.shape);
      const kChecked = k % shape.bk !== 0;
      // Outputs as vec4 stores where rows are multiples of 4 (every row and batch then starts
      // aligned): always for X W^T's layout (k-contiguous operands), for the others only over a
      // short k per workgroup. On an H100 X W^T of [16384, 1024] by [4096, 1024]^T went 3.61 ->
      // 3.53 ms, but dY W (k- by n-contiguous) 3.44 -> 3.54 at k = 4096 and 3.49 -> 3.53 at 1024
      // (NOTES 21, 37); in the GPT step (k 64-512 per workgroup) every product was as fast or
      // faster with them, the attention scores 0.143 -> 0.088 ms.
      const kPerGroup = tiling.splits > 1 ? Math.ceil(k / tiling.splits / shape.bk) * shape.bk : k;
      const v4 = n % 4 === 0 && ((aC === 'k' && bC === 'k') || kPerGroup <= (aC === 'k' && bC === 'n' ? VEC_STORE_KN_MAX_K : VEC_STORE_MAX_K));
      const key = `matmul|${shapeKey(shape)}|${aC}${bC}|${kChecked}|${v4}`;
      const pipeline = pipe(
        key,
        () =>
          `${PARAMS}\n${gemmKernel({
            shape,
            aContiguous: aC,
            bContiguous: bC,
            kChecked,
            a: 'A',
            b: 'B',
            bindings: `@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<${v4 ? 'vec4<f32>' : 'f32'}>;`,
            // Grid: x = column tiles (consecutive workgroups share A's row panel in L2), y = row tiles, z = batch.
            // A split-K product is a batch over chunks of k whose last chunk may be short: L is the
            // chunk length, cut at K (the whole k; 0xffffffff for an ordinary batch).
            setup: `${WORDS.lets} let batch = wg.z; let L = min(chunk, K - batch * chunk); let m0 = wg.y * ${tileRows(shape)}u; let n0 = wg.x * ${tileCols(shape)}u;`,
            segBegin: '0u',
            segEnd: '1u',
            segment: 'aBase = aOffset + batch * aBatch + m0 * aRS; bBase = bOffset + batch * bBatch + n0 * bNS;',
            ...(v4
              ? { storeVec4: (r: string, c: string, v: string) => `C[(cOffset + batch * M * N + (m0 + ${r}) * N + n0 + ${c}) / 4u] = ${v};` }
              : { store: (r: string, c: string, v: string) => `C[cOffset + batch * M * N + (m0 + ${r}) * N + n0 + ${c}] = ${v};` }),
          })}`,
      );
      // Profiles tell products apart by shape and layout.
      const op = ctx.profiling ? `matmul ${batch}x${m}x${n}x${k} ${aC}${bC}` : 'matmul';
      const grid = (count: number): [number, number, number] => [Math.ceil(n / tileCols(shape)), Math.ceil(m / tileRows(shape)), count];
      if (tiling.splits > 1) {
        // Few output tiles over a long k (weight gradients: dW = dY^T X): k in chunks run as a
        // batch writing partial products, then summed, so every multiprocessor has work.
        const chunk = kPerGroup;
        const used = Math.ceil(k / chunk);
        const partial = ctx.alloc(used * m * n, 'float32');
        const params = WORDS.pack({
          ...strides(a, b),
          M: m,
          N: n,
          chunk,
          aOffset: a.offset,
          aBatch: chunk * a.colStride,
          bOffset: b.offset,
          bBatch: chunk * b.rowStride,
          cOffset: 0,
          K: k,
        });
        ctx.dispatchGrid(`${op} split ${used}`, pipeline, [G(a.buffer), G(b.buffer), partial], params, grid(used));
        h.backend().reduce('sum', partial, 1, used, m * n, out);
        ctx.free(partial); // reuse is ordered after these dispatches on the queue
        return;
      }
      // The grid's z dimension is limited: long batches go in slices, each with its own offsets.
      for (let b0 = 0; b0 < batch; b0 += MAX_GROUPS_X) {
        const slice = WORDS.pack({
          ...strides(a, b),
          M: m,
          N: n,
          chunk: k,
          aOffset: a.offset + b0 * a.batchStride,
          aBatch: a.batchStride,
          bOffset: b.offset + b0 * b.batchStride,
          bBatch: b.batchStride,
          cOffset: b0 * m * n,
          K: 0xffffffff,
        });
        ctx.dispatchGrid(op, pipeline, [G(a.buffer), G(b.buffer), G(out)], slice, grid(Math.min(MAX_GROUPS_X, batch - b0)));
      }
    },
  };
}
