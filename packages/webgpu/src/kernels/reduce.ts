/**
 * Reductions over the middle axis of [outer, n, inner]: rows by a workgroup (long rows chunked),
 * several short rows per workgroup with subgroups, a few long rows by vec4 columns, columns split
 * across workgroups, and a thread per output for integers and argmax/argmin (reductions.ts holds
 * the WGSL generators). max and min propagate NaN.
 */
import type { Backend } from '@sparsegrad/core';
import type { ReduceOp } from '@sparsegrad/core/backend';
import { G, WG } from '../context.ts';
import { ROWS_PER_GROUP, ROW_WORDS, SHORT_ROW, columnKernel, gridFor, laneRowKernel, reduceWgslOps, rowBindings, shortRowsKernel } from '../reductions.ts';
import { uniforms } from '../uniforms.ts';
import { wgslType } from '../wgsl.ts';
import { HEAD, MAIN, columnReduce, type KernelHost } from './common.ts';

/** Sums over at most FEW_ROWS rows of at least FEW_ROWS_MIN_FLOATS outputs in all take reduceFewRows. */
const FEW_ROWS = 64;
const FEW_ROWS_MIN_FLOATS = 1 << 14;

/** Rows reduced a workgroup each: ROW_WORDS and the whole input's length (a chunked pass's last row may be short). */
const REDUCE_ROW_WORDS = uniforms(['rows', 'n', 'total']);
/** A few long rows: x [outer, n, q vec4s]. */
const FEW_ROWS_WORDS = uniforms(['outer', 'n', 'q']);
/** Any reduction of x [outer, n, inner] over n, a thread per output. */
const REDUCE_WORDS = uniforms(['outer', 'n', 'inner']);

