/**
 * Floors of the block-sparse products of issue 6 on an H100 SXM: for each shape, product,
 * precision and density, the time no kernel can beat (the larger of moving its bytes through DRAM
 * at the spec bandwidth and doing its FLOPs at the spec peak), against the time the goal
 * asks for (cuBLAS dense / goal ratio). Arithmetic, not a measurement: the cuBLAS times are the
 * ones measured on the GPU host (docs/benchmarks.md, CUDA section, 2026-11-23).
 *   npx tsx benchmarks/floors.ts
 */
import { DRAM_BYTES_PER_S, leastBytes } from './bounds.ts';

type Product = 'forward' | 'dX' | 'dW';

const PEAK_FLOPS = { highest: 66.9e12, high: 494.7e12, medium: 989.4e12 } as const;
type Precision = keyof typeof PEAK_FLOPS;
const GOALS: Record<Precision, Record<number, number>> = {
  highest: { 0.5: 1.8, 0.25: 3.5, 0.1: 7 },
  high: { 0.5: 1.4, 0.25: 2.5, 0.1: 5 },
  medium: { 0.5: 1.4, 0.25: 2.5, 0.1: 5 },
};
// cuBLAS dense ms [forward, dX, dW] per shape and precision, 32x32 tables of the run above.
const SHAPES: { m: number; k: number; n: number; dense: Record<Precision, [number, number, number]> }[] = [
  { m: 16384, k: 1024, n: 4096, dense: { highest: [2.86, 2.74, 2.63], high: [0.376, 0.418, 0.628], medium: [0.378, 0.423, 0.636] } },
  { m: 16384, k: 4096, n: 1024, dense: { highest: [2.743, 2.732, 2.6], high: [0.355, 0.428, 0.643], medium: [0.345, 0.42, 0.627] } },
];

console.log('| shape | product | precision | density | goal | goal ms | DRAM floor ms | FLOP floor ms | best possible speedup | goal reachable |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const { m, k, n, dense } of SHAPES) {
  for (const precision of Object.keys(PEAK_FLOPS) as Precision[]) {
    for (const [i, product] of (['forward', 'dX', 'dW'] as Product[]).entries()) {
      for (const density of [0.5, 0.25, 0.1]) {
        const goal = GOALS[precision][density];
        const goalMs = dense[precision][i] / goal;
        const dramMs = (leastBytes(m, k, n, density) / DRAM_BYTES_PER_S) * 1e3;
        const flopMs = ((2 * m * n * k * density) / PEAK_FLOPS[precision]) * 1e3;
        const best = dense[precision][i] / Math.max(dramMs, flopMs);
        console.log(
          `| X [${m}, ${k}], W [${n}, ${k}] | ${product} | ${precision} | ${density} | ${goal}x | ${goalMs.toFixed(3)} | ${dramMs.toFixed(3)} | ${flopMs.toFixed(3)} | ${best.toFixed(2)}x | ${best >= goal ? 'yes' : 'no'} |`,
        );
      }
    }
  }
}
