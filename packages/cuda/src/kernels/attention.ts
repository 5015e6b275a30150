/**
 * Fused attention (native/kernels/attention.cu, FlashAttention-2's scheme on mma.sync): bfloat16
 * and float16 heads of size 32, 64 or 128 with dv = d. Core composes every other case.
 */
import type { DType } from '@sparsegrad/core';
import { type AttentionOperand, type AttentionSpec, DTYPE_BYTES, type FusedAttention, isHalf } from '@sparsegrad/core/backend';
import type { Args } from '../args.ts';
import { type CudaHost, P, tname } from './host.ts';

const HEAD_SIZES = [32, 64, 128];
/** Queries per forward block and keys per tile / backward block (attention.cu's BQ, BK; PAD 8). */
const BQ = 64;
const BK = 64;
const PAD = 8;
/** Queries per backward step (attention.cu's BR). */
const backwardRows = (d: number) => (d === 128 ? 32 : 64);

/** Dynamic shared memory of the forward kernel: Qs [64][d+8], K and V tiles [64][d+8] in two buffers each. */
export const forwardShared = (d: number, dtype: DType) => (BQ + 4 * BK) * (d + PAD) * DTYPE_BYTES[dtype];
/** Of the backward kernel: K and V [64][d+8], Q and dO tiles [BR][d+8] in two buffers each, dS [BR][64+8] (with dQ). */
export function backwardShared(d: number, dtype: DType, withDq = true): number {
  const br = backwardRows(d);
  return ((2 * BK + 4 * br) * (d + PAD) + (withDq ? br * (BK + PAD) : 0)) * DTYPE_BYTES[dtype];
}
/** Of the dQ kernel (attentionDq 'separate'): Qs and dOs [64][d+8], K and V tiles [64][d+8] in two buffers each. */
export const dqShared = (d: number, dtype: DType) => (2 * BQ + 4 * BK) * (d + PAD) * DTYPE_BYTES[dtype];

/** The problem's arguments, the last of both kernels' (after heads): lengths, scale, causal flag and dropout. */
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
  /** An operand's start (its offset applied) and its Heads struct (attention.cu), for Args. */
  const start = (o: AttentionOperand) => P(o.buffer) + o.offset * DTYPE_BYTES[o.buffer.dtype];
  const layout = (o: AttentionOperand) => new Uint8Array(Int32Array.of(o.batchStride, o.headStride, o.rowStride).buffer);
  return {
    supports: (spec, dtype) =>
      h.tuning().fusedAttention &&
      isHalf(dtype) &&
      spec.d === spec.dv &&
      HEAD_SIZES.includes(spec.d) &&
      spec.batch <= 65535 &&
      (!spec.causal || spec.tq === spec.tk),
    forward(q, k, v, spec, out, lse) {
      const a = args.reset();
      for (const o of [q, k, v, out]) a.ptr(start(o));
      a.ptr(P(lse));
      for (const o of [q, k, v, out]) a.raw(layout(o), 4);
      launch(
        'scaledDotProductAttention',
        name('fwd', spec, q.buffer.dtype),
        [Math.ceil(spec.tq / BQ), spec.batch, 1],
        128,
        problem(a.i32(spec.heads), spec),
        forwardShared(spec.d, q.buffer.dtype),
      );
    },
    backward(q, k, v, out, dout, lse, spec, dq, dk, dv) {
      const op = 'scaledDotProductAttention';
      const dtype = q.buffer.dtype;
      const rows = spec.batch * spec.tq;
      const dsum = alloc(rows, 'float32');
      launch(
        op,
        name('bwd_dot', spec, dtype),
        [h.blocksFor(rows, 8), 1, 1],
        256,
        args.reset().ptr(start(out)).ptr(start(dout)).ptr(P(dsum)).raw(layout(out), 4).raw(layout(dout), 4).i32(spec.heads).i32(spec.tq).i32(rows),
      );
      // dK and dV, and dQ either gathered there by float32 atomics (then taking q's dtype and
      // layout) or, with the tuning's attentionDq 'separate', from a kernel of its own.
      const separate = h.tuning().attentionDq === 'separate';
      const dq32 = separate ? null : alloc(rows * spec.d, 'float32');
      if (dq32) h.backend().fill(dq32, rows * spec.d, 0);
      const a = args.reset();
      for (const o of [q, k, v, dout]) a.ptr(start(o));
      a.ptr(P(lse)).ptr(P(dsum));
      if (dq32) a.ptr(P(dq32));
      a.ptr(start(dk)).ptr(start(dv));
      for (const o of [q, k, v, dout, dk, dv]) a.raw(layout(o), 4);
      const grid: [number, number, number] = [Math.ceil(spec.tk / BK), spec.batch, 1];
      launch(op, name(separate ? 'bwd_kv' : 'bwd', spec, dtype), grid, 128, problem(a.i32(spec.heads), spec), backwardShared(spec.d, dtype, !separate));
      if (dq32) {
        const shape = [spec.batch / spec.heads, spec.heads, spec.tq, spec.d];
        h.backend().copy(
          { buffer: dq32, shape, strides: [spec.heads * spec.tq * spec.d, spec.tq * spec.d, spec.d, 1], offset: 0 },
          { buffer: dq.buffer, shape, strides: [dq.batchStride, dq.headStride, dq.rowStride, 1], offset: dq.offset },
        );
        free(dq32);
      } else {
        const b = args.reset();
        for (const o of [q, k, v, dout]) b.ptr(start(o));
        b.ptr(P(lse)).ptr(P(dsum)).ptr(start(dq));
        for (const o of [q, k, v, dout, dq]) b.raw(layout(o), 4);
        launch(op, name('bwd_dq', spec, dtype), [Math.ceil(spec.tq / BQ), spec.batch, 1], 128, problem(b.i32(spec.heads), spec), dqShared(spec.d, dtype));
      }
      free(dsum);
    },
  };
}
