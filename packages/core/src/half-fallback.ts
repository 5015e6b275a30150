/**
 * 16-bit floats on every kernel, once for all backends. A backend that holds bfloat16 or float16
 * implements their storage and casts (`copy`); any other kernel it does not name in `halfKernels`
 * is wrapped here: each 16-bit operand is widened into a float32 temporary, the float32 kernel
 * runs, and each 16-bit output is rounded from its float32 temporary. That is the arithmetic rule
 * of the 16-bit dtypes on every backend (compute in float32, round once at each store), so the
 * CPU backend, which has no 16-bit kernels at all, is their reference; a native kernel differs
 * only in the order of its float32 accumulation. The cost is two extra passes over the operands,
 * which is what a backend's native kernels are for.
 */
import {
  type AdamBuffers,
  flatView,
  type Backend,
  type BackendBuffer,
  type HalfDType,
  isHalf,
  type KernelName,
  type MatmulPrecision,
  type MatrixView,
  type View,
} from './backend.ts';

/** The precision of a product whose operands were bfloat16: 'medium' (exact on them), else as asked. */
const halfPrecision = (precision: MatmulPrecision, operand: BackendBuffer): MatmulPrecision => (operand.dtype === 'bfloat16' ? 'medium' : precision);

/** The float32 stand-ins of one kernel call's 16-bit buffers (other buffers stand for themselves). */
export interface Widened {
  /** A float32 copy of a 16-bit input (one per buffer and call). */
  in(b: BackendBuffer): BackendBuffer;
  /** A float32 temporary for a 16-bit output, rounded into it (its first `size` elements) after the call. */
  out(b: BackendBuffer, size?: number): BackendBuffer;
}
const direct: Widened = { in: (b) => b, out: (b) => b };

/**
 * Runs body on float32 stand-ins of its 16-bit buffers, on `inner`'s float32 kernels: the
 * fallback below, and what a backend's native 16-bit kernel calls for the cases it does not take
 * itself (e.g. CUDA's block-sparse products off Hopper or for other block sizes).
 */
export function widened(inner: Backend, body: (c: Widened) => void): void {
  const copies = new Map<BackendBuffer, BackendBuffer>();
  const outputs: [BackendBuffer, BackendBuffer, number][] = [];
  const temps: BackendBuffer[] = [];
  const temp = (size: number) => {
    const t = inner.alloc(size, 'float32');
    temps.push(t);
    return t;
  };
  const c: Widened = {
    in(b) {
      if (!isHalf(b.dtype)) return b;
      let t = copies.get(b);
      if (!t) {
        t = temp(b.size);
        inner.copy(flatView(b), flatView(t));
        copies.set(b, t);
      }
      return t;
    },
    out(b, size = b.size) {
      if (!isHalf(b.dtype)) return b;
      const t = temp(b.size);
      outputs.push([t, b, size]);
      return t;
    },
  };
  try {
    body(c);
    for (const [t, b, size] of outputs) if (size > 0) inner.copy(flatView(t, size), flatView(b, size));
  } finally {
    for (const t of temps) inner.free(t);
  }
}