export function reduceKernels(h: KernelHost): Pick<Backend, 'reduce'> {
  const { ctx, pipe, subgroups: sg } = h;
  return {
    reduce(op: ReduceOp, x, outer, n, inner, out) {
      const t = wgslType(x.dtype);
      if (inner === 1 && t === 'f32' && (op === 'sum' || op === 'max' || op === 'min')) {
        // Rows reduced by a whole workgroup each. Params: rows, row length, total length (the
        // last row of a chunked pass may be short).
        const { init, combine } = reduceWgslOps(op);
        if (sg && n <= SHORT_ROW && outer > 1) {
          // Short rows: one workgroup reduces ROWS_PER_GROUP of them, so each thread has several
          // loads in flight and the reduction's barrier is shared.
          const short = pipe(`reduceShortRows|${op}`, () => shortRowsKernel(op));
          ctx.dispatchGrid(op, short, [G(x), G(out)], ROW_WORDS.pack({ rows: outer, n }), gridFor(Math.ceil(outer / ROWS_PER_GROUP)));
          return;
        }
        // A workgroup per row (its last chunk may end early: `total` is the whole input's length).
        const pipeline = pipe(`reduceRows|${op}`, () =>
          laneRowKernel(
            rowBindings(false),
            REDUCE_ROW_WORDS,
            `
  var acc = ${init};
  for (var j = lane; live && j < n && base + j < total; j += LANES) { let v = X[base + j]; acc = ${combine('acc', 'v')}; }
  let r = ${op === 'sum' ? 'laneSum(acc, l)' : op === 'max' ? 'laneMax(acc, l)' : '-laneMax(-acc, l)'};
  if (live && lane == 0u) { Y[row] = r; }`,
            WG,
            'workgroup',
            sg,
          ),
        );
        const CHUNK = 16384;
        if (outer === 1 && n > 4 * CHUNK) {
          // One long row (a full-tensor reduction): partial results per chunk, then one more pass.
          const parts = Math.ceil(n / CHUNK);
          const partial = ctx.alloc(parts, 'float32');
          ctx.dispatchGrid(op, pipeline, [G(x), partial], REDUCE_ROW_WORDS.pack({ rows: parts, n: CHUNK, total: n }), gridFor(parts));
          ctx.dispatchGrid(op, pipeline, [partial, G(out)], REDUCE_ROW_WORDS.pack({ rows: 1, n: parts, total: parts }), [1, 1, 1]);
          ctx.free(partial); // reuse is ordered after these dispatches on the queue
          return;
        }
        ctx.dispatchGrid(op, pipeline, [G(x), G(out)], REDUCE_ROW_WORDS.pack({ rows: outer, n, total: outer * n }), gridFor(outer));
        return;
      }
      if (t === 'f32' && op === 'sum' && ctx.tuning.fewRows && n <= FEW_ROWS && inner % 4 === 0 && outer * inner >= FEW_ROWS_MIN_FLOATS) {
        // A few long rows (the SDDMM's partial sums: 8-16 rows of 1-2M floats): one thread per vec4 of a
        // column walks all n rows, so every load is a whole 16-byte piece and no workgroup memory
        // or second pass is needed; columnKernel's lanes and splits serve tall columns instead.
        const pipeline = pipe(
          'reduceFewRows',
          () => `${HEAD('@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;\n@group(0) @binding(2) var<storage, read_write> Y: array<vec4<f32>>;')}\n${MAIN}
  ${FEW_ROWS_WORDS.lets}
  if (i >= outer * q) { return; }
  let base = (i / q) * n * q + i % q;
  var acc = vec4<f32>(0.0); var k = 0u;
  for (; k + 4u <= n; k += 4u) { acc += (X[base + k * q] + X[base + (k + 1u) * q]) + (X[base + (k + 2u) * q] + X[base + (k + 3u) * q]); }
  for (; k < n; k++) { acc += X[base + k * q]; }
  Y[i] = acc;
}`,
        );
        ctx.dispatch(op, pipeline, [G(x), G(out)], FEW_ROWS_WORDS.pack({ outer, n, q: inner / 4 }), outer * (inner / 4));
        return;
      }
      if (t === 'f32' && (op === 'sum' || op === 'max' || op === 'min')) {
        const { init, combine } = reduceWgslOps(op);
        const pipeline = pipe(`reduceColumns|${op}`, () =>
          columnKernel('@group(0) @binding(1) var<storage, read> X: array<f32>;\n@group(0) @binding(2) var<storage, read_write> Y: array<f32>;', [
            { init, value: 'X[(o * n + r) * inner + c]', combine, out: 'Y' },
          ]),
        );
        columnReduce(ctx, op, pipeline, [G(x)], [G(out)], outer, n, inner, (partials, splits) =>
          h.backend().reduce(op, partials[0], 1, splits, outer * inner, out),
        );
        return;
      }
      const arg = op === 'argmax' || op === 'argmin';
      const better = op === 'max' || op === 'argmax' ? '>' : '<';
      const pipeline = pipe(
        `reduce|${op}|${t}`,
        () => `${HEAD(`@group(0) @binding(1) var<storage, read> X: array<${t}>;\n@group(0) @binding(2) var<storage, read_write> Y: array<${arg ? 'i32' : t}>;`)}\n${MAIN}
  ${REDUCE_WORDS.lets}
  if (i >= outer * inner) { return; }
  let o = i / inner; let j = i % inner;
  let base = o * n * inner + j;
  ${
    op === 'sum'
      ? `var acc = ${t}(0); for (var k = 0u; k < n; k++) { acc += X[base + k * inner]; } Y[i] = acc;`
      : `var best = X[base]; var at = 0u;
  for (var k = 1u; k < n; k++) { let v = X[base + k * inner]; if (v ${better} best${t === 'f32' ? ' || (isNan(v) && !isNan(best))' : ''}) { best = v; at = k; } }
  Y[i] = ${arg ? 'i32(at)' : 'best'};`
  }
}`,
      );
      ctx.dispatch(op, pipeline, [G(x), G(out)], REDUCE_WORDS.pack({ outer, n, inner }), outer * inner);
    },
  };
}
