import type { MatrixView } from '../backend.ts';
import { record } from '../autograd/graph.ts';
import { fmtShape, opError } from '../errors.ts';
import { broadcastShapes, broadcastStrides, sizeOf } from '../shape.ts';
import { lowPrecision } from '../autocast.ts';
import { engine, noGrad } from '../engine.ts';
import { empty, type Tensor } from '../tensor.ts';
import { addFreeing } from './elementwise.ts';
import { contiguous, expand, reshape, transpose } from './movement.ts';
import { checkFloat, checkTensors, inCommonDtype } from './util.ts';

/** One stride for all batch dims if they collapse, else null. */
function collapsedStride(shape: readonly number[], strides: readonly number[]): number | null {
  let stride: number | null = null;
  let expected: number | null = null;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 1) continue;
    if (expected !== null && strides[i] !== expected) return null;
    stride ??= strides[i];
    expected = strides[i] * shape[i];
  }
  return stride ?? 0;
}

/** A matrix view of x broadcast to [...batch, r, c]; copies only when the batch dims cannot be strided. */
function matrixView(x: Tensor, batch: readonly number[], temps: Tensor[]): MatrixView {
  const shape = [...batch, ...x.shape.slice(-2)];
  let strides = broadcastStrides(x.shape, x.strides, shape);
  let src = x;
  let stride = collapsedStride(batch, strides.slice(0, batch.length));
  if (stride === null) {
    const e = expand(x, shape);
    src = contiguous(e);
    e.dispose();
    temps.push(src);
    strides = [...src.strides];
    stride = collapsedStride(batch, strides.slice(0, batch.length))!;
  }
  const r = strides.length;
  return { buffer: src.bufferFor('matmul'), offset: src.offset, batchStride: stride, rowStride: strides[r - 2], colStride: strides[r - 1] };
}

/** Batched matmul of rank >= 2 operands (in their common dtype); no gradient recording. */
export function matmulKernel(a0: Tensor, b0: Tensor): Tensor {
  const backend = checkTensors('matmul', a0, b0);
  const temps: Tensor[] = [];
  const [a, b] = inCommonDtype([a0, b0], temps);
  const m = a.shape[a.rank - 2];
  const k = a.shape[a.rank - 1];
  const n = b.shape[b.rank - 1];
  if (b.shape[b.rank - 2] !== k) {
    throw opError('matmul', `inner dimensions differ: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)} (${k} vs ${b.shape[b.rank - 2]})`);
  }
  const batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const out = empty([...batch, m, n], a.dtype, backend);
  if (out.size === 0 || k === 0) {
    if (out.size > 0) backend.fill(out.bufferFor('matmul'), out.size, 0);
    for (const t of temps) t.dispose();
    return out;
  }
  const av = matrixView(a, batch, temps);
  const bv = matrixView(b, batch, temps);
  const count = sizeOf(batch);
  if (count > 1 && bv.batchStride === 0 && av.batchStride === m * av.rowStride) {
    // A shared right operand (a Linear weight applied to [batch, seq, features]): one tall
    // product instead of `count` small ones, each of which would re-pack the weight.
    backend.matmul({ ...av, batchStride: 0 }, bv, out.bufferFor('matmul'), 1, count * m, n, k, engine.matmulPrecision);
  } else {
    backend.matmul(av, bv, out.bufferFor('matmul'), count, m, n, k, engine.matmulPrecision);
  }
  for (const t of temps) t.dispose();
  return out;
}

/** NumPy matmul: 1-D operands are promoted to matrices, batch dimensions broadcast. */
export function matmul(a0: Tensor, b0: Tensor): Tensor {
  checkTensors('matmul', a0, b0);
  const [a, b] = lowPrecision(a0, b0);
  checkFloat('matmul', a);
  checkFloat('matmul', b);
  if (a.rank === 0 || b.rank === 0) throw opError('matmul', `operands must have rank >= 1, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  if (a.rank === 1 || b.rank === 1) {
    const a2 = a.rank === 1 ? reshape(a, [1, a.shape[0]]) : a;
    const b2 = b.rank === 1 ? reshape(b, [b.shape[0], 1]) : b;
    const y = matmul(a2, b2);
    const shape = [...y.shape];
    if (b.rank === 1) shape.splice(shape.length - 1, 1);
    if (a.rank === 1) shape.splice(shape.length - (b.rank === 1 ? 1 : 2), 1);
    return reshape(y, shape);
  }
  return record('matmul', [a, b], matmulKernel(a, b));
}

/**
 * torch.nn.functional.linear: x [..., in] times weight [out, in] transposed, plus bias [out]. One
 * op rather than a matmul and an add: the product before the bias is freed at once (the add's
 * backward never reads it; as two ops it would live until the scope ends), and the weight's
 * gradient comes out contiguous in the weight's layout.
 */
export function linear(x0: Tensor, weight0: Tensor, bias0: Tensor | null = null): Tensor {
  const op = 'linear';
  checkTensors(op, x0, weight0, ...(bias0 ? [bias0] : []));
  for (const t of [x0, weight0, bias0]) if (t) checkFloat(op, t);
  const [x, weight, bias] = lowPrecision(x0, weight0, bias0);
  if (weight.rank !== 2) throw opError(op, `weight must be 2-D [out, in], got ${fmtShape(weight.shape)}`);
  const [outF, inF] = weight.shape;
  if (x.rank < 1 || x.shape[x.rank - 1] !== inF)
    throw opError(op, `input of shape ${fmtShape(x.shape)} must end in ${inF} features (weight ${fmtShape(weight.shape)})`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outF)) throw opError(op, `bias must have shape [${outF}], got ${fmtShape(bias.shape)}`);
  const out = noGrad(() => {
    const x2 = x.rank === 1 ? reshape(x, [1, inF]) : x;
    const wT = transpose(weight, 0, 1);
    let y = matmulKernel(x2, wT);
    for (const t of [wT, x2]) if (t !== x) t.dispose();
    if (bias) y = addFreeing(y, bias);
    if (x.rank > 1) return y;
    const v = reshape(y, [outF]);
    y.dispose();
    return v;
  });
  return record(op, bias ? [x, weight, bias] : [x, weight], out);
}
