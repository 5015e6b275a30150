import { type BinaryOp, type DType, isFloating, type UnaryOp, type View } from '../backend.ts';
import { checkDtype } from '../creation.ts';
import { fullPrecision } from '../autocast.ts';
import { record } from '../autograd/graph.ts';
import { opError } from '../errors.ts';
import { broadcastShapes, broadcastStrides, contiguousStrides, sizeOf } from '../shape.ts';
import { checkHeld, empty, Tensor } from '../tensor.ts';
import { checkFloat, checkNumber, checkTensors, inDtype } from './util.ts';

type Operand = Tensor | number;

const COMPARISONS = new Set<BinaryOp>(['eq', 'ne', 'lt', 'le', 'gt', 'ge']);

function broadcastView(op: string, t: Tensor, shape: readonly number[]): View {
  return t.viewFor(op, shape, broadcastStrides(t.shape, t.strides, shape));
}

/**
 * The dtype two floating operands compute in, as PyTorch promotes them: the same dtype stays;
 * float32 with a 16-bit float, or bfloat16 with float16, gives float32. int32 never mixes with a
 * floating dtype implicitly (cast one first).
 */
export function promoteTypes(op: string, a: DType, b: DType): DType {
  if (a === b) return a;
  if (!isFloating(a) || !isFloating(b)) throw opError(op, `operands have different dtypes (${a} and ${b}); cast one first`);
  return 'float32';
}

/** Runs a binary kernel with NumPy broadcasting and type promotion; no gradient recording. */
export function binaryKernel(op: BinaryOp, a: Operand, b: Operand): Tensor {
  const tensors = [a, b].filter((x): x is Tensor => x instanceof Tensor);
  if (tensors.length === 0) throw opError(op, 'expected at least one Tensor operand, got two numbers');
  for (const x of [a, b]) if (!(x instanceof Tensor)) checkNumber(op, 'scalar operand', x);
  const backend = checkTensors(op, ...tensors);
  const common = tensors.length === 2 ? promoteTypes(op, tensors[0].dtype, tensors[1].dtype) : tensors[0].dtype;
  const dtype: DType = COMPARISONS.has(op) ? 'float32' : common;
  const shape = tensors.length === 2 ? broadcastShapes(op, tensors[0].shape, tensors[1].shape) : [...tensors[0].shape];
  const out = empty(shape, dtype, backend);
  if (out.size > 0) {
    const temps: Tensor[] = [];
    const va = a instanceof Tensor ? broadcastView(op, inDtype(a, common, temps), shape) : a;
    const vb = b instanceof Tensor ? broadcastView(op, inDtype(b, common, temps), shape) : b;
    backend.binary(op, va, vb, out.bufferFor(op));
    for (const t of temps) t.dispose();
  }
  return out;
}

/**
 * a + b (b broadcast) as a new tensor, freeing a: for ops that add a bias or mask to an
 * intermediate nothing reads again. No gradient recording.
 */
export function addFreeing(a: Tensor, b: Tensor): Tensor {
  const out = binaryKernel('add', a, b);
  a.dispose();
  return out;
}

export function unaryKernel(op: UnaryOp, x: Tensor): Tensor {
  const backend = checkTensors(op, x);
  const out = empty(x.shape, x.dtype, backend);
  if (out.size > 0) backend.unary(op, x.viewFor(op), out.bufferFor(op));
  return out;
}

function differentiable(op: BinaryOp, a: Operand, b: Operand): Tensor {
  const out = binaryKernel(op, a, b);
  const inputs = [a, b].filter((x): x is Tensor => x instanceof Tensor);
  return record(op, inputs, out, { aIsTensor: a instanceof Tensor, bIsTensor: b instanceof Tensor, a, b });
}

export const add = (a: Operand, b: Operand): Tensor => differentiable('add', a, b);
export const sub = (a: Operand, b: Operand): Tensor => differentiable('sub', a, b);
export const mul = (a: Operand, b: Operand): Tensor => differentiable('mul', a, b);
export const div = (a: Operand, b: Operand): Tensor => differentiable('div', a, b);
export const pow = (a: Operand, b: Operand): Tensor =>
  differentiable('pow', a instanceof Tensor ? fullPrecision(a)[0] : a, b instanceof Tensor ? fullPrecision(b)[0] : b);
export const maximum = (a: Operand, b: Operand): Tensor => differentiable('maximum', a, b);
export const minimum = (a: Operand, b: Operand): Tensor => differentiable('minimum', a, b);
// Comparisons are not differentiable: their outputs never require gradients.
export const eq = (a: Operand, b: Operand): Tensor => binaryKernel('eq', a, b);
export const ne = (a: Operand, b: Operand): Tensor => binaryKernel('ne', a, b);
export const lt = (a: Operand, b: Operand): Tensor => binaryKernel('lt', a, b);
export const le = (a: Operand, b: Operand): Tensor => binaryKernel('le', a, b);
export const gt = (a: Operand, b: Operand): Tensor => binaryKernel('gt', a, b);
export const ge = (a: Operand, b: Operand): Tensor => binaryKernel('ge', a, b);

