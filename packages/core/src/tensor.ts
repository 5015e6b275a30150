import { type Backend, type BackendBuffer, type DType, DTYPE_BYTES, isFloating, type TypedArray, type View } from './backend.ts';
import { bfloat16ToFloat32, float16ToFloat32 } from './half.ts';
import { engine } from './engine.ts';
import { fmtShape, opError } from './errors.ts';
import { contiguousStrides, isContiguous, sizeOf, type Shape } from './shape.ts';
import type { GradNode } from './autograd/graph.ts';
import { backward, release } from './autograd/graph.ts';
import * as ew from './ops/elementwise.ts';
import * as red from './ops/reduce.ts';
import * as mv from './ops/movement.ts';
import { matmul } from './ops/matmul.ts';
import * as nnops from './ops/nn.ts';
import { gather, indexSelect } from './ops/indexing.ts';

/** A backend buffer shared by a tensor and its views; freed when the last one lets go. */
export class Storage {
  private static nextSerial = 1;
  private refs = 1;
  /** The capture session it was made in (0: none), so captureStep can tell what predates a step. */
  readonly epoch = engine.capture?.epoch ?? 0;
  /** Creation order: a recording may read every storage made before it ended (captureStep). */
  readonly serial = Storage.nextSerial++;
  /** The serial the next storage will get. */
  static get horizon(): number {
    return Storage.nextSerial;
  }
  constructor(
    readonly backend: Backend,
    readonly buffer: BackendBuffer,
  ) {
    engine.onAlloc(backend, buffer.size * DTYPE_BYTES[buffer.dtype]);
  }
  retain(): void {
    this.refs++;
  }
  /** Held by one tensor handle only: no view elsewhere sees its values. */
  get exclusive(): boolean {
    return this.refs === 1;
  }
  release(): void {
    if (--this.refs === 0) {
      this.backend.free(this.buffer);
      engine.onAlloc(this.backend, -this.buffer.size * DTYPE_BYTES[this.buffer.dtype]);
    }
  }
}

let nextId = 1;
type Operand = Tensor | number;

export class Tensor {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  readonly dtype: DType;
  private _storage: Storage | null;
  private readonly _backend: Backend;
  /** Set by the op that produced this tensor while gradients are being recorded. */
  gradNode: GradNode | null = null;
  private _requiresGrad = false;
  private _grad: Tensor | null = null;

  /** Internal: use the creation functions (tensor, zeros, randn, ...) instead. */
  constructor(storage: Storage, shape: Shape, dtype: DType, strides?: readonly number[], offset = 0) {
    this._storage = storage;
    this._backend = storage.backend;
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze(strides ? [...strides] : contiguousStrides(shape));
    this.offset = offset;
    this.dtype = dtype;
    engine.track(this);
  }

  get backend(): Backend {
    return this._backend;
  }
  get rank(): number {
    return this.shape.length;
  }
  get size(): number {
    return sizeOf(this.shape);
  }
  get isDisposed(): boolean {
    return this._storage === null;
  }
  get isContiguous(): boolean {
    return isContiguous(this.shape, this.strides);
  }
  /** Contiguous and starting at element 0: laid out exactly as the first `size` elements of its buffer, as bare-buffer kernels expect. */
  get isFlat(): boolean {
    return this.offset === 0 && this.isContiguous;
  }

  /**
   * Alone on its whole buffer: flat, covering the buffer, and no other handle or view shares it.
   * Writing its buffer in place is then invisible to everything else (list updates do).
   */
  get ownsBuffer(): boolean {
    const storage = this._storage;
    if (storage === null) return false;
    return storage.exclusive && this.isFlat && this.size === storage.buffer.size;
  }

  /** The storage, or an error naming `op` if this tensor was disposed. */
  storageFor(op: string): Storage {
    if (!this._storage)
      throw opError(
        op,
        `tensor #${this.id} of shape ${fmtShape(this.shape)} was disposed and can no longer be used (tensors made inside tidy() are freed when it returns: call backward() inside the same scope)`,
      );
    return this._storage;
  }
  bufferFor(op: string): BackendBuffer {
    return this.storageFor(op).buffer;
  }
  /** The strided view a kernel reads, optionally broadcast to other strides. */
  viewFor(op: string, shape: Shape = this.shape, strides: readonly number[] = this.strides): View {
    return { buffer: this.bufferFor(op), shape, strides, offset: this.offset };
  }

