import type ndarray from 'ndarray';
import { type Backend, type DType, DTYPES, isFloating, type StorageArray, type TypedArray } from './backend.ts';
import { varying } from './capture.ts';
import { engine } from './engine.ts';
import { fmtShape, opError } from './errors.ts';
import { float32ToBfloat16, float32ToFloat16 } from './half.ts';
import { checkShape, sizeOf, type Shape } from './shape.ts';
import { checkHeld, empty, Storage, Tensor, type NestedArray } from './tensor.ts';

export interface CreateOptions {
  dtype?: DType;
  backend?: Backend;
  requiresGrad?: boolean;
}

function finish(t: Tensor, opts: CreateOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export function checkDtype(op: string, dtype: unknown): DType {
  if (!DTYPES.includes(dtype as DType)) throw opError(op, `dtype must be one of ${DTYPES.map((d) => `'${d}'`).join(', ')}, got ${String(dtype)}`);
  return dtype as DType;
}

/** Host values as a backend stores them: 16-bit floats rounded to nearest even, as their bits. */
export function storageArray(values: ArrayLike<number>, dtype: DType): StorageArray {
  if (dtype === 'bfloat16') return float32ToBfloat16(values);
  if (dtype === 'float16') return float32ToFloat16(values);
  return dtype === 'int32' ? Int32Array.from(values) : Float32Array.from(values);
}

function inferShape(op: string, data: NestedArray, shape: number[] = []): number[] {
  if (!Array.isArray(data)) return shape;
  shape.push(data.length);
  if (data.length > 0) inferShape(op, data[0], shape);
  return shape;
}

function flattenInto(op: string, data: NestedArray, shape: number[], axis: number, out: number[]): void {
  if (axis === shape.length) {
    if (typeof data !== 'number') throw opError(op, `ragged nested array: expected a number at depth ${axis}`);
    out.push(data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[axis]) {
    throw opError(op, `ragged nested array: expected ${shape[axis]} elements at depth ${axis} (inferred shape ${fmtShape(shape)})`);
  }
  for (const d of data) flattenInto(op, d, shape, axis + 1, out);
}

/** Creates a tensor from a nested array, a typed array or a number. `shape` reshapes flat data. */
export function tensor(data: NestedArray | TypedArray | readonly number[], shape?: Shape, opts: CreateOptions = {}): Tensor {
  const op = 'tensor';
  let flat: ArrayLike<number>;
  let inferred: number[];
  if (data instanceof Float32Array || data instanceof Int32Array) {
    flat = data;
    inferred = [data.length];
  } else if (typeof data === 'number' || Array.isArray(data)) {
    inferred = inferShape(op, data as NestedArray);
    const out: number[] = [];
    flattenInto(op, data as NestedArray, inferred, 0, out);
    flat = out;
  } else {
    throw opError(op, `expected a nested array, Float32Array, Int32Array or number, got ${Object.prototype.toString.call(data)}`);
  }
  const finalShape = shape ? checkShape(op, shape) : inferred;
  if (sizeOf(finalShape) !== flat.length) {
    throw opError(op, `data has ${flat.length} elements but shape ${fmtShape(finalShape)} needs ${sizeOf(finalShape)}`);
  }
  const dtype = checkDtype(op, opts.dtype ?? (data instanceof Int32Array ? 'int32' : 'float32'));
  const backend = opts.backend ?? engine.backend;
  checkHeld(op, dtype, backend);
  return finish(new Tensor(new Storage(backend, backend.upload(storageArray(flat, dtype), dtype)), finalShape, dtype), opts);
}

/** A tensor of `value`; `op` names the user's call in errors. */
function filled(op: string, shape: Shape, value: number, opts: CreateOptions): Tensor {
  const s = checkShape(op, shape);
  if (typeof value !== 'number') throw opError(op, `fill value must be a number, got ${typeof value}`);
  const dtype = checkDtype(op, opts.dtype ?? 'float32');
  const backend = opts.backend ?? engine.backend;
  checkHeld(op, dtype, backend);
  const t = empty(s, dtype, backend);
  t.backend.fill(t.bufferFor(op), t.size, value);
  return finish(t, opts);
}

export const full = (shape: Shape, value: number, opts: CreateOptions = {}): Tensor => filled('full', shape, value, opts);
export const zeros = (shape: Shape, opts: CreateOptions = {}): Tensor => filled('zeros', shape, 0, opts);
export const ones = (shape: Shape, opts: CreateOptions = {}): Tensor => filled('ones', shape, 1, opts);
export const zerosLike = (t: Tensor): Tensor => full(t.shape, 0, { dtype: t.dtype, backend: t.backend });
export const onesLike = (t: Tensor): Tensor => full(t.shape, 1, { dtype: t.dtype, backend: t.backend });

function randomTensor(op: string, shape: Shape, kind: 'uniform' | 'normal', a: number, b: number, opts: CreateOptions): Tensor {
  const s = checkShape(op, shape);
  if (!Number.isFinite(a) || !Number.isFinite(b)) throw opError(op, `parameters must be finite numbers, got ${a} and ${b}`);
  const dtype = checkDtype(op, opts.dtype ?? 'float32');
  if (!isFloating(dtype)) throw opError(op, `dtype must be a floating dtype, got ${dtype}`);
  checkHeld(op, dtype, opts.backend ?? engine.backend);
  const t = empty(s, dtype, opts.backend ?? engine.backend);
  const buffer = t.bufferFor(op);
  varying(() => t.backend.random(buffer, t.size, { kind, key: engine.nextKey(), a, b }));
  return finish(t, opts);
}

/** Standard normal samples (mean and std adjustable). */
export function randn(shape: Shape, opts: CreateOptions & { mean?: number; std?: number } = {}): Tensor {
  return randomTensor('randn', shape, 'normal', opts.mean ?? 0, opts.std ?? 1, opts);
}

/** Uniform samples in [low, high), default [0, 1). */
export function rand(shape: Shape, opts: CreateOptions & { low?: number; high?: number } = {}): Tensor {
  const low = opts.low ?? 0;
  const high = opts.high ?? 1;
  if (!(high > low)) throw opError('rand', `expected low < high, got low=${low}, high=${high}`);
  return randomTensor('rand', shape, 'uniform', low, high, opts);
}

/** Values start, start+step, ... below end (int32 when all arguments are integers, unless dtype says otherwise). */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  if (!Number.isFinite(start) || !Number.isFinite(end) || !Number.isFinite(step) || step === 0) {
    throw opError('arange', `expected finite start/end and a non-zero step, got start=${start}, end=${end}, step=${step}`);
  }
  const n = Math.max(0, Math.ceil((end - start) / step));
  const dtype = opts.dtype ?? ([start, end, step].every(Number.isInteger) ? 'int32' : 'float32');
  const host = dtype === 'int32' ? new Int32Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) host[i] = start + i * step;
  return tensor(host, [n], { ...opts, dtype });
}

