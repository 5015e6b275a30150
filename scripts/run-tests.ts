/**
 * Runs every uvu suite under packages/<pkg>/test (files named *.test.ts) in one process and ends
 * with the one-line summary CI reads ("N passed, N failed, N skipped").
 *
 *   npm test                       all suites on the backends in SPARSEGRAD_TEST_BACKENDS (default: cpu)
 *   npm test -- blocksparse        only files whose path contains "blocksparse"
 */
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = join(import.meta.dirname, '..');
const filters = process.argv.slice(2);
const files: string[] = [];
for (const pkg of readdirSync(join(root, 'packages'))) {
  const dir = join(root, 'packages', pkg, 'test');
  let entries: string[] = [];
  try {
    entries = readdirSync(dir, { recursive: true }) as string[];
  } catch {
    continue;
  }
  for (const f of entries.sort()) {
    const path = join(dir, f);
    if (f.endsWith('.test.ts') && (filters.length === 0 || filters.some((x) => path.includes(x)))) files.push(path);
  }
}

// uvu's own multi-file runner protocol: defer execution, queue one group per file, then exec.
const g = globalThis as unknown as { UVU_DEFER: number; UVU_QUEUE: unknown[][]; UVU_INDEX: number };
g.UVU_DEFER = 1;
g.UVU_QUEUE = [];
const uvu = await import('uvu');

// uvu prints its totals but returns nothing; count them from its output for the closing line.
let captured = '';
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
  captured += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
  return (write as (c: unknown, ...r: unknown[]) => boolean)(chunk, ...rest);
}) as typeof process.stdout.write;

files.forEach((file, i) => {
  g.UVU_INDEX = i;
  g.UVU_QUEUE.push([relative(root, file)]);
});
for (let i = 0; i < files.length; i++) {
  g.UVU_INDEX = i;
  await import(pathToFileURL(files[i]).href);
}
await uvu.exec(false);
process.stdout.write = write;

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes are control characters.
const plain = captured.replace(/\x1b\[[0-9;]*m/g, '');
const num = (label: string) => Number(plain.match(new RegExp(`${label}:\\s+(\\d+)`))?.[1] ?? 0);
const total = num('Total');
const passed = num('Passed');
const skipped = num('Skipped');
// uvu's Total counts the tests it ran; skipped ones are counted apart.
const failed = total - passed;
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
if (failed > 0 || total === 0) process.exitCode = 1;
