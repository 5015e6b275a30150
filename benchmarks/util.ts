import { readFileSync, writeFileSync } from 'node:fs';
import { BlockSparseMatrix, bfloat16ToFloat32, manualSeed, randn, type Backend, type BlockLayout, type MatmulPrecision, type Tensor } from '@sparsegrad/core';
import { layoutDensity, matrixAt, type BackendBuffer } from '@sparsegrad/core/backend';
import { boundMs } from './bounds.ts';
import type { BsrProduct } from '@sparsegrad/cuda';

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
 * A benchmark's printed report: `say` prints a line and keeps it; the header names the device,
 * date, timer and the command as run; `write` puts the kept lines into docs/benchmarks.md's
 * section `name` (writeDocSection).
 */
export function report(name: string, script: string) {
  const lines: string[] = [];
  const say = (line = '') => {
    console.log(line);
    lines.push(line);
  };
  return {
    say,
    header(device: string, timer: string) {
      const args = process.argv.slice(2);
      say(`Device: ${device}. Date: ${new Date().toISOString().slice(0, 10)}. Timer: ${timer}.`);
      say(`Command: \`npx tsx benchmarks/${script}${args.length ? ` ${args.join(' ')}` : ''}\``);
      say();
    },
    write: () => writeDocSection(name, lines),
  };
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

/** The two shapes of the block-sparse tables (the issues' X [M, cols] by W [rows, cols]), as [rows, cols]. */
const SHAPES: readonly [number, number][] = [
  [4096, 1024],
  [1024, 4096],
];

/**
 * The block-sparse benchmark table both GPU backends print: for each precision and block size, the
 * backend's dense forward, dX and dW of the same operands in both shapes, then the block-sparse
 * trio at each density as its speedup over them (dense ms / block-sparse ms), and the forward's
 * TFLOP/s per stored block. `time` gives milliseconds per launch of what `record` queues; `mark`
 * may annotate a cell. Every timed block-sparse product is also checked (checkBlockSparse): a
 * kernel variant that computes the wrong thing fast stops the run instead of entering the table.
 */
/** A block-sparse table's precision: a float32 matmul precision, or 'bf16' (bfloat16 tensors: activations, blocks and outputs). */
export type TablePrecision = MatmulPrecision | 'bf16';

export async function blockSparseTable(o: {
  be: Backend;
  M: number;
  cases: readonly { precision: TablePrecision; bs: number }[];
  densities: readonly number[];
  say: (line?: string) => void;
  time: (record: () => void) => number | Promise<number>;
  random: (size: number, key: number) => BackendBuffer;
  /** Annotates a cell (e.g. the CUDA backend's dense route: ' †'). */
  mark?: (layout: BlockLayout, product: BsrProduct, precision: TablePrecision) => string;
  /** What a mark means, for the caption. */
  markNote?: string;
  label?: string;
}): Promise<void> {
  const { be, M } = o;
  const [a, b] = SHAPES.map(([rows, cols]) => `X [${M}, ${cols}] by W [${rows}, ${cols}]`);
  o.say(
    `Block-sparse trio${o.label ?? ''}: speedup = dense ms / block-sparse ms, each product against the dense product of the same operands in the same precision (forward X W^T, dX = dY W, dW = dY^T X), for A = ${a} and B = ${b}; in parentheses the fraction of its bound each cell reaches (bounds.ts: the faster of the dense time x density and the DRAM floor of the operands as stored). Dense rows give milliseconds and dense TFLOP/s; the last column is the forward's TFLOP/s per stored block. 'bf16': bfloat16 tensors (activations, blocks and outputs).${o.markNote ? ` ${o.markNote}` : ''}`,
  );
  o.say();
  o.say('| precision, blocks | density | forward A / B | dX A / B | dW A / B | forward TFLOP/s A / B |');
  o.say('| --- | --- | --- | --- | --- | --- |');
  const tflops = (flops: number, ms: number) => (flops / ms / 1e9).toFixed(1);
  for (const { precision: casePrecision, bs } of o.cases) {
    const half = casePrecision === 'bf16';
    // bfloat16 operands multiply on their own path whatever the float32 precision says.
    const p: MatmulPrecision = half ? 'medium' : casePrecision;
    const dtype = half ? 'bfloat16' : 'float32';
    const elementBytes = half ? 2 : 4;
    /** Random values in the case's dtype (bfloat16: rounded from float32 ones). */
    const operand = (size: number, key: number): BackendBuffer => {
      const f = o.random(size, key);
      if (!half) return f;
      const h = be.alloc(size, dtype);
      be.copy({ buffer: f, shape: [size], strides: [1], offset: 0 }, { buffer: h, shape: [size], strides: [1], offset: 0 });
      be.free(f);
      return h;
    };
    const read = async (buffer: BackendBuffer, size: number) => {
      const v = await be.read(buffer, size);
      return half ? bfloat16ToFloat32(v) : v;
    };
    const dense: string[][] = [];
    const rows = new Map<number, string[][]>(o.densities.map((d) => [d, []]));
    for (const [wRows, cols] of SHAPES) {
      const x = operand(M * cols, 3);
      const dy = operand(M * wRows, 4);
      const w = operand(wRows * cols, 5);
      const y = be.alloc(M * Math.max(wRows, cols), dtype);
      const dw = be.alloc(wRows * cols, dtype);
      const d = {
        forward: await o.time(() => be.matmul(matrixAt(x, cols, 1), matrixAt(w, 1, cols), y, 1, M, wRows, cols, p)),
        dX: await o.time(() => be.matmul(matrixAt(dy, wRows, 1), matrixAt(w, cols, 1), y, 1, M, cols, wRows, p)),
        dW: await o.time(() => be.matmul(matrixAt(dy, 1, wRows), matrixAt(x, cols, 1), dw, 1, wRows, cols, M, p)),
      };
      dense.push([d.forward.toFixed(3), d.dX.toFixed(3), d.dW.toFixed(3), tflops(2 * M * wRows * cols, d.forward)]);
      // What the checks compare against: the dense dW just computed, and the first tokens' rows.
      const refs = { denseDw: await read(dw, wRows * cols), x: await read(x, CHECK_TOKENS * cols), dy: await read(dy, CHECK_TOKENS * wRows) };
      for (const density of o.densities) {
        const W = benchmarkLayout(be, wRows, cols, bs, density);
        const data = half ? W.data.cast(dtype) : W.data;
        const blocks = data.storageFor('benchmark').buffer;
        const w32 = await data.toArray();
        const check = (product: BsrProduct, got: ArrayLike<number>) => checkBlockSparse(product, W.layout, w32, refs, got, casePrecision);
        const f = await o.time(() => be.bsrMatmul(x, blocks, W.layout, M, y, p));
        check('forward', await read(y, CHECK_TOKENS * wRows));
        const gi = await o.time(() => be.bsrMatmulGradInput(dy, blocks, W.layout, M, y, p));
        check('gradInput', await read(y, CHECK_TOKENS * cols));
        const gw = await o.time(() => be.bsrSddmm(dy, x, W.layout, M, dw, p));
        check('sddmm', await read(dw, W.layout.nnzBlocks * bs * bs));
        const stored = layoutDensity(W.layout);
        const r = (ms: number, base: number, product: BsrProduct) => {
          const bound = boundMs(base, M, cols, wRows, stored, elementBytes);
          return `${(base / ms).toFixed(2)}x (${Math.round((100 * bound) / ms)}%)${o.mark?.(W.layout, product, casePrecision) ?? ''}`;
        };
        rows.get(density)!.push([r(f, d.forward, 'forward'), r(gi, d.dX, 'gradInput'), r(gw, d.dW, 'sddmm'), tflops(2 * M * W.layout.nnzBlocks * bs * bs, f)]);
        if (data !== W.data) data.dispose();
        W.data.dispose();
      }
      for (const buffer of [x, dy, w, y, dw]) be.free(buffer);
    }
    const pair = (cells: string[][], i: number, unit = '') => `${cells[0][i]} / ${cells[1][i]}${unit}`;
    o.say(`| '${casePrecision}' ${bs}x${bs} | dense | ${pair(dense, 0, ' ms')} | ${pair(dense, 1, ' ms')} | ${pair(dense, 2, ' ms')} | ${pair(dense, 3)} |`);
    for (const [density, cells] of rows) o.say(`| | ${density} | ${pair(cells, 0)} | ${pair(cells, 1)} | ${pair(cells, 2)} | ${pair(cells, 3)} |`);
  }
}

/** Tokens whose forward and dX outputs the benchmark checks against a float64 product on the host. */
const CHECK_TOKENS = 2;
/** Largest relative error (norm of the difference over the norm of the reference) per precision. */
const CHECK_TOLERANCE: Record<TablePrecision, number> = { highest: 1e-4, high: 1e-2, medium: 3e-2, bf16: 3e-2 };

/**
 * Checks a block-sparse product's output: the forward and dX rows of the first CHECK_TOKENS tokens
 * against float64 products of the same rows and blocks, dW's blocks against the backend's dense dW
 * of the same operands. Throws, naming the product, where they differ beyond the precision's
 * tolerance (or any output is not finite).
 */
export function checkBlockSparse(
  product: BsrProduct,
  L: BlockLayout,
  w: ArrayLike<number>,
  refs: { denseDw: ArrayLike<number>; x: ArrayLike<number>; dy: ArrayLike<number> },
  got: ArrayLike<number>,
  precision: TablePrecision,
): void {
  const { rows, cols, blockSize: bs, nnzBlocks } = L;
  const ref = new Float64Array(got.length);
  for (let b = 0; b < nnzBlocks; b++) {
    const [r0, c0, wb] = [L.rowIdx[b] * bs, L.colIdx[b] * bs, b * bs * bs];
    if (product === 'sddmm') {
      for (let i = 0; i < bs; i++) for (let j = 0; j < bs; j++) ref[wb + i * bs + j] = refs.denseDw[(r0 + i) * cols + c0 + j];
      continue;
    }
    for (let t = 0; t < CHECK_TOKENS; t++) {
      for (let i = 0; i < bs; i++) {
        for (let j = 0; j < bs; j++) {
          const v = w[wb + i * bs + j];
          if (product === 'forward') ref[t * rows + r0 + i] += v * refs.x[t * cols + c0 + j];
          else ref[t * cols + c0 + j] += v * refs.dy[t * rows + r0 + i];
        }
      }
    }
  }
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(got[i])) throw new Error(`benchmark check: block-sparse ${product} wrote ${got[i]} at element ${i}`);
    diff += (got[i] - ref[i]) ** 2;
    norm += ref[i] ** 2;
  }
  const err = Math.sqrt(diff / Math.max(norm, 1e-30));
  if (err > CHECK_TOLERANCE[precision]) {
    throw new Error(
      `benchmark check: block-sparse ${product} (${rows} x ${cols}, ${bs}x${bs}, '${precision}') is off by ${err.toExponential(2)} relative to its reference (tolerance ${CHECK_TOLERANCE[precision]})`,
    );
  }
}

