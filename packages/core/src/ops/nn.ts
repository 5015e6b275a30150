import { fullPrecision } from '../autocast.ts';
import { varying } from '../capture.ts';
import { engine } from '../engine.ts';
import { record } from '../autograd/graph.ts';
import { fmtShape, opError } from '../errors.ts';
import { normalizeAxis, sameShape, sizeOf } from '../shape.ts';
import { empty, type Tensor } from '../tensor.ts';
import { add, binaryKernel, div, mul, neg, sub, where } from './elementwise.ts';
import { gather } from './indexing.ts';
import { asFlat, reshape, transpose } from './movement.ts';
import { mean, sum } from './reduce.ts';
import { maximum } from './elementwise.ts';
import { checkFloat, checkNumber, checkTensors, inCommonDtype } from './util.ts';

function softmaxLike(op: 'softmax' | 'logSoftmax', x0: Tensor, axis: number): Tensor {
  checkTensors(op, x0);
  checkFloat(op, x0);
  const [x] = fullPrecision(x0);
  if (x.rank === 0) throw opError(op, 'expected a tensor of rank >= 1, got a scalar');
  const a = normalizeAxis(op, axis, x.rank);
  if (a !== x.rank - 1) {
    // The kernel works on the last axis; other axes go through (differentiable) transposes.
    const t = transpose(x, a, -1);
    const y = softmaxLike(op, t, -1);
    return transpose(y, a, -1);
  }
  return softmaxRows(op, x, op === 'logSoftmax', false);
}

/** The row kernel over the last axis, recorded as softmax or logSoftmax (their backward reads the output). */
function softmaxRows(op: string, x: Tensor, log: boolean, causal: boolean): Tensor {
  return record(log ? 'logSoftmax' : 'softmax', [x], softmaxKernel(op, x, log, causal));
}

/** The row kernel over the last axis; no gradient recording. */
export function softmaxKernel(op: string, x: Tensor, log: boolean, causal: boolean): Tensor {
  const n = x.shape[x.rank - 1];
  const src = asFlat(x);
  const out = empty(x.shape, x.dtype, x.backend);
  if (out.size > 0) x.backend.softmax(src.bufferFor(op), out.size / n, n, log, causal, out.bufferFor(op));
  if (src !== x) src.dispose();
  return out;
}

export const softmax = (x: Tensor, axis = -1): Tensor => softmaxLike('softmax', x, axis);
export const logSoftmax = (x: Tensor, axis = -1): Tensor => softmaxLike('logSoftmax', x, axis);

/**
 * Softmax over the last axis of square [..., T, T] scores with a causal mask: row i attends to
 * columns 0..i, and the others get probability exactly 0 (as adding -inf above the diagonal
 * would, without another [..., T, T] tensor). Differentiates as softmax: the masked outputs are
 * 0, so their gradients are too.
 */
export function causalSoftmax(x0: Tensor): Tensor {
  const op = 'causalSoftmax';
  checkTensors(op, x0);
  checkFloat(op, x0);
  const [x] = fullPrecision(x0);
  const n = x.shape[x.rank - 1];
  if (x.rank < 2 || x.shape[x.rank - 2] !== n) throw opError(op, `expected square scores [..., T, T], got ${fmtShape(x.shape)}`);
  return softmaxRows(op, x, false, true);
}

