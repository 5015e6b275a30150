import type { View } from '../backend.ts';
import { record } from '../autograd/graph.ts';
import { fmtShape, opError } from '../errors.ts';
import { normalizeAxis, sizeOf } from '../shape.ts';
import { empty, type Tensor } from '../tensor.ts';
import { asFlat, contiguous } from './movement.ts';
import { checkTensors } from './util.ts';

/** [outer, n, inner] split of a shape around `axis`. */
export function splitAround(shape: readonly number[], axis: number): [number, number, number] {
  return [sizeOf(shape.slice(0, axis)), shape[axis], sizeOf(shape.slice(axis + 1))];
}

function checkIndex(op: string, index: Tensor): void {
  if (index.dtype !== 'int32') throw opError(op, `index must be an int32 tensor, got ${index.dtype}`);
}

/**
 * The index tensor seen as [outer, count, inner] (indexSelect's 1-D index broadcasts over outer and
 * inner). For gather the index must be contiguous (callers make it so).
 */
export function indexView(op: string, index: Tensor, axis: number, select: boolean): View {
  if (select) return index.viewFor(op, [1, index.shape[0], 1], [0, index.strides[0], 0]);
  const [outer, count, inner] = splitAround(index.shape, axis);
  // The index may be any strided layout; gather/scatter read it through a 3-D view, so make it contiguous-equivalent.
  return { buffer: index.bufferFor(op), shape: [outer, count, inner], strides: [count * inner, inner, 1], offset: index.offset };
}

/** Gather/scatter on contiguous data with a prepared index view. */
export function gatherKernel(op: string, x: Tensor, axis: number, idx: View, count: number): Tensor {
  const [outer, n, inner] = splitAround(x.shape, axis);
  const shape = [...x.shape];
  shape[axis] = count;
  const src = asFlat(x);
  const out = empty(shape, x.dtype, x.backend);
  if (out.size > 0) x.backend.gather(src.bufferFor(op), idx, outer, n, inner, count, out.bufferFor(op));
  if (src !== x) src.dispose();
  return out;
}

export function scatterAddKernel(op: string, src: Tensor, axis: number, idx: View, n: number): Tensor {
  const [outer, count, inner] = splitAround(src.shape, axis);
  const shape = [...src.shape];
  shape[axis] = n;
  const s = asFlat(src);
  const out = empty(shape, src.dtype, src.backend);
  if (out.size > 0) src.backend.scatterAdd(s.bufferFor(op), idx, outer, n, inner, count, out.bufferFor(op));
  if (s !== src) s.dispose();
  return out;
}

/** Rows of x along `axis` picked by a 1-D int32 index (embedding lookup): out.shape[axis] = index.length. */
export function indexSelect(x: Tensor, axis: number, index: Tensor): Tensor {
  const op = 'indexSelect';
  checkTensors(op, x, index);
  checkIndex(op, index);
  if (index.rank !== 1) throw opError(op, `index must be 1-D, got shape ${fmtShape(index.shape)}`);
  const a = normalizeAxis(op, axis, x.rank);
  const out = gatherKernel(op, x, a, indexView(op, index, a, true), index.shape[0]);
  return record('indexSelect', [x], out, { axis: a, index });
}

/** torch.gather: out[..., j, ...] = x[..., index[..., j, ...], ...] along `axis`; index has x's shape except along axis. */
export function gather(x: Tensor, axis: number, index: Tensor): Tensor {
  const op = 'gather';
  checkTensors(op, x, index);
  checkIndex(op, index);
  const a = normalizeAxis(op, axis, x.rank);
  if (index.rank !== x.rank || index.shape.some((d, i) => i !== a && d !== x.shape[i])) {
    throw opError(op, `index shape ${fmtShape(index.shape)} must equal input shape ${fmtShape(x.shape)} except along axis ${a}`);
  }
  const idx = index.isContiguous ? index : contiguous(index);
  const out = gatherKernel(op, x, a, indexView(op, idx, a, false), index.shape[a]);
  if (idx !== index) idx.dispose();
  return record('gather', [x], out, { axis: a, index });
}