  get requiresGrad(): boolean {
    return this._requiresGrad;
  }
  set requiresGrad(v: boolean) {
    if (v && !isFloating(this.dtype)) throw opError('requiresGrad', `only floating-point tensors can require gradients, got ${this.dtype}`);
    this._requiresGrad = v;
  }
  /** Enables gradient tracking in place and returns this tensor. */
  requiresGrad_(v = true): this {
    this.requiresGrad = v;
    return this;
  }
  get grad(): Tensor | null {
    return this._grad;
  }
  set grad(g: Tensor | null) {
    if (g && !sameShapeArr(g.shape, this.shape))
      throw opError('grad', `gradient shape ${fmtShape(g.shape)} does not match tensor shape ${fmtShape(this.shape)}`);
    if (this._grad && this._grad !== g) this._grad.dispose();
    if (g) engine.untrack(g);
    this._grad = g;
  }
  /** True for tensors created by the user (not produced by a recorded op). */
  get isLeaf(): boolean {
    return this.gradNode === null;
  }

  /** Releases the buffer (shared views keep it alive). Idempotent. */
  dispose(): void {
    if (!this._storage) return;
    this._storage.release();
    this._storage = null;
    engine.onDispose(this);
  }

  /** Replaces this tensor's contents with `other`'s (same shape and dtype) without recording gradients. */
  assign(other: Tensor): this {
    const st = this.storageFor('assign');
    if (engine.capture && st.epoch !== engine.capture.epoch)
      engine.capture.problem(
        `assign() gives a tensor of shape ${fmtShape(this.shape)} made before the step a new buffer (an update out of place); a replay would keep reading the old one`,
      );
    // A recording that may read the old buffer must not be replayed any more (a state load).
    for (const watch of engine.assignWatchers) watch(st.serial);
    if (!sameShapeArr(other.shape, this.shape) || other.dtype !== this.dtype) {
      throw opError('assign', `expected a ${this.dtype} tensor of shape ${fmtShape(this.shape)}, got ${other.dtype} ${fmtShape(other.shape)}`);
    }
    if (other.backend !== this.backend) throw opError('assign', `tensors live on different backends (${this.backend.name} vs ${other.backend.name})`);
    const src = mv.asFlat(other);
    const next = src.storageFor('assign');
    next.retain();
    st.release();
    this._storage = next;
    (this as { strides: readonly number[] }).strides = Object.freeze(contiguousStrides(this.shape));
    (this as { offset: number }).offset = 0;
    if (src !== other) src.dispose();
    return this;
  }

  // ---- reading (always asynchronous so GPU backends never block) ----
  /** The values in row-major order: Int32Array for int32, Float32Array for every floating dtype (16-bit values converted exactly). */
  async toArray(): Promise<TypedArray> {
    if (engine.capture) {
      engine.capture.problem('the step reads a value back (toArray, item); a recording cannot');
      if (engine.capture.recording) throw opError('toArray', 'cannot read a value back inside a step being recorded by captureStep');
    }
    const t = mv.asFlat(this);
    const out = await this.backend.read(t.bufferFor('toArray'), this.size);
    if (t !== this) t.dispose();
    if (this.dtype === 'bfloat16') return bfloat16ToFloat32(out);
    if (this.dtype === 'float16') return float16ToFloat32(out);
    return out as TypedArray;
  }
  async toNested(): Promise<NestedArray> {
    const data = await this.toArray();
    return nest(data, this.shape, 0, 0) as NestedArray;
  }
  async item(): Promise<number> {
    if (this.size !== 1) throw opError('item', `expected a tensor with one element, got shape ${fmtShape(this.shape)}`);
    return (await this.toArray())[0];
  }

  // ---- autograd ----
  /** Accumulates d(this)/d(leaf) into every leaf's `.grad`. A non-scalar needs an explicit gradient. */
  backward(gradient?: Tensor, options: { retainGraph?: boolean } = {}): void {
    backward(this, gradient, options.retainGraph ?? false);
  }
  /** A tensor sharing this one's data that is cut off from the graph. */
  detach(): Tensor {
    const st = this.storageFor('detach');
    st.retain();
    return new Tensor(st, this.shape, this.dtype, this.strides, this.offset);
  }

