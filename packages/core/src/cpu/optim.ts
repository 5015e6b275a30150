/** CPU optimizer kernels: one pass over each parameter (see Backend.adamStep for the formula). */
import type { AdamStepSpec } from '../backend.ts';

export function adamStep(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, size: number, s: AdamStepSpec,
  pOut: Float32Array, mOut: Float32Array, vOut: Float32Array): void {
  const { lr, beta1, beta2, eps, weightDecay: wd } = s;
  const coupled = s.decoupled ? 0 : wd;
  const shrink = s.decoupled ? 1 - lr * wd : 1;
  const step = lr / s.biasCorrection1;
  const bc2 = s.biasCorrection2;
  for (let i = 0; i < size; i++) {
    const gi = g[i] + coupled * p[i];
    const mi = beta1 * m[i] + (1 - beta1) * gi;
    const vi = beta2 * v[i] + (1 - beta2) * gi * gi;
    mOut[i] = mi;
    vOut[i] = vi;
    pOut[i] = p[i] * shrink - (step * mi) / (Math.sqrt(vi / bc2) + eps);
  }
}
