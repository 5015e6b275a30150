/**
 * Fused row kernels over contiguous [rows, n]: softmax (plain, log, causal) and its backward,
 * layer norm and its backward (the parameter gradients as split column sums). Short rows go
 * several to a workgroup (laneRowKernel in reductions.ts).
 */
import type { Backend } from '@sparsegrad/core';
import { G, type GpuBuffer, WG, type Param } from '../context.ts';
import { LANE_ROW, ROW_WORDS, TREE_LANES, columnKernel, gridFor, laneRowKernel, rowBindings, type RowReduction } from '../reductions.ts';
import { type Uniforms, uniforms } from '../uniforms.ts';
import { columnReduce, type KernelHost } from './common.ts';

/** Layer norm's words: ROW_WORDS and epsilon. */
const LAYER_NORM_WORDS = uniforms(['rows', 'n', 'eps'], { eps: 'f32' });

export function rowKernels(h: KernelHost): Pick<Backend, 'softmax' | 'softmaxBackward' | 'layerNorm' | 'layerNormBackward'> {
  const { ctx, pipe, subgroups: sg, rowSubgroups } = h;
  /**
   * Dispatches a row-wise kernel (laneRowKernel) over `rows` rows of n in the form that suits n:
   * rows up to LANE_ROW several to a workgroup, a row per subgroup where probeRowSubgroups found
   * them usable (rowSubgroups, their size) or TREE_LANES invocations reducing in workgroup memory;
   * longer rows a workgroup each. On an H100 the GPT step's attention softmax (rows of 256) went
   * from 0.19 ms per call a workgroup per row to 0.049 in rows of 32 and 0.046 a subgroup each,
   * layer norm (rows of 512) from 0.035 to 0.021 (NOTES 35). The tuning's rowSubgroups off
   * forces the tree, laneRows off a workgroup per row.
   */
  const rowOp = (
    op: string,
    key: string,
    rows: number,
    n: number,
    bindings: string,
    words: Pick<Uniforms<string>, 'lets'>,
    body: string,
    buffers: GpuBuffer[],
    params: Param[],
  ) => {
    const reduction: RowReduction = n > LANE_ROW || !ctx.tuning.laneRows ? 'workgroup' : rowSubgroups > 0 && ctx.tuning.rowSubgroups ? 'subgroup' : 'tree';
    const lanes = { workgroup: WG, subgroup: rowSubgroups, tree: TREE_LANES }[reduction];
    const kernel = pipe(`${key}|${reduction}|${lanes}`, () => laneRowKernel(bindings, words, body, lanes, reduction, sg));
    ctx.dispatchGrid(op, kernel, buffers, params, gridFor(Math.ceil(rows / (WG / lanes))));
  };
  return {
    softmax(x, rows, n, log, causal, out) {
      // Causal: row i of each [n, n] matrix keeps columns 0..i; the rest is written as 0. Passes:
      // the maximum, the sum, the output (and the causal cut's zeros).
      rowOp(
        'softmax',
        `softmax|${log}|${causal}`,
        rows,
        n,
        rowBindings(false),
        ROW_WORDS,
        `
  let end = select(0u, n, live); let len = ${causal ? 'min(row % n + 1u, end)' : 'end'};
  var m = -3.4e38;
  for (var j = lane; j < len; j += LANES) { m = max(m, X[base + j]); }
  let mx = laneMax(m, l);
  var s = 0.0;
  for (var j = lane; j < len; j += LANES) { s += exp(X[base + j] - mx); }
  let total = laneSum(s, l);
  for (var j = lane; j < len; j += LANES) { Y[base + j] = ${log ? 'X[base + j] - mx - log(total)' : 'exp(X[base + j] - mx) / total'}; }${
    causal
      ? `
  for (var j = len + lane; j < end; j += LANES) { Y[base + j] = 0.0; }`
      : ''
  }`,
        [G(x), G(out)],
        ROW_WORDS.pack({ rows, n }),
      );
    },
    softmaxBackward(y, dy, rows, n, log, out) {
      rowOp(
        'softmaxBackward',
        `softmaxBackward|${log}`,
        rows,
        n,
        rowBindings(true),
        ROW_WORDS,
        `
  let len = select(0u, n, live);
  var s = 0.0;
  for (var j = lane; j < len; j += LANES) { s += ${log ? 'Dy[base + j]' : 'Dy[base + j] * X[base + j]'}; }
  let total = laneSum(s, l);
  for (var j = lane; j < len; j += LANES) { Y[base + j] = ${log ? 'Dy[base + j] - exp(X[base + j]) * total' : 'X[base + j] * (Dy[base + j] - total)'}; }`,
        [G(y), G(dy), G(out)],
        ROW_WORDS.pack({ rows, n }),
      );
    },
    layerNorm(x, gamma, beta, rows, n, eps, out, mean, rstd) {
      const g = !!gamma;
      const b = !!beta;
      // The mean, then the variance about it (two passes: no cancellation), then the output.
      rowOp(
        'layerNorm',
        `layerNorm|${g}|${b}`,
        rows,
        n,
        `@group(0) @binding(1) var<storage, read> X: array<f32>;
${g ? '@group(0) @binding(2) var<storage, read> Gm: array<f32>;' : ''}
${b ? `@group(0) @binding(${g ? 3 : 2}) var<storage, read> Bt: array<f32>;` : ''}
@group(0) @binding(${2 + +g + +b}) var<storage, read_write> Y: array<f32>;
@group(0) @binding(${3 + +g + +b}) var<storage, read_write> Mean: array<f32>;
@group(0) @binding(${4 + +g + +b}) var<storage, read_write> Rstd: array<f32>;`,
        LAYER_NORM_WORDS,
        `
  let len = select(0u, n, live);
  var s = 0.0;
  for (var j = lane; j < len; j += LANES) { s += X[base + j]; }
  let mu = laneSum(s, l) / f32(n);
  var v = 0.0;
  for (var j = lane; j < len; j += LANES) { let d = X[base + j] - mu; v += d * d; }
  let rs = 1.0 / sqrt(laneSum(v, l) / f32(n) + eps);
  if (live && lane == 0u) { Mean[row] = mu; Rstd[row] = rs; }
  for (var j = lane; j < len; j += LANES) {
    Y[base + j] = (X[base + j] - mu) * rs${g ? ' * Gm[j]' : ''}${b ? ' + Bt[j]' : ''};
  }`,
        [G(x), ...(gamma ? [G(gamma)] : []), ...(beta ? [G(beta)] : []), G(out), G(mean), G(rstd)],
        LAYER_NORM_WORDS.pack({ rows, n, eps }),
      );
    },
    layerNormBackward(x, gamma, mean, rstd, dy, rows, n, dx, dgamma, dbeta) {
      const g = !!gamma;
      // dx = rstd (d - mean(d) - x^ mean(d x^)), d = dy * gamma; rows past the end read row 0's statistics.
      rowOp(
        'layerNormBackward',
        `layerNormBackward|${g}`,
        rows,
        n,
        `@group(0) @binding(1) var<storage, read> X: array<f32>;
${g ? '@group(0) @binding(2) var<storage, read> Gm: array<f32>;' : ''}
@group(0) @binding(${2 + +g}) var<storage, read> Mean: array<f32>;
@group(0) @binding(${3 + +g}) var<storage, read> Rstd: array<f32>;
@group(0) @binding(${4 + +g}) var<storage, read> Dy: array<f32>;
@group(0) @binding(${5 + +g}) var<storage, read_write> Dx: array<f32>;`,
        ROW_WORDS,
        `
  let len = select(0u, n, live); let at = select(0u, row, live);
  let mu = Mean[at]; let rs = Rstd[at];
  var sd = 0.0; var sdx = 0.0;
  for (var j = lane; j < len; j += LANES) {
    let xh = (X[base + j] - mu) * rs; let d = Dy[base + j]${g ? ' * Gm[j]' : ''};
    sd += d; sdx += d * xh;
  }
  let md = laneSum(sd, l) / f32(n);
  let mdx = laneSum(sdx, l) / f32(n);
  for (var j = lane; j < len; j += LANES) {
    let xh = (X[base + j] - mu) * rs; let d = Dy[base + j]${g ? ' * Gm[j]' : ''};
    Dx[base + j] = rs * (d - md - xh * mdx);
  }`,
        [G(x), ...(gamma ? [G(gamma)] : []), G(mean), G(rstd), G(dy), G(dx)],
        ROW_WORDS.pack({ rows, n }),
      );
      if (dgamma || dbeta) {
        // Column sums over the rows, split across workgroups (see columnKernel).
        const pipeline2 = pipe('layerNormParams', () =>
          columnKernel(
            `@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Mean: array<f32>;
@group(0) @binding(3) var<storage, read> Rstd: array<f32>;
@group(0) @binding(4) var<storage, read> Dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> Dg: array<f32>;
@group(0) @binding(6) var<storage, read_write> Db: array<f32>;`,
            [
              { init: '0.0', value: 'Dy[r * inner + c] * (X[r * inner + c] - Mean[r]) * Rstd[r]', combine: (a, v) => `${a} + ${v}`, out: 'Dg' },
              { init: '0.0', value: 'Dy[r * inner + c]', combine: (a, v) => `${a} + ${v}`, out: 'Db' },
            ],
          ),
        );
        const scratch = ctx.alloc(n, 'float32');
        const targets = [dgamma ? G(dgamma) : scratch, dbeta ? G(dbeta) : scratch];
        columnReduce(ctx, 'layerNormBackward', pipeline2, [G(x), G(mean), G(rstd), G(dy)], targets, 1, rows, n, (partials, splits) => {
          if (dgamma) h.backend().reduce('sum', partials[0], 1, splits, n, dgamma);
          if (dbeta) h.backend().reduce('sum', partials[1], 1, splits, n, dbeta);
        });
        ctx.free(scratch); // later reuse is ordered after this dispatch on the queue
      }
    },
  };
}