/** Copies an ndarray (any strides, Float32Array/Int32Array/number data) into a tensor. */
export function fromNdarray(arr: ndarray.NdArray, opts: CreateOptions = {}): Tensor {
  if (!arr || !Array.isArray(arr.shape) || typeof arr.get !== 'function') throw opError('fromNdarray', 'expected an ndarray');
  const shape = arr.shape;
  const dtype = opts.dtype ?? (arr.data instanceof Int32Array ? 'int32' : 'float32');
  const host = dtype === 'int32' ? new Int32Array(sizeOf(shape)) : new Float32Array(sizeOf(shape));
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < host.length; i++) {
    host[i] = arr.get(...idx);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return tensor(host, shape, { ...opts, dtype });
}

/** Reads a tensor into a new ndarray (row-major, same dtype). */
export async function toNdarray(t: Tensor): Promise<ndarray.NdArray<TypedArray>> {
  const { default: nd } = await import('ndarray');
  return nd(await t.toArray(), [...t.shape]);
}

/** The n x n identity matrix. */
export function eye(n: number, opts: CreateOptions = {}): Tensor {
  if (!Number.isInteger(n) || n < 0) throw opError('eye', `n must be a non-negative integer, got ${n}`);
  const host = new Float32Array(n * n);
  for (let i = 0; i < n; i++) host[i * n + i] = 1;
  return tensor(host, [n, n], opts);
}
