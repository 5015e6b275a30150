import { noGrad, opError, scaleEachInPlace, sumOfSquares, tidy, keep, type Tensor } from '@sparsegrad/core';

/**
 * Scales all gradients so that their global L2 norm is at most maxNorm. Returns the norm before
 * clipping as a scalar tensor (read it with await norm.item(); no device sync happens here).
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): Tensor {
  if (!(maxNorm > 0)) throw opError('clipGradNorm', `maxNorm must be positive, got ${maxNorm}`);
  const grads = [...params].map((p) => p.grad).filter((g): g is Tensor => !!g);
  if (grads.length === 0) throw opError('clipGradNorm', 'no parameter has a gradient (call backward() first)');
  return noGrad(() => {
    // Two list operations (a launch or two each on a GPU) rather than a product, a sum and a
    // scaling per gradient: a GPT step has ~100 gradients.
    const norm = tidy(() => sumOfSquares(grads).sqrt());
    tidy(() => {
      const scale = norm.add(1e-6).div(maxNorm).maximum(1).pow(-1); // min(1, maxNorm / norm)
      scaleEachInPlace(grads, scale);
    });
    return keep(norm);
  });
}

export interface WarmupCosineOptions {
  /** Peak learning rate reached after warmup. */
  lr: number;
  warmupSteps: number;
  totalSteps: number;
  /** Floor at the end of the cosine decay (default 0.1 * lr). */
  minLr?: number;
}

/** Linear warmup from 0 to lr over warmupSteps, then cosine decay to minLr at totalSteps. Step is 0-based. */
export function warmupCosine(opts: WarmupCosineOptions): (step: number) => number {
  const { lr, warmupSteps, totalSteps } = opts;
  const minLr = opts.minLr ?? 0.1 * lr;
  if (!(lr > 0) || !(warmupSteps >= 0) || !(totalSteps > warmupSteps) || !(minLr >= 0 && minLr <= lr)) {
    throw opError('warmupCosine', `expected lr > 0, 0 <= warmupSteps < totalSteps and 0 <= minLr <= lr, got lr=${lr}, warmupSteps=${warmupSteps}, totalSteps=${totalSteps}, minLr=${minLr}`);
  }
  return (step: number) => {
    if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
    const progress = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
    return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * progress));
  };
}
