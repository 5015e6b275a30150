import { randn, type Tensor } from '@sparsegrad/core';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Host-side cost of an op on the current backend: a chain of 1000 dependent adds on a tiny tensor
 * through the Tensor API, then one readback; microseconds per op, median over `repeats` after one
 * warm-up chain.
 */
export async function usPerChainedOp(repeats = 5): Promise<number> {
  const small = randn([64]);
  const samples: number[] = [];
  for (let rep = 0; rep <= repeats; rep++) {
    const t0 = performance.now();
    let t = small;
    const made: Tensor[] = [];
    for (let i = 0; i < 1000; i++) made.push((t = t.add(1)));
    await t.toArray();
    if (rep > 0) samples.push(performance.now() - t0);
    for (const m of made) m.dispose();
  }
  small.dispose();
  return median(samples);
}
