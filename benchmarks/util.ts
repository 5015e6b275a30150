import { readFileSync, writeFileSync } from 'node:fs';
import { randn, type Tensor } from '@sparsegrad/core';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Runs `step` until at least `minSteps` steps and `minSeconds` have passed. A training step's
 * JavaScript reaches its steady speed only after tens of steps (V8 optimizes the ~500 op calls
 * per step over time: with the no-op CUDA addon a GPT step's host time went 10.1 -> 5.6 -> 3.3 ms
 * over three consecutive runs of 13 steps), so a fixed 3-step warm-up overstated the host time of
 * whatever variant ran first; a time budget adapts to fast GPU steps and slow CPU ones alike.
 */
export async function warmUp(step: () => Promise<unknown>, minSteps = 3, minSeconds = 3): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < minSteps || performance.now() - t0 < minSeconds * 1000; i++) await step();
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

/**
 * Replaces the section between `<!-- NAME:begin -->` and `<!-- NAME:end -->` of docs/benchmarks.md
 * with `lines` (appends it where the markers are missing).
 */
export function writeDocSection(name: string, lines: readonly string[]): void {
  const path = new URL('../docs/benchmarks.md', import.meta.url);
  const doc = readFileSync(path, 'utf8');
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const section = `${begin}\n${lines.join('\n')}\n${end}`;
  const i = doc.indexOf(begin);
  writeFileSync(path, i < 0 ? `${doc.trimEnd()}\n\n${section}\n` : doc.slice(0, i) + section + doc.slice(doc.indexOf(end) + end.length));
  console.log('\nwrote docs/benchmarks.md');
}
