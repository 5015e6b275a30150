/** Scalar math shared by the CPU kernels (float64 internally; results are stored as float32). */

/** erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit), below float32 precision. */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r : r - 1;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

// 0.5 (1 + tanh(u)) = sigmoid(2u): one Math.exp instead of the much slower Math.tanh.
export function geluTanh(x: number): number {
  const u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
  return x / (1 + Math.exp(-2 * u));
}
export function geluTanhGrad(x: number): number {
  const u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
  const s = 1 / (1 + Math.exp(-2 * u)); // = 0.5 (1 + tanh u)
  return s + x * 2 * s * (1 - s) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
}
export function geluErf(x: number): number {
  return 0.5 * x * (1 + erf(x * INV_SQRT_2));
}
export function geluErfGrad(x: number): number {
  return 0.5 * (1 + erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
}

/** int32 a^b, exact and wrapping mod 2^32; a negative exponent truncates a^b toward zero (0 unless |a| = 1). */
export function ipow(a: number, b: number): number {
  if (b < 0) return a === 1 ? 1 : a === -1 ? (b & 1 ? -1 : 1) : 0;
  let r = 1;
  let base = a | 0;
  for (let e = b; e !== 0; e >>>= 1) {
    if (e & 1) r = Math.imul(r, base);
    base = Math.imul(base, base);
  }
  return r;
}