/** Layer normalisation over the trailing `normalizedSize` elements, with optional affine weight and bias of that size. */
export function layerNorm(x0: Tensor, normalizedShape: number | readonly number[], weight0?: Tensor | null, bias0?: Tensor | null, eps = 1e-5): Tensor {
  const op = 'layerNorm';
  checkTensors(op, x0, ...[weight0, bias0].filter((t): t is Tensor => !!t));
  checkFloat(op, x0);
  const [x, weight, bias] = fullPrecision(x0, weight0, bias0);
  const params = [weight, bias].filter((t): t is Tensor => !!t);
  const ns = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
  if (!sameShape(x.shape.slice(x.rank - ns.length), ns)) {
    throw opError(op, `normalizedShape ${fmtShape(ns)} does not match the trailing dimensions of input ${fmtShape(x.shape)}`);
  }
  for (const p of params) {
    if (!sameShape(p.shape, ns)) throw opError(op, `weight and bias must have shape ${fmtShape(ns)}, got ${fmtShape(p.shape)}`);
  }
  if (!(eps > 0)) throw opError(op, `eps must be positive, got ${eps}`);
  const n = sizeOf(ns);
  const rows = n === 0 ? 0 : x.size / n;
  const temps: Tensor[] = [];
  const [xc, wc, bc] = inCommonDtype([x, weight ?? null, bias ?? null], temps) as [Tensor, Tensor | null, Tensor | null];
  const src = asFlat(xc);
  const w = wc && asFlat(wc);
  const b = bc && asFlat(bc);
  const out = empty(x.shape, xc.dtype, x.backend);
  const meanT = empty([rows], 'float32', x.backend);
  const rstd = empty([rows], 'float32', x.backend);
  if (out.size > 0) {
    x.backend.layerNorm(
      src.bufferFor(op),
      w?.bufferFor(op) ?? null,
      b?.bufferFor(op) ?? null,
      rows,
      n,
      eps,
      out.bufferFor(op),
      meanT.bufferFor(op),
      rstd.bufferFor(op),
    );
  }
  if (src !== xc) src.dispose();
  if (w && w !== wc) w.dispose();
  if (b && b !== bc) b.dispose();
  for (const t of temps) t.dispose();
  const inputs = [x, weight ?? null, bias ?? null];
  const recorded = record(
    op,
    inputs.filter((t): t is Tensor => !!t),
    out,
    {
      mean: meanT,
      rstd,
      n,
      rows,
      hasWeight: !!weight,
      hasBias: !!bias,
    },
  );
  if (!recorded.requiresGrad) {
    meanT.dispose();
    rstd.dispose();
  }
  return recorded;
}

/** Zeroes each element with probability p during training and scales the rest by 1/(1-p). */
export function dropout(x: Tensor, p: number, training = true): Tensor {
  const op = 'dropout';
  checkTensors(op, x);
  checkFloat(op, x);
  checkNumber(op, 'p', p);
  if (!(p >= 0 && p < 1)) throw opError(op, `p must be in [0, 1), got ${p}`);
  if (!training || p === 0) return x;
  // The mask in one kernel, in x's dtype (so the product stays in it): 1/(1-p) where the uniform
  // draw is >= p, else 0 (the same mask as a uniform tensor compared with p and scaled).
  const scale = empty(x.shape, x.dtype, x.backend);
  const buffer = scale.bufferFor(op);
  varying(() => x.backend.random(buffer, scale.size, { kind: 'keep', key: engine.nextKey(), a: p, b: 1 / (1 - p) }));
  const y = mul(x, scale);
  if (!y.requiresGrad) scale.dispose();
  return y;
}

export type Reduction = 'mean' | 'sum' | 'none';

function reduceLoss(op: string, loss: Tensor, reduction: Reduction): Tensor {
  if (reduction === 'none') return loss;
  if (reduction === 'sum') return sum(loss);
  if (reduction === 'mean') return mean(loss);
  throw opError(op, `reduction must be 'mean', 'sum' or 'none', got ${String(reduction)}`);
}

export interface CrossEntropyOptions {
  /** Targets equal to this are skipped (default -100, as in PyTorch). */
  ignoreIndex?: number;
  /** Mixes the one-hot target with a uniform distribution (0 = off). */
  labelSmoothing?: number;
  reduction?: Reduction;
}

/**
 * Cross entropy between logits [..., C] (classes on the last axis) and int32 class indices [...].
 * 'mean' averages over the targets that are not ignored.
 */
