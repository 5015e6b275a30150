/**
 * Automatic mixed precision, as torch.autocast: inside `autocast('bfloat16', fn)` the products
 * (matmul, linear, the block-sparse product, attention) run in the 16-bit dtype, with float32
 * accumulation, and the ops that need range or precision (softmax, log-softmax, layer norm, the
 * losses, sum and mean, exp, log, pow) run in float32; every other op runs in the dtype of its
 * operands (promoted as promoteTypes says). Operands are converted by differentiable casts, so
 * float32 parameters stay float32 masters and receive float32 gradients. The policy is applied
 * where each op begins (its entry in ops/), once for every backend.
 */
import { DTYPES, type HalfDType, isFloating, isHalf } from './backend.ts';
import { engine } from './engine.ts';
import { opError } from './errors.ts';
import { to } from './ops/elementwise.ts';
import type { Tensor } from './tensor.ts';

/**
 * Runs fn with autocast to `dtype` ('bfloat16' or 'float16'), or without autocast (false) inside an
 * autocast region; restores the previous setting when fn returns. fn must be synchronous.
 */
export function autocast<T>(dtype: HalfDType | false, fn: () => T): T {
  if (dtype !== false && !isHalf(dtype)) {
    throw opError('autocast', `dtype must be 'bfloat16', 'float16' or false, got ${DTYPES.includes(dtype) ? `'${dtype}'` : String(dtype)}`);
  }
  const prev = engine.autocast;
  engine.autocast = dtype || null;
  try {
    const result = fn();
    if (result instanceof Promise) throw opError('autocast', 'the function returned a Promise; autocast regions must be synchronous');
    return result;
  } finally {
    engine.autocast = prev;
  }
}

/** The dtype autocast converts products to here, or null outside autocast. */
export function autocastDtype(): HalfDType | null {
  return engine.autocast;
}

/** Under autocast: the floating operands of a product in the autocast dtype (unchanged otherwise). */
export function lowPrecision<T extends (Tensor | null | undefined)[]>(...ts: T): T {
  const dtype = engine.autocast;
  if (!dtype) return ts;
  return ts.map((t) => (t && isFloating(t.dtype) ? to(t, dtype) : t)) as T;
}

/** Under autocast: 16-bit operands of an op that runs in float32 converted to float32 (unchanged otherwise). */
export function fullPrecision<T extends (Tensor | null | undefined)[]>(...ts: T): T {
  if (!engine.autocast) return ts;
  return ts.map((t) => (t && isHalf(t.dtype) ? to(t, 'float32') : t)) as T;
}
