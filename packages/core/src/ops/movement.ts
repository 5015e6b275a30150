import { record } from '../autograd/graph.ts';
import { fmtShape, opError } from '../errors.ts';
import { broadcastStrides, checkShape, contiguousStrides, normalizeAxis, sizeOf, type Shape } from '../shape.ts';
import { empty, type Tensor, viewOf } from '../tensor.ts';
import { checkTensors } from './util.ts';

/** Resolves one -1 entry and checks the element count. */
function inferShape(op: string, x: Tensor, shape: readonly number[]): number[] {
  const s = [...shape];
  const unknown = s.indexOf(-1);
  if (unknown !== s.lastIndexOf(-1)) throw opError(op, `only one dimension may be -1, got ${fmtShape(shape)}`);
  if (unknown >= 0) {
    const known = sizeOf(s.filter((_, i) => i !== unknown));
    if (known === 0 || x.size % known !== 0) throw opError(op, `cannot infer -1 in ${fmtShape(shape)} for ${x.size} elements (input ${fmtShape(x.shape)})`);
    s[unknown] = x.size / known;
  }
  checkShape(op, s);
  if (sizeOf(s) !== x.size) throw opError(op, `cannot reshape ${fmtShape(x.shape)} (${x.size} elements) into ${fmtShape(shape)} (${sizeOf(s)} elements)`);
  return s;
}

/** Strided copy into a fresh contiguous tensor (a no-op handle copy is never returned). */
export function contiguous(x: Tensor): Tensor {
  const backend = checkTensors('contiguous', x);
  const out = empty(x.shape, x.dtype, backend);
  if (out.size > 0) {
    backend.copy(x.viewFor('contiguous'), { buffer: out.bufferFor('contiguous'), shape: x.shape, strides: out.strides, offset: 0 });
  }
  return record('contiguous', [x], out);
}

/** x itself when it is flat (see Tensor.isFlat), else a contiguous copy; callers dispose the copy. */
export function asFlat(x: Tensor): Tensor {
  return x.isFlat ? x : contiguous(x);
}

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  checkTensors('reshape', x);
  const s = inferShape('reshape', x, shape);
  if (x.isContiguous) return record('reshape', [x], viewOf(x, 'reshape', s, contiguousStrides(s), x.offset), { inShape: x.shape });
  const c = contiguous(x);
  const out = record('reshape', [x], viewOf(c, 'reshape', s, contiguousStrides(s), 0), { inShape: x.shape });
  c.dispose();
  return out;
}

/** Like reshape, but never copies: the tensor must be contiguous. */
export function view(x: Tensor, shape: readonly number[]): Tensor {
  checkTensors('view', x);
  if (!x.isContiguous) throw opError('view', `tensor of shape ${fmtShape(x.shape)} is not contiguous; call contiguous() or reshape() instead`);
  return reshape(x, shape);
}

export function flatten(x: Tensor, startAxis = 0, endAxis = -1): Tensor {
  checkTensors('flatten', x);
  if (x.rank === 0) return reshape(x, [1]);
  const a = normalizeAxis('flatten', startAxis, x.rank);
  const b = normalizeAxis('flatten', endAxis, x.rank);
  if (a > b) throw opError('flatten', `startAxis ${startAxis} comes after endAxis ${endAxis}`);
  return reshape(x, [...x.shape.slice(0, a), sizeOf(x.shape.slice(a, b + 1)), ...x.shape.slice(b + 1)]);
}

export function permute(x: Tensor, axes: readonly number[]): Tensor {
  checkTensors('permute', x);
  if (axes.length !== x.rank) throw opError('permute', `expected ${x.rank} axes for shape ${fmtShape(x.shape)}, got ${JSON.stringify(axes)}`);
  const norm = axes.map((a) => normalizeAxis('permute', a, x.rank));
  if (new Set(norm).size !== norm.length) throw opError('permute', `axes ${JSON.stringify(axes)} must be a permutation of 0..${x.rank - 1}`);
  const out = viewOf(
    x,
    'permute',
    norm.map((a) => x.shape[a]),
    norm.map((a) => x.strides[a]),
    x.offset,
  );
  return record('permute', [x], out, { axes: norm });
}

export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  checkTensors('transpose', x);
  if (x.rank < 2 && a === -2 && b === -1) throw opError('transpose', `expected a tensor of rank >= 2, got shape ${fmtShape(x.shape)}`);
  const order = [...Array(x.rank).keys()];
  const i = normalizeAxis('transpose', a, x.rank);
  const j = normalizeAxis('transpose', b, x.rank);
  [order[i], order[j]] = [order[j], order[i]];
  return permute(x, order);
}