/**
 * The block-sparse benchmarks' W for a shape, block size and density: the same layout in every run
 * and every --variants pass, so that variants are compared on identical work. With a layout drawn
 * afresh per pass, single cells of the same code moved by up to 25% (WebGPU dW at density 0.1: 0.56
 * vs 0.71 ms); layouts differ in their longest block rows, the likely cause.
 */
export function benchmarkLayout(be: Backend, rows: number, cols: number, bs: number, density: number): BlockSparseMatrix {
  manualSeed(100_000 * bs + 10 * Math.round(density * 1000) + (rows > cols ? 0 : 1));
  return BlockSparseMatrix.random([rows, cols], { density, blockSize: bs, backend: be });
}

/**
 * Runs `run` once per value of a `--variants ENV=a,b,...` spec with ENV set to that value (the
 * label names it), or once with no label where there is no spec; ENV is unset afterwards. Values
 * that hold commas themselves are separated by '|' instead (ENV=x=1,2|x=3,4).
 */
/**
 * Runs `run` once per value of a `--variants key=a,b,...` spec, with the backend's tuning key set
 * to that value through `apply` (which returns a function restoring the previous tuning), or once
 * as the backend is without a spec.
 */
export async function forEachVariant(
  spec: string | undefined,
  apply: (key: string, value: string) => () => void,
  run: (label: string) => Promise<void>,
): Promise<void> {
  const variants = parseVariants(spec);
  if (!variants) return run('');
  const { name, values } = variants;
  for (const v of values) {
    const restore = apply(name, v);
    try {
      await run(` (${name}=${v})`);
    } finally {
      restore();
    }
  }
}

/** A `--variants key=a,b,...` spec (values holding commas separated by '|'), or undefined where there is none. */
export function parseVariants(spec: string | undefined): { name: string; values: string[] } | undefined {
  const at = spec?.indexOf('=') ?? -1;
  if (!spec || at <= 0) return undefined;
  const list = spec.slice(at + 1);
  return { name: spec.slice(0, at), values: list.split(list.includes('|') ? '|' : ',') };
}