/** `inner` with every kernel accepting the 16-bit dtypes it holds (see the file comment). */
export function withHalfFallback<B extends Backend>(inner: B): B {
  if (!inner.dtypes.some(isHalf)) return inner;
  const native = (kernel: KernelName, dtype: HalfDType) => inner.halfKernels?.[dtype]?.includes(kernel) ?? false;

  /** Runs body with the buffers it names widened where the kernel is not native for their dtype. */
  function call(kernel: KernelName, buffers: readonly (BackendBuffer | null)[], body: (c: Widened) => void): void {
    if (buffers.every((b) => !b || !isHalf(b.dtype) || native(kernel, b.dtype))) body(direct);
    else widened(inner, body);
  }
  const inView = (c: Widened, v: View): View => ({ ...v, buffer: c.in(v.buffer) });
  const inMatrix = (c: Widened, v: MatrixView): MatrixView => ({ ...v, buffer: c.in(v.buffer) });
  const views = (...xs: (View | number)[]) => xs.filter((x): x is View => typeof x !== 'number').map((v) => v.buffer);

  const wrapped: Partial<Backend> = {
    fill: (out, size, value) => call('fill', [out], (c) => inner.fill(c.out(out, size), size, value)),
    random: (out, size, spec) => call('random', [out], (c) => inner.random(c.out(out, size), size, spec)),
    unary: (op, x, out) => call('unary', [x.buffer, out], (c) => inner.unary(op, inView(c, x), c.out(out))),
    binary: (op, a, b, out) =>
      call('binary', [...views(a, b), out], (c) =>
        inner.binary(op, typeof a === 'number' ? a : inView(c, a), typeof b === 'number' ? b : inView(c, b), c.out(out)),
      ),
    where: (cond, a, b, out) =>
      call('where', [cond.buffer, a.buffer, b.buffer, out], (c) => inner.where(inView(c, cond), inView(c, a), inView(c, b), c.out(out))),
    reduce: (op, x, outer, n, inner_, out) => call('reduce', [x, out], (c) => inner.reduce(op, c.in(x), outer, n, inner_, c.out(out))),
    matmul: (a, b, out, batch, m, n, k, precision) =>
      call('matmul', [a.buffer, b.buffer, out], (c) => inner.matmul(inMatrix(c, a), inMatrix(c, b), c.out(out), batch, m, n, k, precision)),
    // bfloat16 operands widen exactly into BF16 tensor cores' inputs: 'medium' multiplies them as
    // they are with float32 accumulation (the contract for 16-bit products), on the faster kernels.
    bsrMatmul: (x, blocks, layout, m, out, precision) =>
      call('bsrMatmul', [x, blocks, out], (c) => inner.bsrMatmul(c.in(x), c.in(blocks), layout, m, c.out(out), halfPrecision(precision, x))),
    bsrMatmulGradInput: (dy, blocks, layout, m, out, precision) =>
      call('bsrMatmulGradInput', [dy, blocks, out], (c) =>
        inner.bsrMatmulGradInput(c.in(dy), c.in(blocks), layout, m, c.out(out), halfPrecision(precision, dy)),
      ),
    bsrSddmm: (dy, x, layout, m, out, precision) =>
      call('bsrSddmm', [dy, x, out], (c) => inner.bsrSddmm(c.in(dy), c.in(x), layout, m, c.out(out), halfPrecision(precision, x))),
    gather: (x, idx, outer, n, inner_, count, out) => call('gather', [x, out], (c) => inner.gather(c.in(x), idx, outer, n, inner_, count, c.out(out))),
    scatterAdd: (src, idx, outer, n, inner_, count, out) =>
      call('scatterAdd', [src, out], (c) => inner.scatterAdd(c.in(src), idx, outer, n, inner_, count, c.out(out))),
    softmax: (x, rows, n, log, causal, out) => call('softmax', [x, out], (c) => inner.softmax(c.in(x), rows, n, log, causal, c.out(out))),
    softmaxBackward: (y, dy, rows, n, log, out) =>
      call('softmaxBackward', [y, dy, out], (c) => inner.softmaxBackward(c.in(y), c.in(dy), rows, n, log, c.out(out))),
    layerNorm: (x, gamma, beta, rows, n, eps, out, mean, rstd) =>
      call('layerNorm', [x, gamma, beta, out, mean, rstd], (c) =>
        inner.layerNorm(c.in(x), gamma && c.in(gamma), beta && c.in(beta), rows, n, eps, c.out(out), c.out(mean), c.out(rstd)),
      ),
    layerNormBackward: (x, gamma, mean, rstd, dy, rows, n, dx, dgamma, dbeta) =>
      call('layerNormBackward', [x, gamma, mean, rstd, dy, dx, dgamma, dbeta], (c) =>
        inner.layerNormBackward(
          c.in(x),
          gamma && c.in(gamma),
          c.in(mean),
          c.in(rstd),
          c.in(dy),
          rows,
          n,
          c.out(dx),
          dgamma && c.out(dgamma),
          dbeta && c.out(dbeta),
        ),
      ),
    adamStep: (params, spec) =>
      call(
        'adamStep',
        params.flatMap((p) => [p.p, p.g, p.m, p.v, p.pOut, p.mOut, p.vOut]),
        (c) =>
          inner.adamStep(
            params.map(
              (p): AdamBuffers => ({
                p: c.in(p.p),
                g: c.in(p.g),
                m: c.in(p.m),
                v: c.in(p.v),
                size: p.size,
                pOut: c.out(p.pOut, p.size),
                mOut: c.out(p.mOut, p.size),
                vOut: c.out(p.vOut, p.size),
              }),
            ),
            spec,
          ),
      ),
    sumOfSquares: (xs, sizes, out) => call('sumOfSquares', [...xs, out], (c) => inner.sumOfSquares(xs.map(c.in), sizes, c.out(out, 1))),
    scaleBuffers: (xs, sizes, factor, outs) =>
      call('scaleBuffers', [...xs, factor, ...outs], (c) =>
        inner.scaleBuffers(
          xs.map(c.in),
          sizes,
          c.in(factor),
          outs.map((o, i) => c.out(o, sizes[i])),
        ),
      ),
  };
  // The wrapper inherits everything else (storage, copy, a backend's own extras) from inner.
  return Object.assign(Object.create(inner) as B, wrapped);
}
