/**
 * The counter-based generator every backend implements identically: element i of a random
 * kernel depends only on (key, i), so CPU, WebGPU and CUDA produce the same numbers for the same
 * seed, and GPU threads need no shared state. Only 32-bit integer multiply, xor and shifts are used.
 */
export function fmix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

export function randomBits(key: number, i: number): number {
  return fmix32(fmix32((Math.imul(i, 0x9e3779b1) + key) >>> 0) ^ key);
}

/** Uniform in [0, 1) with 24 random bits (exactly representable in float32). */
export function uniformAt(key: number, i: number): number {
  return (randomBits(key, i) >>> 8) * (1 / 16777216);
}

/** Standard normal via Box-Muller on the counters 2i and 2i+1. */
export function normalAt(key: number, i: number): number {
  const u1 = ((randomBits(key, 2 * i) >>> 8) + 1) * (1 / 16777216); // (0, 1]
  const u2 = (randomBits(key, 2 * i + 1) >>> 8) * (1 / 16777216);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}
