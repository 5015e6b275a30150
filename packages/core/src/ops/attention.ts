/** Attention weights as one op, so that the [..., Tq, Tk] scores do not outlive it. */
import { record } from '../autograd/graph.ts';
import { noGrad } from '../engine.ts';
import { fmtShape, opError } from '../errors.ts';
import { broadcastShapes } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { addFreeing, binaryKernel } from './elementwise.ts';
import { matmulKernel } from './matmul.ts';
import { transpose } from './movement.ts';
import { softmaxKernel } from './nn.ts';
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
export function attentionWeights(q: Tensor, k: Tensor, opts: AttentionWeightsOptions): Tensor {
  const op = 'attentionWeights';
  const mask = opts.mask ?? null;
  checkTensors(op, q, k, ...(mask ? [mask] : []));
  for (const t of [q, k, mask]) if (t) checkFloat(op, t);
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