/** Broadcasts to `shape` without copying (-1 keeps a dimension). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  checkTensors('expand', x);
  const lead = shape.length - x.rank;
  if (lead < 0) throw opError('expand', `cannot expand ${fmtShape(x.shape)} to fewer dimensions ${fmtShape(shape)}`);
  const target = shape.map((d, i) => (d === -1 && i >= lead ? x.shape[i - lead] : d));
  checkShape('expand', target);
  x.shape.forEach((d, i) => {
    if (d !== 1 && d !== target[lead + i])
      throw opError('expand', `cannot expand ${fmtShape(x.shape)} to ${fmtShape(shape)} (dimension ${lead + i}: ${d} vs ${target[lead + i]})`);
  });
  const out = viewOf(x, 'expand', target, broadcastStrides(x.shape, x.strides, target), x.offset);
  return record('expand', [x], out, { inShape: x.shape });
}

export function squeeze(x: Tensor, axis?: number): Tensor {
  checkTensors('squeeze', x);
  const keep = x.shape.map((d, i) => (axis === undefined ? d !== 1 : i !== normalizeAxis('squeeze', axis, x.rank) || d !== 1));
  return reshape(
    x,
    x.shape.filter((_, i) => keep[i]),
  );
}

export function unsqueeze(x: Tensor, axis: number): Tensor {
  checkTensors('unsqueeze', x);
  const a = normalizeAxis('unsqueeze', axis, x.rank + 1);
  const shape = [...x.shape];
  shape.splice(a, 0, 1);
  const strides = [...x.strides];
  strides.splice(a, 0, a < x.rank ? x.strides[a] * x.shape[a] : 1);
  return record('reshape', [x], viewOf(x, 'unsqueeze', shape, strides, x.offset), { inShape: x.shape });
}

/** Elements start..end-1 along `axis` (negative indices count from the end), as a view. */
export function slice(x: Tensor, axis: number, start: number, end?: number): Tensor {
  checkTensors('slice', x);
  if (x.rank === 0) throw opError('slice', 'cannot slice a scalar (rank 0); reshape it to [1] first');
  const a = normalizeAxis('slice', axis, x.rank);
  const n = x.shape[a];
  const norm = (i: number) => Math.min(Math.max(i < 0 ? i + n : i, 0), n);
  if (!Number.isInteger(start) || (end !== undefined && !Number.isInteger(end))) {
    throw opError('slice', `start and end must be integers, got ${start} and ${end}`);
  }
  const s = norm(start);
  const e = Math.max(s, norm(end ?? n));
  const shape = [...x.shape];
  shape[a] = e - s;
  const out = viewOf(x, 'slice', shape, x.strides, x.offset + s * x.strides[a]);
  return record('slice', [x], out, { axis: a, start: s });
}

export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  checkTensors('narrow', x);
  const a = normalizeAxis('narrow', axis, x.rank);
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > x.shape[a]) {
    throw opError('narrow', `range start=${start}, length=${length} does not fit dimension ${a} of size ${x.shape[a]} (shape ${fmtShape(x.shape)})`);
  }
  return slice(x, a, start, start + length);
}

/** Writes `src` into the region of `dst` starting at `start` along `axis` (dst is fresh, so this is not a user-visible mutation). */
export function copyInto(dst: Tensor, src: Tensor, axis: number, start: number): void {
  if (src.size === 0) return;
  dst.backend.copy(src.viewFor('copy'), {
    buffer: dst.bufferFor('copy'),
    shape: src.shape,
    strides: dst.strides,
    offset: dst.offset + start * dst.strides[axis],
  });
}

export function cat(tensors: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(tensors as unknown) || tensors.length === 0) throw opError('cat', 'expected a non-empty array of tensors');
  const backend = checkTensors('cat', ...tensors);
  const first = tensors[0];
  const a = normalizeAxis('cat', axis, first.rank);
  for (const t of tensors) {
    if (t.rank !== first.rank || t.shape.some((d, i) => i !== a && d !== first.shape[i]) || t.dtype !== first.dtype) {
      throw opError('cat', `all tensors must match except along axis ${a}: got ${first.dtype} ${fmtShape(first.shape)} and ${t.dtype} ${fmtShape(t.shape)}`);
    }
  }
  const shape = [...first.shape];
  shape[a] = tensors.reduce((s, t) => s + t.shape[a], 0);
  const out = empty(shape, first.dtype, backend);
  let offset = 0;
  const starts: number[] = [];
  for (const t of tensors) {
    starts.push(offset);
    copyInto(out, t, a, offset);
    offset += t.shape[a];
  }
  return record('cat', tensors, out, { axis: a, starts });
}

export function stack(tensors: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(tensors as unknown) || tensors.length === 0) throw opError('stack', 'expected a non-empty array of tensors');
  checkTensors('stack', ...tensors);
  for (const t of tensors) {
    if (t.rank !== tensors[0].rank || t.shape.some((d, i) => d !== tensors[0].shape[i])) {
      throw opError('stack', `all tensors must have the same shape, got ${fmtShape(tensors[0].shape)} and ${fmtShape(t.shape)}`);
    }
  }
  const a = normalizeAxis('stack', axis, tensors[0].rank + 1);
  const parts = tensors.map((t) => unsqueeze(t, a));
  const out = cat(parts, a);
  // The unsqueezed handles are graph inputs of `out` when gradients are recorded.
  if (!out.requiresGrad) for (const p of parts) p.dispose();
  return out;
}

export function broadcastTo(x: Tensor, shape: Shape): Tensor {
  return expand(x, [...shape]);
}
