import { type Backend, type DType, isFloating } from '../backend.ts';
import { opError } from '../errors.ts';
import { Tensor } from '../tensor.ts';
import { castKernel } from './elementwise.ts';

/** Checks that every argument is a live Tensor and all live on one backend; returns that backend. */
export function checkTensors(op: string, ...ts: Tensor[]): Backend {
  let backend: Backend | null = null;
  for (const t of ts) {
    if (!(t instanceof Tensor)) throw opError(op, `expected a Tensor, got ${t === null ? 'null' : typeof t}`);
    t.storageFor(op);
    if (backend && t.backend !== backend) {
      throw opError(op, `tensors live on different backends (${backend.name} and ${t.backend.name}); move them to one backend first`);
    }
    backend = t.backend;
  }
  return backend!;
}

/** Throws unless t has a floating dtype (float32, bfloat16 or float16). */
export function checkFloat(op: string, t: Tensor): void {
  if (!isFloating(t.dtype)) throw opError(op, `expected a floating-point tensor (float32, bfloat16 or float16), got ${t.dtype}`);
}

/**
 * The tensors in their common floating dtype (PyTorch's promotion: float32 unless all share one
 * 16-bit dtype), as the kernels of one op expect them; `temps` collects the conversions made,
 * for the caller to dispose. No gradient recording.
 */
export function inCommonDtype<T extends Tensor | null>(ts: readonly T[], temps: Tensor[]): T[] {
  const dtype = commonDtype(ts);
  return ts.map((t) => (t === null ? t : (inDtype(t, dtype, temps) as T)));
}

/** t in `dtype` for a kernel's operand (t itself when it already is); `temps` collects the conversion made. */
export function inDtype(t: Tensor, dtype: DType, temps: Tensor[]): Tensor {
  if (t.dtype === dtype) return t;
  const c = castKernel(t, dtype);
  temps.push(c);
  return c;
}

function commonDtype(ts: readonly (Tensor | null | undefined)[]): DType {
  const dtypes = new Set(ts.filter((t): t is Tensor => !!t).map((t) => t.dtype));
  return dtypes.size === 1 ? [...dtypes][0] : 'float32';
}

export function checkNumber(op: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw opError(op, `${name} must be a number, got ${String(v)}`);
  return v;
}
