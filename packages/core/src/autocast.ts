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
  const [prev, prevCasts] = [engine.autocast, engine.autocastCasts];
  engine.autocast = dtype || null;
  engine.autocastCasts = dtype ? new WeakMap() : null;
  try {
    const result = fn();
    if (result instanceof Promise) throw opError('autocast', 'the function returned a Promise; autocast regions must be synchronous');
    return result;
  } finally {
    engine.autocast = prev;
    engine.autocastCasts = prevCasts;
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
  return ts.map((t) => (t && isFloating(t.dtype) ? castOnce(t, dtype) : t)) as T;
}

/**
 * t in `dtype`, cast once per autocast region for an op's output: the query, key and value
 * projections of one layer-norm output read one cast, not three (and backward converts one
 * gradient, summed in the 16-bit dtype, as the compiled PyTorch graph's one cast does). Leaves
 * (parameters) are cast at every use, as torch.autocast does for tensors it does not cache: an
 * optimizer step may update them in place between two uses, an op output is never written again.
 * A cast is reused only while it is alive and t still has the storage it was cast from.
 */
function castOnce(t: Tensor, dtype: HalfDType): Tensor {
  const casts = engine.autocastCasts;
  if (t.dtype === dtype || !casts || t.isLeaf) return to(t, dtype);
  const from = t.storageFor('autocast').serial;
  const hit = casts.get(t);
  if (hit && !hit.cast.isDisposed && hit.from === from) return hit.cast;
  const cast = to(t, dtype);
  casts.set(t, { cast, from });
  return cast;
}

/** Under autocast: 16-bit operands of an op that runs in float32 converted to float32 (unchanged otherwise). */
export function fullPrecision<T extends (Tensor | null | undefined)[]>(...ts: T): T {
  if (!engine.autocast) return ts;
  return ts.map((t) => (t && isHalf(t.dtype) ? to(t, 'float32') : t)) as T;
}
