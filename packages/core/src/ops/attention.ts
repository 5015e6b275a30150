/** Attention: its weights as one op (so that the [..., Tq, Tk] scores do not outlive it), and scaled dot-product attention. */
import { record } from '../autograd/graph.ts';
import { lowPrecision } from '../autocast.ts';
import { type AttentionOperand, type AttentionSpec, isFloating } from '../backend.ts';
import { varying } from '../capture.ts';
import { engine, noGrad } from '../engine.ts';
import { roundTo } from '../half.ts';
import { fmtShape, opError } from '../errors.ts';
import { broadcastShapes } from '../shape.ts';
import { empty, type Tensor, viewOf } from '../tensor.ts';
import { addFreeing, binaryKernel } from './elementwise.ts';
import { matmul, matmulKernel } from './matmul.ts';
import { contiguous, transpose } from './movement.ts';
import { dropout, softmaxKernel } from './nn.ts';
import { checkFloat, checkNumber, checkTensors } from './util.ts';

export interface AttentionWeightsOptions {
  /** Multiplies q k^T (1 / sqrt(head size) in a Transformer). */
  scale: number;
  /** Row i keeps keys 0..i (square scores only). */
  causal?: boolean;
  /** Added to the scaled scores before the softmax, broadcast to [..., Tq, Tk] (e.g. -1e9 at padding); not differentiated. */
  mask?: Tensor | null;
}

/**
 * softmax(scale * q k^T + mask) over the keys, q [..., Tq, d], k [..., Tk, d]. As separate ops the
 * scaled q, the scores and the masked scores would each stay alive until backward; here they are
 * freed inside the op, whose backward needs only q, k and the weights (PyTorch keeps the same
 * three for its math attention path).
 */
export function attentionWeights(q0: Tensor, k0: Tensor, opts: AttentionWeightsOptions): Tensor {
  const op = 'attentionWeights';
  const mask = opts.mask ?? null;
  checkTensors(op, q0, k0, ...(mask ? [mask] : []));
  for (const t of [q0, k0, mask]) if (t) checkFloat(op, t);
  const [q, k] = lowPrecision(q0, k0);
  if (!Number.isFinite(checkNumber(op, 'scale', opts.scale))) throw opError(op, `scale must be finite, got ${opts.scale}`);
  if (q.rank < 2 || k.rank < 2 || q.shape[q.rank - 1] !== k.shape[k.rank - 1]) {
    throw opError(op, `q [..., Tq, d] and k [..., Tk, d] must share d, got ${fmtShape(q.shape)} and ${fmtShape(k.shape)}`);
  }
  const causal = opts.causal ?? false;
  if (causal && q.shape[q.rank - 2] !== k.shape[k.rank - 2])
    throw opError(op, `a causal mask needs as many queries as keys, got ${fmtShape(q.shape)} and ${fmtShape(k.shape)}`);
  if (mask) {
    // The mask must broadcast to the scores without growing them: [..., Tq, Tk].
    const scores = [...broadcastShapes(op, q.shape.slice(0, -2), k.shape.slice(0, -2)), q.shape[q.rank - 2], k.shape[k.rank - 2]];
    const fits = mask.rank <= scores.length && mask.shape.every((dim, i) => dim === 1 || dim === scores[scores.length - mask.rank + i]);
    if (!fits) throw opError(op, `mask of shape ${fmtShape(mask.shape)} does not broadcast to the scores ${fmtShape(scores)}`);
  }
  const out = noGrad(() => {
    const qs = binaryKernel('mul', q, opts.scale);
    const kT = transpose(k, -2, -1);
    let scores = matmulKernel(qs, kT);
    qs.dispose();
    kT.dispose();
    if (mask) scores = addFreeing(scores, mask);
    const w = softmaxKernel(op, scores, false, causal);
    scores.dispose();
    return w;
  });
  return record(op, [q, k], out, { scale: opts.scale });
}

export interface ScaledDotProductAttentionOptions {
  /** Row i attends to keys 0..i (as many queries as keys). */
  causal?: boolean;
  /** Added to the scaled scores, broadcast to [..., Tq, Tk] (e.g. -1e9 at padding); not differentiated. */
  mask?: Tensor | null;
  /** Dropout probability on the attention weights; pass 0 outside training. */
  dropout?: number;
  /** Multiplies q k^T; 1 / sqrt(d) by default. */
  scale?: number;
}

