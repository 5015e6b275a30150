import type { ReduceOp } from '../backend.ts';
import { fullPrecision } from '../autocast.ts';
import { record } from '../autograd/graph.ts';
import { fmtShape, opError } from '../errors.ts';
import { normalizeAxes, normalizeAxis, sameShape, sizeOf, type Shape } from '../shape.ts';
import { empty, type Tensor } from '../tensor.ts';
import { binaryKernel } from './elementwise.ts';
import { contiguous, permute, reshape } from './movement.ts';
import { checkFloat, checkTensors } from './util.ts';

function reducedShape(shape: Shape, axes: readonly number[], keepdim: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepdim) out.push(1);
  });
  return out;
}

/** Runs a reduce kernel over `axes` (sorted, unique); no gradient recording. */
export function reduceKernel(op: ReduceOp, x: Tensor, axes: readonly number[], keepdim: boolean): Tensor {
  const backend = checkTensors(op, x);
  const outShape = reducedShape(x.shape, axes, keepdim);
  const dtype = op === 'argmax' || op === 'argmin' ? 'int32' : x.dtype;
  const n = sizeOf(axes.map((a) => x.shape[a]));
  if (n === 0 && op !== 'sum') throw opError(op, `cannot reduce over an empty dimension of shape ${fmtShape(x.shape)}`);
  // Bring the reduced axes next to each other at the end when they are not already adjacent.
  const adjacent = axes.every((a, i) => i === 0 || a === axes[i - 1] + 1);
  let src = x;
  let first = axes[0] ?? x.rank;
  if (!adjacent) {
    const order = [...Array(x.rank).keys()].filter((a) => !axes.includes(a)).concat(axes);
    src = contiguous(permute(x, order));
    first = x.rank - axes.length;
  } else if (!x.isContiguous || x.offset !== 0) {
    src = contiguous(x);
  }
  const outer = sizeOf(src.shape.slice(0, first));
  const inner = adjacent ? sizeOf(x.shape.slice(first + axes.length)) : 1;
  const out = empty(outShape, dtype, backend);
  if (out.size > 0) {
    if (n === 0) backend.fill(out.bufferFor(op), out.size, 0);
    else backend.reduce(op, src.bufferFor(op), outer, n, inner, out.bufferFor(op));
  }
  if (src !== x) src.dispose();
  return out;
}

type Axes = number | readonly number[] | undefined;

export function sum(x0: Tensor, axis?: Axes, keepdim = false): Tensor {
  checkTensors('sum', x0);
  const [x] = fullPrecision(x0);
  const axes = normalizeAxes('sum', axis, x.rank);
  return record('sum', [x], reduceKernel('sum', x, axes, keepdim), { axes, keepdim });
}

export function mean(x0: Tensor, axis?: Axes, keepdim = false): Tensor {
  checkTensors('mean', x0);
  checkFloat('mean', x0);
  const [x] = fullPrecision(x0);
  const axes = normalizeAxes('mean', axis, x.rank);
  const n = sizeOf(axes.map((a) => x.shape[a]));
  const s = reduceKernel('sum', x, axes, keepdim);
  const out = binaryKernel('div', s, n);
  s.dispose();
  return record('mean', [x], out, { axes, keepdim, n });
}

function extremum(op: 'max' | 'min', x: Tensor, axis: Axes, keepdim: boolean): Tensor {
  checkTensors(op, x);
  const axes = normalizeAxes(op, axis, x.rank);
  return record(op, [x], reduceKernel(op, x, axes, keepdim), { axes, keepdim });
}

/** Largest value over the axes (all by default). The gradient is shared evenly between ties. */
export const max = (x: Tensor, axis?: Axes, keepdim = false): Tensor => extremum('max', x, axis, keepdim);
export const min = (x: Tensor, axis?: Axes, keepdim = false): Tensor => extremum('min', x, axis, keepdim);

function argExtremum(op: 'argmax' | 'argmin', x: Tensor, axis: number | undefined, keepdim: boolean): Tensor {
  checkTensors(op, x);
  if (axis === undefined) {
    const flat = reshape(x, [x.size]);
    const out = reduceKernel(op, flat, [0], false);
    flat.dispose();
    return out;
  }
  return reduceKernel(op, x, [normalizeAxis(op, axis, x.rank)], keepdim);
}

/** Index (int32) of the first largest value along the axis, or in the flattened tensor. */
export const argmax = (x: Tensor, axis?: number, keepdim = false): Tensor => argExtremum('argmax', x, axis, keepdim);
export const argmin = (x: Tensor, axis?: number, keepdim = false): Tensor => argExtremum('argmin', x, axis, keepdim);

/** Sums a broadcast gradient back down to `shape` (the inverse of broadcasting). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  const s = sum(g, axes, true);
  const out = reshape(s, shape);
  s.dispose();
  return out;
}