/** A unary op of floating tensors; `float32` (exp, log): it runs in float32 under autocast. */
function floatUnary(op: UnaryOp, x0: Tensor, float32 = false): Tensor {
  checkTensors(op, x0);
  checkFloat(op, x0);
  const [x] = float32 ? fullPrecision(x0) : [x0];
  return record(op, [x], unaryKernel(op, x));
}

export const neg = (x: Tensor): Tensor => record('neg', [x], unaryKernel('neg', x));
export const abs = (x: Tensor): Tensor => record('abs', [x], unaryKernel('abs', x));
// exp, log and pow run in float32 under autocast (their range or precision needs it).
export const exp = (x: Tensor): Tensor => floatUnary('exp', x, true);
export const log = (x: Tensor): Tensor => floatUnary('log', x, true);
export const sqrt = (x: Tensor): Tensor => floatUnary('sqrt', x);
export const tanh = (x: Tensor): Tensor => floatUnary('tanh', x);
export const sigmoid = (x: Tensor): Tensor => floatUnary('sigmoid', x);
export const relu = (x: Tensor): Tensor => floatUnary('relu', x);
export const sign = (x: Tensor): Tensor => unaryKernel('sign', x);

/** GELU: exact (erf) by default, or the tanh approximation used by GPT-2. */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  if (approximate !== 'none' && approximate !== 'tanh') throw opError('gelu', `approximate must be 'none' or 'tanh', got ${String(approximate)}`);
  return floatUnary(approximate === 'tanh' ? 'geluTanh' : 'geluErf', x);
}

/** Limits values to [min, max]; either bound may be omitted. Gradient 1 inside (bounds included), 0 outside. */
export function clamp(x: Tensor, min?: number, max?: number): Tensor {
  checkTensors('clamp', x);
  if (min === undefined && max === undefined) throw opError('clamp', 'expected at least one of min and max');
  if (min !== undefined) checkNumber('clamp', 'min', min);
  if (max !== undefined) checkNumber('clamp', 'max', max);
  if (min !== undefined && max !== undefined && min > max) throw opError('clamp', `min (${min}) must not exceed max (${max})`);
  let y = x;
  if (min !== undefined) y = binaryKernel('maximum', y, min);
  if (max !== undefined) {
    const z = binaryKernel('minimum', y, max);
    if (y !== x) y.dispose();
    y = z;
  }
  return record('clamp', [x], y, { min, max });
}

/** cond ? a : b elementwise with broadcasting; cond is any tensor (non-zero is true). */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const op = 'where';
  const ta = a instanceof Tensor ? a : null;
  const tb = b instanceof Tensor ? b : null;
  const backend = checkTensors(op, cond, ...[ta, tb].filter((t): t is Tensor => t !== null));
  const dtype = ta && tb ? promoteTypes(op, ta.dtype, tb.dtype) : (ta?.dtype ?? tb?.dtype ?? 'float32');
  const temps: Tensor[] = [];
  let shape = [...cond.shape];
  for (const t of [ta, tb]) if (t) shape = broadcastShapes(op, shape, t.shape);
  const scalar = (v: Operand): Tensor => {
    const t = empty([], dtype, backend);
    backend.fill(t.bufferFor(op), 1, checkNumber(op, 'scalar operand', v));
    return t;
  };
  const xa = ta ? inDtype(ta, dtype, temps) : scalar(a);
  const xb = tb ? inDtype(tb, dtype, temps) : scalar(b);
  const out = empty(shape, dtype, backend);
  if (out.size > 0) {
    backend.where(broadcastView(op, cond, shape), broadcastView(op, xa, shape), broadcastView(op, xb, shape), out.bufferFor(op));
  }
  if (!ta) xa.dispose();
  if (!tb) xb.dispose();
  for (const t of temps) t.dispose();
  return record(
    'where',
    [ta, tb].filter((t): t is Tensor => t !== null),
    out,
    { cond, aIsTensor: !!ta, bIsTensor: !!tb },
  );
}

/** x converted to dtype as a new contiguous tensor; no gradient recording. */
export function castKernel(x: Tensor, dtype: DType): Tensor {
  const backend = checkTensors('cast', x);
  checkDtype('cast', dtype);
  checkHeld('cast', dtype, backend);
  const out = empty(x.shape, dtype, backend);
  if (sizeOf(x.shape) > 0) {
    backend.copy(x.viewFor('cast'), { buffer: out.bufferFor('cast'), shape: x.shape, strides: contiguousStrides(x.shape), offset: 0 });
  }
  return out;
}

/**
 * Converts dtype as a new tensor: to a 16-bit float rounds to nearest even, float -> int32
 * truncates toward zero (core's edge-case rules). Between floating dtypes it is differentiable
 * (the gradient is converted back); to or from int32 it is not.
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  const out = castKernel(x, dtype);
  return isFloating(x.dtype) && isFloating(dtype) ? record('cast', [x], out) : out;
}

/** x in dtype: x itself when it already is, else cast(x, dtype). */
export function to(x: Tensor, dtype: DType): Tensor {
  checkTensors('to', x);
  return x.dtype === checkDtype('to', dtype) ? x : cast(x, dtype);
}