/**
 * softmax(scale * q k^T + mask) v, q [..., Tq, d], k [..., Tk, d], v [..., Tk, dv], batch dims
 * broadcast: PyTorch's `scaled_dot_product_attention` with an additive float mask. Through the
 * backend's fused kernels where it has them and they take the problem (no mask); elsewhere
 * composed of attentionWeights (the weights are the one [..., Tq, Tk] tensor kept for backward),
 * dropout and a batched product. Both draw the same dropout mask for the same seed.
 */
export function scaledDotProductAttention(q0: Tensor, k0: Tensor, v0: Tensor, opts: ScaledDotProductAttentionOptions = {}): Tensor {
  const op = 'scaledDotProductAttention';
  checkTensors(op, q0, k0, v0);
  for (const t of [q0, k0, v0]) checkFloat(op, t);
  const [q, k, v] = lowPrecision(q0, k0, v0);
  if (q.rank < 2 || k.rank < 2 || v.rank < 2)
    throw opError(op, `q, k and v need at least 2 dims, got ${fmtShape(q.shape)}, ${fmtShape(k.shape)} and ${fmtShape(v.shape)}`);
  if (v.shape[v.rank - 2] !== k.shape[k.rank - 2])
    throw opError(op, `v [..., Tk, dv] must have as many rows as k [..., Tk, d] has keys, got ${fmtShape(v.shape)} and ${fmtShape(k.shape)}`);
  broadcastShapes(op, broadcastShapes(op, q.shape.slice(0, -2), k.shape.slice(0, -2)), v.shape.slice(0, -2));
  const d = q.shape[q.rank - 1];
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const p = opts.dropout ?? 0;
  checkNumber(op, 'dropout', p);
  if (!(p >= 0 && p < 1)) throw opError(op, `dropout must be in [0, 1), got ${p}`);
  const fused = opts.mask ? null : fusedAttention(q, k, v, scale, opts.causal ?? false, p);
  if (fused) return fused;
  const weights = attentionWeights(q, k, { scale, causal: opts.causal, mask: opts.mask });
  const kept = p > 0 ? dropout(weights, p) : weights;
  const out = matmul(kept, v);
  // Without a gradient to compute nothing holds the weights: free them now, not at scope end.
  if (!out.requiresGrad) {
    if (kept !== weights) kept.dispose();
    weights.dispose();
  }
  return out;
}

/**
 * Attention through the backend's fused kernels where they take the problem (no mask, q, k and v
 * of one dtype and the same batch dims, the head sizes the kernels have); null otherwise, and the
 * caller composes it. The kernels read q, k and v where they lie (heads split out of a projection
 * are strided views) and write the output in q's memory order, so splitting and merging heads
 * copies nothing.
 */
function fusedAttention(q: Tensor, k: Tensor, v: Tensor, scale: number, causal: boolean, dropout: number): Tensor | null {
  const kernels = q.backend.fusedAttention;
  if (!kernels || q.dtype !== k.dtype || q.dtype !== v.dtype || !isFloating(q.dtype)) return null;
  const lead = q.shape.slice(0, -2);
  if (k.rank !== q.rank || v.rank !== q.rank || k.shape.slice(0, -2).join() !== lead.join() || v.shape.slice(0, -2).join() !== lead.join()) return null;
  const spec: AttentionSpec = {
    batch: lead.reduce((a, b) => a * b, 1),
    heads: lead.length > 0 ? lead[lead.length - 1] : 1,
    tq: q.shape[q.rank - 2],
    tk: k.shape[k.rank - 2],
    d: q.shape[q.rank - 1],
    dv: v.shape[v.rank - 1],
    scale,
    causal,
    dropout,
    key: 0,
    keepScale: roundTo(q.dtype as 'float32', Math.fround(1 / (1 - dropout))),
  };
  if (spec.batch * spec.tq * spec.tk === 0 || !kernels.supports(spec, q.dtype)) return null;
  const op = 'scaledDotProductAttention';
  const ins = [q, k, v].map((t) => inPlace(op, t));
  const out = emptyInOrderOf([...lead, spec.tq, spec.dv], q);
  const lse = empty([spec.batch, spec.tq], 'float32', q.backend);
  const [oq, ok, ov] = ins.map((i) => i.operand);
  const oo = outputOperand(op, out);
  const lseBuffer = lse.bufferFor(op);
  const forward = () => kernels.forward(oq, ok, ov, spec, oo, lseBuffer);
  if (dropout > 0) {
    // The key is drawn where dropout() would draw it, so the random stream stays the same (and,
    // in a captured step, drawn again for every replay; the backward pass reads it from spec).
    varying(() => {
      (spec as { key: number }).key = engine.nextKey();
      forward();
    });
  } else forward();
  for (const i of ins) i.release();
  const recorded = record('flashAttention', [q, k, v], out, { spec, lse });
  if (!recorded.requiresGrad) lse.dispose();
  return recorded;
}

