/**
 * Issue 26's accuracy goal: two training runs' validation curves side by side (e.g. bf16 against
 * fp32), read from the logs `sparsegrad train` writes ("train step N: eval loss X"), with the
 * relative difference at every evaluation both ran and its largest value; the best loss of each
 * and where it fell.
 *
 *   npx tsx benchmarks/curves.ts RUN_A.log RUN_B.log
 */
import { readFileSync } from 'node:fs';

function curve(path: string): Map<number, number> {
  const points = new Map<number, number>();
  for (const m of readFileSync(path, 'utf8').matchAll(/train step (\d+): eval loss ([0-9.]+)/g)) points.set(Number(m[1]), Number(m[2]));
  if (points.size === 0) throw new Error(`curves: no "train step N: eval loss X" lines in ${path}`);
  return points;
}

const [pathA, pathB] = process.argv.slice(2);
if (!pathA || !pathB) throw new Error('usage: npx tsx benchmarks/curves.ts RUN_A.log RUN_B.log');
const [a, b] = [curve(pathA), curve(pathB)];
const best = (c: Map<number, number>) => [...c].reduce((x, y) => (y[1] < x[1] ? y : x));
console.log(`| step | ${pathA} | ${pathB} | relative difference |`);
console.log('| --- | --- | --- | --- |');
let worst = 0;
for (const [step, la] of a) {
  const lb = b.get(step);
  if (lb === undefined) continue;
  const rel = Math.abs(la - lb) / lb;
  worst = Math.max(worst, rel);
  console.log(`| ${step} | ${la.toFixed(4)} | ${lb.toFixed(4)} | ${(100 * rel).toFixed(2)}% |`);
}
const [ba, bb] = [best(a), best(b)];
console.log(`\nlargest relative difference ${(100 * worst).toFixed(2)}%; best ${ba[1].toFixed(4)} at ${ba[0]} against ${bb[1].toFixed(4)} at ${bb[0]}`);
