/**
 * Dynamic loss scaling, as PyTorch's `torch.amp.GradScaler`: float16 gradients underflow to zero
 * unless the loss is scaled up before backward. The scaler multiplies the loss by `scale`, divides
 * the gradients by it again before the optimizer step, and skips the step when a gradient is not
 * finite (the scale was too large): the scale then halves; after `growthInterval` steps without
 * overflow it doubles.
 *
 *   const scaler = new GradScaler();
 *   scaler.scaleLoss(loss).backward();
 *   await scaler.unscale(optimizer);           // optional: before clipGradNorm
 *   clipGradNorm(model.parameters(), 1);
 *   await scaler.step(optimizer);              // unscales if not done, steps unless overflowed
 *   scaler.update();
 */
import { full, noGrad, opError, scaleEachInPlace, sumOfSquares, tidy, type Tensor } from '@sparsegrad/core';
import type { Optimizer } from './optimizer.ts';

export interface GradScalerOptions {
  /** The first scale (default 2^16, as PyTorch). */
  initScale?: number;
  /** Multiplies the scale after growthInterval steps without overflow (default 2). */
  growthFactor?: number;
  /** Multiplies the scale after an overflow (default 0.5). */
  backoffFactor?: number;
  /** Steps without overflow before the scale grows (default 2000). */
  growthInterval?: number;
}

export class GradScaler {
  scale: number;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  private growthTracker = 0;
  /** Whether this step's gradients held a non-finite value (null until unscale). */
  private foundInf: boolean | null = null;
  private unscaled: Optimizer | null = null;

  constructor(opts: GradScalerOptions = {}) {
    const op = 'GradScaler';
    this.scale = opts.initScale ?? 2 ** 16;
    this.growthFactor = opts.growthFactor ?? 2;
    this.backoffFactor = opts.backoffFactor ?? 0.5;
    this.growthInterval = opts.growthInterval ?? 2000;
    if (!(Number.isFinite(this.scale) && this.scale > 0)) throw opError(op, `initScale must be a positive finite number, got ${this.scale}`);
    if (!(this.growthFactor > 1)) throw opError(op, `growthFactor must be > 1, got ${this.growthFactor}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw opError(op, `backoffFactor must be in (0, 1), got ${this.backoffFactor}`);
    if (!(Number.isInteger(this.growthInterval) && this.growthInterval > 0))
      throw opError(op, `growthInterval must be a positive integer, got ${this.growthInterval}`);
  }

  /** The loss times the scale (backward through it gives scaled gradients). */
  scaleLoss(loss: Tensor): Tensor {
    return loss.mul(this.scale);
  }

  /**
   * Divides the optimizer's gradients by the scale, once per step, and records whether any is not
   * finite (one readback of their sum of squares, so a gradient whose square overflows float32,
   * |g| > 1.8e19, counts as not finite too). Resolves to true when all are finite.
   */
  async unscale(optimizer: Optimizer): Promise<boolean> {
    if (this.unscaled === optimizer) throw opError('GradScaler.unscale', 'already called for this optimizer since the last update()');
    const grads = optimizer.params.map((p) => p.grad).filter((g): g is Tensor => !!g);
    this.unscaled = optimizer;
    if (grads.length === 0) {
      this.foundInf = false;
      return true;
    }
    noGrad(() =>
      tidy(() => {
        const inverse = full([1], 1 / this.scale, { backend: grads[0].backend });
        scaleEachInPlace(grads, inverse);
      }),
    );
    const squares = noGrad(() => sumOfSquares(grads));
    const total = await squares.item();
    squares.dispose();
    this.foundInf = !Number.isFinite(total);
    return !this.foundInf;
  }

  /** Unscales (unless done) and steps the optimizer unless a gradient was not finite; resolves to whether it stepped. */
  async step(optimizer: Optimizer): Promise<boolean> {
    if (this.unscaled !== optimizer) await this.unscale(optimizer);
    if (this.foundInf) return false;
    optimizer.step();
    return true;
  }

  /** Adjusts the scale for the next step (after step()). */
  update(): void {
    if (this.foundInf === null) throw opError('GradScaler.update', 'call step() (or unscale()) first');
    if (this.foundInf) {
      this.scale *= this.backoffFactor;
      this.growthTracker = 0;
    } else if (++this.growthTracker === this.growthInterval) {
      this.scale *= this.growthFactor;
      this.growthTracker = 0;
    }
    this.foundInf = null;
    this.unscaled = null;
  }

  /** The scale and growth count, for checkpoints. */
  stateDict(): { scale: number; growthTracker: number } {
    return { scale: this.scale, growthTracker: this.growthTracker };
  }

  loadStateDict(state: { scale: number; growthTracker: number }): void {
    if (!(Number.isFinite(state?.scale) && state.scale > 0) || !Number.isInteger(state?.growthTracker) || state.growthTracker < 0)
      throw opError('GradScaler.loadStateDict', `expected { scale > 0, growthTracker >= 0 }, got ${JSON.stringify(state)}`);
    this.scale = state.scale;
    this.growthTracker = state.growthTracker;
  }
}