  toString(): string {
    return `Tensor(${this.dtype} ${fmtShape(this.shape)} on ${this.backend.name}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  // ---- op methods (semantics live in ops/) ----
  add(o: Operand): Tensor {
    return ew.add(this, o);
  }
  sub(o: Operand): Tensor {
    return ew.sub(this, o);
  }
  mul(o: Operand): Tensor {
    return ew.mul(this, o);
  }
  div(o: Operand): Tensor {
    return ew.div(this, o);
  }
  pow(o: Operand): Tensor {
    return ew.pow(this, o);
  }
  maximum(o: Operand): Tensor {
    return ew.maximum(this, o);
  }
  minimum(o: Operand): Tensor {
    return ew.minimum(this, o);
  }
  eq(o: Operand): Tensor {
    return ew.eq(this, o);
  }
  ne(o: Operand): Tensor {
    return ew.ne(this, o);
  }
  lt(o: Operand): Tensor {
    return ew.lt(this, o);
  }
  le(o: Operand): Tensor {
    return ew.le(this, o);
  }
  gt(o: Operand): Tensor {
    return ew.gt(this, o);
  }
  ge(o: Operand): Tensor {
    return ew.ge(this, o);
  }
  neg(): Tensor {
    return ew.neg(this);
  }
  exp(): Tensor {
    return ew.exp(this);
  }
  log(): Tensor {
    return ew.log(this);
  }
  sqrt(): Tensor {
    return ew.sqrt(this);
  }
  abs(): Tensor {
    return ew.abs(this);
  }
  tanh(): Tensor {
    return ew.tanh(this);
  }
  sigmoid(): Tensor {
    return ew.sigmoid(this);
  }
  relu(): Tensor {
    return ew.relu(this);
  }
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor {
    return ew.gelu(this, approximate);
  }
  clamp(min?: number, max?: number): Tensor {
    return ew.clamp(this, min, max);
  }
  cast(dtype: DType): Tensor {
    return ew.cast(this, dtype);
  }
  /** The tensor in `dtype` (itself when it already is); differentiable between floating dtypes. */
  to(dtype: DType): Tensor {
    return ew.to(this, dtype);
  }

  sum(axis?: number | number[], keepdim = false): Tensor {
    return red.sum(this, axis, keepdim);
  }
  mean(axis?: number | number[], keepdim = false): Tensor {
    return red.mean(this, axis, keepdim);
  }
  max(axis?: number | number[], keepdim = false): Tensor {
    return red.max(this, axis, keepdim);
  }
  min(axis?: number | number[], keepdim = false): Tensor {
    return red.min(this, axis, keepdim);
  }
  argmax(axis?: number, keepdim = false): Tensor {
    return red.argmax(this, axis, keepdim);
  }
  argmin(axis?: number, keepdim = false): Tensor {
    return red.argmin(this, axis, keepdim);
  }

  matmul(o: Tensor): Tensor {
    return matmul(this, o);
  }

  reshape(...shape: number[] | [number[]]): Tensor {
    return mv.reshape(this, flatArgs(shape));
  }
  view(...shape: number[] | [number[]]): Tensor {
    return mv.view(this, flatArgs(shape));
  }
  flatten(startAxis = 0, endAxis = -1): Tensor {
    return mv.flatten(this, startAxis, endAxis);
  }
  transpose(a = -2, b = -1): Tensor {
    return mv.transpose(this, a, b);
  }
  get T(): Tensor {
    return mv.transpose(this, -2, -1);
  }
  permute(...axes: number[] | [number[]]): Tensor {
    return mv.permute(this, flatArgs(axes));
  }
  expand(...shape: number[] | [number[]]): Tensor {
    return mv.expand(this, flatArgs(shape));
  }
  squeeze(axis?: number): Tensor {
    return mv.squeeze(this, axis);
  }
  unsqueeze(axis: number): Tensor {
    return mv.unsqueeze(this, axis);
  }
  slice(axis: number, start: number, end?: number): Tensor {
    return mv.slice(this, axis, start, end);
  }
  narrow(axis: number, start: number, length: number): Tensor {
    return mv.narrow(this, axis, start, length);
  }
  contiguous(): Tensor {
    return mv.contiguous(this);
  }

  gather(axis: number, index: Tensor): Tensor {
    return gather(this, axis, index);
  }
  indexSelect(axis: number, index: Tensor): Tensor {
    return indexSelect(this, axis, index);
  }

  softmax(axis = -1): Tensor {
    return nnops.softmax(this, axis);
  }
  logSoftmax(axis = -1): Tensor {
    return nnops.logSoftmax(this, axis);
  }
}

export type NestedArray = number | NestedArray[];

function sameShapeArr(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function flatArgs(args: number[] | [number[]]): number[] {
  return Array.isArray(args[0]) ? (args[0] as number[]) : (args as number[]);
}

function nest(data: TypedArray, shape: readonly number[], axis: number, offset: number): NestedArray {
  if (axis === shape.length) return data[offset];
  const inner = sizeOf(shape.slice(axis + 1));
  const out: NestedArray[] = [];
  for (let i = 0; i < shape[axis]; i++) out.push(nest(data, shape, axis + 1, offset + i * inner));
  return out;
}

/** Throws an Error naming `op` if `backend` cannot hold `dtype`. */
export function checkHeld(op: string, dtype: DType, backend: Backend): void {
  if (!backend.dtypes.includes(dtype)) {
    throw opError(
      op,
      `the ${backend.name} backend cannot hold ${dtype} tensors (it holds ${backend.dtypes.join(', ')})${backend.name === 'webgpu' && dtype === 'float16' ? ": this adapter does not offer the 'shader-f16' feature" : ''}`,
    );
  }
}

/** Allocates an uninitialised contiguous result tensor on `backend`. */
export function empty(shape: Shape, dtype: DType = 'float32', backend: Backend = engine.backend): Tensor {
  checkHeld('alloc', dtype, backend);
  const buffer = backend.alloc(sizeOf(shape), dtype);
  return new Tensor(new Storage(backend, buffer), shape, dtype);
}

/** A new tensor handle on the same storage with another layout (a view). */
export function viewOf(t: Tensor, op: string, shape: Shape, strides: readonly number[], offset: number): Tensor {
  const st = t.storageFor(op);
  st.retain();
  return new Tensor(st, shape, t.dtype, strides, offset);
}

// ---- memory scopes ----

type Keepable = Tensor | null | undefined | number | string | boolean | Keepable[] | { [k: string]: Keepable } | unknown;

function collect(value: Keepable, into: Set<Tensor>, depth = 0): void {
  if (depth > 8 || value === null || typeof value !== 'object') return;
  if (value instanceof Tensor) into.add(value);
  else if (Array.isArray(value)) for (const v of value) collect(v, into, depth + 1);
  else if (value instanceof Map) for (const v of value.values()) collect(v, into, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, into, depth + 1);
}

/**
 * Runs fn and disposes every tensor created inside it except those it returns (searched in
 * arrays, Maps and plain objects) and those passed to keep(). fn must be synchronous: await
 * readbacks outside the scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  engine.scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    engine.scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  engine.scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw opError('tidy', 'the function returned a Promise; tidy scopes must be synchronous (await readbacks outside)');
  }
  const kept = new Set<Tensor>();
  collect(result, kept);
  const parent = engine.scopes[engine.scopes.length - 1];
  for (const t of scope) {
    if (kept.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/**
 * Runs fn and releases (see release()) every tensor created inside it except those it returns:
 * each is freed as soon as no recorded op still has to read it, during backward at the latest.
 * Model code wraps its forward in it so that a training step frees the activations layer by layer
 * as backward passes them, as PyTorch frees saved tensors, instead of when the step's tidy scope
 * ends; what is still allocated then is disposed there as usual. fn must be synchronous.
 */
export function releasing<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  engine.scopes.push(scope);
  const parent = engine.scopes[engine.scopes.length - 2];
  let result: T;
  try {
    result = fn();
  } finally {
    engine.scopes.pop();
    for (const t of scope) parent?.add(t);
  }
  if (result instanceof Promise) throw opError('releasing', 'the function returned a Promise; it must be synchronous');
  const kept = new Set<Tensor>();
  collect(result, kept);
  for (const t of scope) if (!kept.has(t)) release(t);
  return result;
}

/** Exempts a tensor from the enclosing tidy scopes (it must then be disposed by hand). */
export function keep<T extends Tensor>(t: T): T {
  engine.untrack(t);
  return t;
}