export function crossEntropy(logits0: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  checkTensors(op, logits0, targets);
  checkFloat(op, logits0);
  const [logits] = fullPrecision(logits0);
  if (targets.dtype !== 'int32') throw opError(op, `targets must be int32 class indices, got ${targets.dtype}`);
  if (logits.rank < 1 || !sameShape(targets.shape, logits.shape.slice(0, -1))) {
    throw opError(op, `targets shape ${fmtShape(targets.shape)} must equal logits shape ${fmtShape(logits.shape)} without its last (class) axis`);
  }
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const ls = opts.labelSmoothing ?? 0;
  if (!(ls >= 0 && ls <= 1)) throw opError(op, `labelSmoothing must be in [0, 1], got ${ls}`);
  const reduction = opts.reduction ?? 'mean';
  const c = logits.shape[logits.rank - 1];
  const flatLogits = reshape(logits, [-1, c]);
  const rows = flatLogits.shape[0];
  const logp = logSoftmax(flatLogits, -1);
  const t = reshape(targets, [rows, 1]);
  const valid = binaryKernel('ne', t, ignoreIndex);
  const safeT = where(valid, t, 0);
  let loss = neg(gather(logp, 1, safeT));
  if (ls > 0) loss = add(mul(loss, 1 - ls), mul(neg(mean(logp, 1, true)), ls));
  loss = mul(loss, valid);
  if (reduction === 'mean') {
    const count = maximum(sum(valid), 1);
    return div(sum(loss), count);
  }
  if (reduction === 'none') return reshape(loss, targets.shape);
  return reduceLoss(op, loss, reduction);
}

export function mseLoss(pred0: Tensor, target0: Tensor, reduction: Reduction = 'mean'): Tensor {
  checkTensors('mseLoss', pred0, target0);
  const [pred, target] = fullPrecision(pred0, target0);
  if (!sameShape(pred.shape, target.shape)) {
    throw opError('mseLoss', `prediction shape ${fmtShape(pred.shape)} and target shape ${fmtShape(target.shape)} differ`);
  }
  const d = sub(pred, target);
  return reduceLoss('mseLoss', mul(d, d), reduction);
}

/** dL/dx of a softmax (log: of a logSoftmax) over the last axis, from its output `out` and dL/dout `g` (a fused kernel). */
export function softmaxBackwardKernel(g: Tensor, out: Tensor, log: boolean): Tensor {
  const n = out.shape[out.rank - 1];
  const gc = asFlat(g);
  const oc = asFlat(out);
  const dx = empty(out.shape, out.dtype, out.backend);
  if (dx.size > 0) out.backend.softmaxBackward(oc.bufferFor('softmax'), gc.bufferFor('softmax'), dx.size / n, n, log, dx.bufferFor('softmax'));
  return dx;
}

/** The gradients of layerNorm over rows of n (a fused kernel): dx, and dweight / dbias [n] where the op had them. */
export function layerNormBackwardKernel(
  g: Tensor,
  x: Tensor,
  weight: Tensor | null,
  mean: Tensor,
  rstd: Tensor,
  rows: number,
  n: number,
  hasBias: boolean,
): { dx: Tensor; dw: Tensor | null; db: Tensor | null } {
  const op = 'layerNorm';
  // In the dtype the forward computed in (the output's, g's); autograd converts each gradient to its input's dtype.
  const temps: Tensor[] = [];
  const [gd, xd, wd] = inCommonDtype([g, x, weight], temps) as [Tensor, Tensor, Tensor | null];
  const gc = asFlat(gd);
  const xc = asFlat(xd);
  const wc = wd && asFlat(wd);
  const dx = empty(x.shape, gd.dtype, x.backend);
  const dw = weight ? empty([n], gd.dtype, x.backend) : null;
  const db = hasBias ? empty([n], gd.dtype, x.backend) : null;
  if (dx.size > 0) {
    x.backend.layerNormBackward(
      xc.bufferFor(op),
      wc?.bufferFor(op) ?? null,
      mean.bufferFor(op),
      rstd.bufferFor(op),
      gc.bufferFor(op),
      rows,
      n,
      dx.bufferFor(op),
      dw?.bufferFor(op) ?? null,
      db?.bufferFor(op) ?? null,
    );
  } else {
    for (const t of [dw, db]) if (t) x.backend.fill(t.bufferFor(op), n, 0);
  }
  for (const t of [gc, xc, wc]) if (t && t !== gd && t !== xd && t !== wd) t.dispose();
  for (const t of temps) t.dispose();
  return { dx, dw, db };
}