/** The gradients of a fused attention (the rule of 'flashAttention'): dq, dk, dv in the inputs' dtype and memory order. */
export function flashAttentionBackward(g: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, spec: AttentionSpec): Tensor[] {
  const op = 'scaledDotProductAttention';
  const kernels = q.backend.fusedAttention!;
  const ins = [q, k, v, out, g].map((t) => inPlace(op, t));
  const grads = [q, k, v].map((t) => emptyInOrderOf(t.shape, t));
  const [oq, ok, ov, oo, og] = ins.map((i) => i.operand);
  const [dq, dk, dv] = grads.map((t) => outputOperand(op, t));
  const lseBuffer = lse.bufferFor(op);
  const backward = () => kernels.backward(oq, ok, ov, oo, og, lseBuffer, spec, dq, dk, dv);
  // With dropout the mask's key changes every step (see fusedAttention).
  if (spec.dropout > 0) varying(backward);
  else backward();
  for (const i of ins) i.release();
  return grads;
}

/** Where t's heads lie as an AttentionOperand, or null if its layout is not one (see AttentionOperand). */
function operandLayout(t: Tensor): Omit<AttentionOperand, 'buffer'> | null {
  const r = t.rank;
  const { shape, strides } = t;
  if (shape[r - 1] > 1 && strides[r - 1] !== 1) return null;
  const rowStride = shape[r - 2] > 1 ? strides[r - 2] : 0;
  const headStride = r > 2 && shape[r - 3] > 1 ? strides[r - 3] : 0;
  // The dims before the heads must collapse into one of stride batchStride.
  let batchStride = 0;
  let inner = 1;
  for (let i = r - 4; i >= 0; i--) {
    if (shape[i] > 1) {
      const s = strides[i] / inner;
      if (!Number.isInteger(s) || (batchStride !== 0 && s !== batchStride)) return null;
      if (batchStride === 0 && inner > 1 && s !== 0) return null;
      batchStride = s;
    }
    inner *= shape[i];
  }
  const layout = { offset: t.offset, batchStride, headStride, rowStride };
  return Object.values(layout).every((x) => x % 8 === 0) ? layout : null;
}

/**
 * t as a fused attention operand: in place where its layout is one, else a contiguous copy
 * (release() frees the copy once the kernel is queued).
 */
function inPlace(op: string, t: Tensor): { operand: AttentionOperand; release(): void } {
  const layout = operandLayout(t);
  const c = layout ? t : contiguous(t);
  const operand = { buffer: c.bufferFor(op), ...(layout ?? operandLayout(c)!) };
  return { operand, release: () => c !== t && c.dispose() };
}

/** An output of the kernels (from emptyInOrderOf): always an AttentionOperand, written in place. */
function outputOperand(op: string, t: Tensor): AttentionOperand {
  const layout = operandLayout(t);
  if (!layout) throw opError(op, `internal error: an output of shape ${fmtShape(t.shape)} is not an attention operand`);
  return { buffer: t.bufferFor(op), ...layout };
}

/**
 * An uninitialised tensor of `shape` whose dims lie in memory in the order of like's (its last
 * dim innermost): attention over [B, H, T, d] views of [B, T, H, d] projections writes its output
 * and gradients as such views too, which merge back into [B, T, H d] without a copy. Where that
 * order is not an AttentionOperand (leading dims that do not collapse), a contiguous tensor.
 */
function emptyInOrderOf(shape: readonly number[], like: Tensor): Tensor {
  const r = shape.length;
  const order = [...Array(r - 1).keys()].sort((a, b) => like.strides[b] - like.strides[a] || a - b);
  order.push(r - 1);
  const strides = new Array<number>(r);
  let s = 1;
  for (let i = r - 1; i >= 0; i--) {
    strides[order[i]] = s;
    s *= shape[order[i]];
  }
  const flat = empty([s], like.dtype, like.backend);
  const out = viewOf(flat, 'scaledDotProductAttention', shape, strides, 0);
  flat.dispose();
  if (operandLayout(out)) return out;
  out.dispose();
  return empty(shape, like.dtype, like.backend);
}
