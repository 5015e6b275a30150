/**
 * Fused attention (native/kernels/attention.cu, FlashAttention-2's scheme on mma.sync): bfloat16
 * and float16 heads of size 32, 64 or 128 with dv = d. Core composes every other case.
 */
import type { DType } from '@sparsegrad/core';
import { type AttentionSpec, DTYPE_BYTES, type FusedAttention, flatView, isHalf } from '@sparsegrad/core/backend';
import type { Args } from '../args.ts';
import { type CudaHost, P, tname } from './host.ts';

const HEAD_SIZES = [32, 64, 128];
/** Queries per forward block and keys per tile / backward block (attention.cu's BQ, BK; PAD 8). */
const BQ = 64;
const BK = 64;
const PAD = 8;
/** Queries per backward step (attention.cu's BR). */
const backwardRows = (d: number) => (d === 128 ? 32 : 64);

/** Dynamic shared memory of the forward kernel: Qs and Ks [64][d+8], Vt [d][64+8]. */
export const forwardShared = (d: number, dtype: DType) => (2 * BQ * (d + PAD) + d * (BK + PAD)) * DTYPE_BYTES[dtype];
/** Of the backward kernel: K, V, K^T, Q, Q^T, dO, dO^T, dS tiles and two float rows. */
export function backwardShared(d: number, dtype: DType): number {
  const br = backwardRows(d);
  const elements = 2 * BK * (d + PAD) + d * (BK + PAD) + 2 * (br * (d + PAD) + d * (br + PAD)) + br * (BK + PAD);
  return elements * DTYPE_BYTES[dtype] + 2 * br * 4;
}

/** The problem's arguments, the last of both kernels': lengths, scale, causal flag and dropout. */
const problem = (a: Args, spec: AttentionSpec): Args =>
  a
    .i32(spec.tq)
    .i32(spec.tk)
    .f32(spec.scale)
    .i32(spec.causal ? 1 : 0)
    .f32(spec.dropout)
    .u32(spec.key)
    .f32(spec.keepScale);

export function attentionKernels(h: CudaHost): FusedAttention {
  const { args, launch, alloc, free } = h;
  const name = (part: string, spec: AttentionSpec, dtype: DType) => `attn_${part}_${tname(dtype)}_${spec.d}`;
  return {
    supports: (spec, dtype) =>
      h.tuning().fusedAttention &&
      isHalf(dtype) &&
      spec.d === spec.dv &&
      HEAD_SIZES.includes(spec.d) &&
      spec.batch <= 65535 &&
      (!spec.causal || spec.tq === spec.tk),
    forward(q, k, v, spec, out, lse) {
      launch(
        'scaledDotProductAttention',
        name('fwd', spec, q.dtype),
        [Math.ceil(spec.tq / BQ), spec.batch, 1],
        128,
        problem(args.reset().ptr(P(q)).ptr(P(k)).ptr(P(v)).ptr(P(out)).ptr(P(lse)), spec),
        forwardShared(spec.d, q.dtype),
      );
    },
    backward(q, k, v, out, dout, lse, spec, dq, dk, dv) {
      const op = 'scaledDotProductAttention';
      const rows = spec.batch * spec.tq;
      const dsum = alloc(rows, 'float32');
      launch(op, name('bwd_dot', spec, q.dtype), [h.blocksFor(rows, 8), 1, 1], 256, args.reset().ptr(P(out)).ptr(P(dout)).ptr(P(dsum)).i32(rows));
      // dQ gathers every key block's share by float32 atomics, then takes q's dtype.
      const dq32 = alloc(rows * spec.d, 'float32');
      h.backend().fill(dq32, rows * spec.d, 0);
      launch(
        op,
        name('bwd', spec, q.dtype),
        [Math.ceil(spec.tk / BK), spec.batch, 1],
        128,
        problem(args.reset().ptr(P(q)).ptr(P(k)).ptr(P(v)).ptr(P(dout)).ptr(P(lse)).ptr(P(dsum)).ptr(P(dq32)).ptr(P(dk)).ptr(P(dv)), spec),
        backwardShared(spec.d, q.dtype),
      );
      h.backend().copy(flatView(dq32, rows * spec.d), flatView(dq, rows * spec.d));
      free(dq32);
      free(dsum);
    },
  };
}
