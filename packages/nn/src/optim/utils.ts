import { noGrad, opError, scaleEachInPlace, sumOfSquares, tidy, keep, type Tensor } from '@sparsegrad/core';
import type { Module } from '../module.ts';
import { Embedding, LayerNorm } from '../layers/basic.ts';
import type { ParamGroup } from './optimizer.ts';

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
    throw opError(
      'warmupCosine',
      `expected lr > 0, 0 <= warmupSteps < totalSteps and 0 <= minLr <= lr, got lr=${lr}, warmupSteps=${warmupSteps}, totalSteps=${totalSteps}, minLr=${minLr}`,
    );
  }
  return (step: number) => {
    if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
    const progress = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
    return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * progress));
  };
}

/**
 * Parameter groups for AdamW as most Transformer recipes (nanoGPT, Hugging Face) use them: weight
 * decay on the weights of linear layers (dense and block-sparse), none on biases, normalization
 * weights and embedding tables. Each parameter appears once (a tied weight too). `decay:
 * 'matrices'` is nanoGPT's own rule instead: every parameter of two or more dimensions
 * (embedding tables and a tied output layer too), none on vectors.
 */
export function decayGroups(model: Module, weightDecay: number, opts: { decay?: 'linear' | 'matrices' } = {}): ParamGroup[] {
  const rule = opts.decay ?? 'linear';
  if (rule !== 'linear' && rule !== 'matrices') throw opError('decayGroups', `decay must be 'linear' or 'matrices', got ${String(rule)}`);
  const decay: Tensor[] = [];
  const noDecay: Tensor[] = [];
  const seen = new Set<Tensor>();
  for (const [name, p] of model.namedParameters()) {
    if (seen.has(p)) continue;
    seen.add(p);
    const cut = name.lastIndexOf('.');
    const module = model.getModule(cut < 0 ? '' : name.slice(0, cut));
    const decays = rule === 'matrices' ? p.rank >= 2 : name.slice(cut + 1) === 'weight' && !(module instanceof Embedding) && !(module instanceof LayerNorm);
    (decays ? decay : noDecay).push(p);
  }
  return [
    { params: decay, weightDecay },
    { params: noDecay, weightDecay: 0 },
  ].filter((g) => g.params.length > 0);
}
