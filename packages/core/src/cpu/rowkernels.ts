/** Reductions, indexing and layer norm of the CPU backend (plain loops, float64 accumulation); softmax is SIMD (assembly/elementwise.ts). */
import type { ReduceOp, TypedArray } from '../backend.ts';
import { indexOutOfRange } from '../errors.ts';

export function reduce(op: ReduceOp, x: TypedArray, outer: number, n: number, inner: number, out: TypedArray): void {
  if (op === 'sum' && inner > 1) {
    sumMiddle(x, outer, n, inner, out);
    return;
  }
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * n * inner + i;
      let acc = x[base];
      let arg = 0;
      if (op === 'sum') {
        acc = 0;
        for (let j = 0; j < n; j++) acc += x[base + j * inner];
      } else if (op === 'max' || op === 'argmax') {
        for (let j = 1; j < n; j++) {
          const v = x[base + j * inner];
          if (v > acc || (Number.isNaN(v) && !Number.isNaN(acc))) {
            acc = v;
            arg = j;
          }
        }
      } else {
        for (let j = 1; j < n; j++) {
          const v = x[base + j * inner];
          if (v < acc || (Number.isNaN(v) && !Number.isNaN(acc))) {
            acc = v;
            arg = j;
          }
        }
      }
      out[o * inner + i] = op === 'argmax' || op === 'argmin' ? arg : acc;
    }
  }
}

/** Sum over the middle axis walking memory in order (a row of float64 accumulators), e.g. bias gradients. */
function sumMiddle(x: TypedArray, outer: number, n: number, inner: number, out: TypedArray): void {
  const acc = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    acc.fill(0);
    for (let j = 0; j < n; j++) {
      const base = (o * n + j) * inner;
      for (let i = 0; i < inner; i++) acc[i] += x[base + i];
    }
    for (let i = 0; i < inner; i++) out[o * inner + i] = acc[i];
  }
}

/** Reads idx[o, j, i] through its strides, checking the range (cheap on the CPU, so we do). */
function indexReader(op: string, idx: TypedArray, offset: number, strides: readonly number[], n: number) {
  const [so, sj, si] = strides;
  return (o: number, j: number, i: number): number => {
    const k = idx[offset + o * so + j * sj + i * si];
    if (k < 0 || k >= n) throw indexOutOfRange(op, k, n);
    return k;
  };
}

export function gather(
  x: TypedArray,
  idx: TypedArray,
  idxOffset: number,
  idxStrides: readonly number[],
  outer: number,
  n: number,
  inner: number,
  count: number,
  out: TypedArray,
): void {
  const at = indexReader('gather', idx, idxOffset, idxStrides, n);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < count; j++) {
      const dst = (o * count + j) * inner;
      if (idxStrides[2] === 0) {
        // Whole rows (embedding lookups): one block copy per row.
        const src = (o * n + at(o, j, 0)) * inner;
        out.set(x.subarray(src, src + inner), dst);
      } else {
        for (let i = 0; i < inner; i++) out[dst + i] = x[(o * n + at(o, j, i)) * inner + i];
      }
    }
  }
}

export function scatterAdd(
  src: TypedArray,
  idx: TypedArray,
  idxOffset: number,
  idxStrides: readonly number[],
  outer: number,
  n: number,
  inner: number,
  count: number,
  out: TypedArray,
): void {
  const at = indexReader('scatterAdd', idx, idxOffset, idxStrides, n);
  out.fill(0);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < count; j++) {
      const s = (o * count + j) * inner;
      for (let i = 0; i < inner; i++) out[(o * n + at(o, j, i)) * inner + i] += src[s + i];
    }
  }
}

export function layerNorm(
  x: Float32Array,
  gamma: Float32Array | null,
  beta: Float32Array | null,
  rows: number,
  n: number,
  eps: number,
  out: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
): void {
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    let s = 0;
    for (let j = 0; j < n; j++) s += x[base + j];
    const mu = s / n;
    let v = 0;
    for (let j = 0; j < n; j++) {
      const d = x[base + j] - mu;
      v += d * d;
    }
    const rs = 1 / Math.sqrt(v / n + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let j = 0; j < n; j++) {
      const xh = (x[base + j] - mu) * rs;
      out[base + j] = xh * (gamma ? gamma[j] : 1) + (beta ? beta[j] : 0);
    }
  }
}

export function layerNormBackward(
  x: Float32Array,
  gamma: Float32Array | null,
  mean: Float32Array,
  rstd: Float32Array,
  dy: Float32Array,
  rows: number,
  n: number,
  dx: Float32Array,
  dgamma: Float32Array | null,
  dbeta: Float32Array | null,
): void {
  const dg = new Float64Array(n);
  const db = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    const mu = mean[r];
    const rs = rstd[r];
    // dx = rstd * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh = dy * gamma
    let sumD = 0;
    let sumDX = 0;
    for (let j = 0; j < n; j++) {
      const xh = (x[base + j] - mu) * rs;
      const d = dy[base + j] * (gamma ? gamma[j] : 1);
      sumD += d;
      sumDX += d * xh;
      dg[j] += dy[base + j] * xh;
      db[j] += dy[base + j];
    }
    sumD /= n;
    sumDX /= n;
    for (let j = 0; j < n; j++) {
      const xh = (x[base + j] - mu) * rs;
      const d = dy[base + j] * (gamma ? gamma[j] : 1);
      dx[base + j] = rs * (d - sumD - xh * sumDX);
    }
  }
  if (dgamma) dgamma.set(dg);
  if (dbeta) dbeta.set(db);
}
