/**
 * Gather and scatter-add over [outer, n, inner] with a strided index view. An index out of range
 * reads as 0 (or is not added) and is recorded in the context's index flags, which the next read
 * checks (core's edge-case rules).
 */
import type { Backend } from '@sparsegrad/core';
import { G } from '../context.ts';
import { uniforms } from '../uniforms.ts';
import { INDEX_ERRORS, wgslType } from '../wgsl.ts';
import { HEAD, MAIN, type KernelHost } from './common.ts';

/** Both kernels' words: x as [outer, n, inner], `count` indices per row, the index view [outer, count, inner]. */
const WORDS = uniforms(['outer', 'n', 'inner', 'count', 'idxOffset', 'idxStride0', 'idxStride1', 'idxStride2']);
const words = (outer: number, n: number, inner: number, count: number, idx: { offset: number; strides: readonly number[] }) =>
  WORDS.pack({ outer, n, inner, count, idxOffset: idx.offset, idxStride0: idx.strides[0], idxStride1: idx.strides[1], idxStride2: idx.strides[2] });

export function indexingKernels(h: KernelHost): Pick<Backend, 'gather' | 'scatterAdd'> {
  const { ctx, pipe } = h;
  return {
    gather(x, idx, outer, n, inner, count, out) {
      const t = wgslType(x.dtype);
      const pipeline = pipe(
        `gather|${t}`,
        () => `${HEAD(`@group(0) @binding(1) var<storage, read> X: array<${t}>;
@group(0) @binding(2) var<storage, read> I: array<i32>;
@group(0) @binding(3) var<storage, read_write> Y: array<${t}>;
${INDEX_ERRORS(4)}`)}\n${MAIN}
  ${WORDS.lets}
  if (i >= outer * count * inner) { return; }
  let o = i / (count * inner); let j = (i / inner) % count; let q = i % inner;
  let k = I[idxOffset + o * idxStride0 + j * idxStride1 + q * idxStride2];
  // Out-of-range indices read as 0 and are reported at the next read; X is read only in range:
  // Node runs Dawn without its robustness clamps (see index.ts).
  var v = ${t}(0);
  if (k >= 0 && u32(k) < n) { v = X[(o * n + u32(k)) * inner + q]; } else { reportIndex(1, k, n); }
  Y[i] = v;
}`,
      );
      ctx.dispatch('gather', pipeline, [G(x), G(idx.buffer), G(out), ctx.indexErrors()], words(outer, n, inner, count, idx), outer * count * inner);
    },
    scatterAdd(src, idx, outer, n, inner, count, out) {
      const isInt = src.dtype === 'int32';
      h.backend().fill(out, outer * n * inner, 0);
      // Float atomics do not exist in WGSL: add through a compare-exchange loop on the bits.
      const pipeline = pipe(
        `scatterAdd|${src.dtype}`,
        () => `${HEAD(`@group(0) @binding(1) var<storage, read> S: array<${isInt ? 'i32' : 'f32'}>;
@group(0) @binding(2) var<storage, read> I: array<i32>;
@group(0) @binding(3) var<storage, read_write> Y: array<atomic<${isInt ? 'i32' : 'u32'}>>;
${INDEX_ERRORS(4)}`)}\n${MAIN}
  ${WORDS.lets}
  if (i >= outer * count * inner) { return; }
  let o = i / (count * inner); let j = (i / inner) % count; let q = i % inner;
  let k = I[idxOffset + o * idxStride0 + j * idxStride1 + q * idxStride2];
  if (k < 0 || u32(k) >= n) { reportIndex(2, k, n); return; }
  let at = (o * n + u32(k)) * inner + q;
  let v = S[i];
  ${
    isInt
      ? 'atomicAdd(&Y[at], v);'
      : `var old = atomicLoad(&Y[at]);
  loop {
    let r = atomicCompareExchangeWeak(&Y[at], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (r.exchanged) { break; }
    old = r.old_value;
  }`
  }
}`,
      );
      ctx.dispatch('scatterAdd', pipeline, [G(src), G(idx.buffer), G(out), ctx.indexErrors()], words(outer, n, inner, count, idx), outer * count * inner);
    },
  };
}
