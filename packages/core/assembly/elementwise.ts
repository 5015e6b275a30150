// SIMD elementwise and row kernels of the CPU backend over contiguous float32 runs (compiled
// together with gemm.ts). Transcendentals use a Cephes-style expf: |relative error| ~ 1 ulp.

const LOG2E: f32 = 1.44269504088896341;
const LN2_HI: f32 = 0.693359375;
const LN2_LO: f32 = -2.12194440e-4;
const EXP_HI: f32 = 88.3762626647949;
const EXP_LO: f32 = -87.3365447504; // below this expf underflows to (sub)normal range: return 0
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_C: f32 = 0.044715;

// @ts-ignore: decorator
@inline function splat(x: f32): v128 {
  return f32x4.splat(x);
}

/** e^x for four lanes. */
// @ts-ignore: decorator
@inline function exp4(x: v128): v128 {
  const big = f32x4.gt(x, splat(EXP_HI));
  const small = f32x4.lt(x, splat(EXP_LO));
  const xc = f32x4.max(f32x4.min(x, splat(EXP_HI)), splat(EXP_LO));
  const n = f32x4.nearest(f32x4.mul(xc, splat(LOG2E)));
  let r = f32x4.sub(xc, f32x4.mul(n, splat(LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, splat(LN2_LO)));
  let p = splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), splat(1));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  let y = f32x4.mul(p, scale);
  y = v128.bitselect(splat(Infinity), y, big);
  y = v128.bitselect(splat(0), y, small);
  // NaN in, NaN out (the clamps above would have turned it into a number).
  return v128.bitselect(x, y, f32x4.ne(x, x));
}

// @ts-ignore: decorator
@inline function sigmoid4(x: v128): v128 {
  return f32x4.div(splat(1), f32x4.add(splat(1), exp4(f32x4.neg(x))));
}

/** Unary op codes shared with the host (cpu/simd.ts; test/simd-codes.test.ts checks them by name). */
const EXP = 0, SIGMOID = 1, TANH = 2, GELU_TANH = 3, GELU_TANH_GRAD = 4, RELU = 5, NEG = 6;

// @ts-ignore: decorator
@inline function unary4(op: i32, x: v128): v128 {
  switch (op) {
    case EXP: return exp4(x);
    case SIGMOID: return sigmoid4(x);
    case TANH: return f32x4.sub(f32x4.mul(splat(2), sigmoid4(f32x4.mul(splat(2), x))), splat(1));
    case GELU_TANH: {
      const u = f32x4.mul(splat(SQRT_2_OVER_PI), f32x4.add(x, f32x4.mul(splat(GELU_C), f32x4.mul(x, f32x4.mul(x, x)))));
      return f32x4.mul(x, sigmoid4(f32x4.mul(splat(2), u)));
    }
    case GELU_TANH_GRAD: {
      const x2 = f32x4.mul(x, x);
      const u = f32x4.mul(splat(SQRT_2_OVER_PI), f32x4.add(x, f32x4.mul(splat(GELU_C), f32x4.mul(x, x2))));
      const s = sigmoid4(f32x4.mul(splat(2), u));
      const du = f32x4.mul(splat(SQRT_2_OVER_PI), f32x4.add(splat(1), f32x4.mul(splat(3 * GELU_C), x2)));
      return f32x4.add(s, f32x4.mul(f32x4.mul(x, f32x4.mul(splat(2), f32x4.mul(s, f32x4.sub(splat(1), s)))), du));
    }
    case RELU: return f32x4.max(x, splat(0));
    default: return f32x4.neg(x);
  }
}

/** out[i] = op(x[i]) for n contiguous floats. */
export function unary(op: i32, x: usize, out: usize, n: i32): void {
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) v128.store(out + (<usize>i << 2), unary4(op, v128.load(x + (<usize>i << 2))));
  for (let i = n4; i < n; i++) {
    store<f32>(out + (<usize>i << 2), f32x4.extract_lane(unary4(op, splat(load<f32>(x + (<usize>i << 2)))), 0));
  }
}

/** Binary op codes shared with the host (cpu/simd.ts; test/simd-codes.test.ts checks them by name). */
const ADD = 0, SUB = 1, MUL = 2, DIV = 3, MAXIMUM = 4, MINIMUM = 5;

// @ts-ignore: decorator
@inline function binary4(op: i32, a: v128, b: v128): v128 {
  switch (op) {
    case ADD: return f32x4.add(a, b);
    case SUB: return f32x4.sub(a, b);
    case MUL: return f32x4.mul(a, b);
    case DIV: return f32x4.div(a, b);
    case MAXIMUM: return f32x4.max(a, b);
    default: return f32x4.min(a, b); // MINIMUM
  }
}

/**
 * out[i] = op(a[i], b[i]) over n contiguous floats. A zero pointer means that operand is the
 * scalar given instead (the host never allocates at address 0).
 */
export function binary(op: i32, a: usize, aScalar: f32, b: usize, bScalar: f32, out: usize, n: i32): void {
  const n4 = n & ~3;
  const sa = splat(aScalar);
  const sb = splat(bScalar);
  for (let i = 0; i < n4; i += 4) {
    const off = <usize>i << 2;
    const va = a ? v128.load(a + off) : sa;
    const vb = b ? v128.load(b + off) : sb;
    v128.store(out + off, binary4(op, va, vb));
  }
  for (let i = n4; i < n; i++) {
    const off = <usize>i << 2;
    const va = a ? splat(load<f32>(a + off)) : sa;
    const vb = b ? splat(load<f32>(b + off)) : sb;
    store<f32>(out + off, f32x4.extract_lane(binary4(op, va, vb), 0));
  }
}

// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}
// @ts-ignore: decorator
@inline function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/**
 * Row softmax (or log-softmax) of a contiguous [rows, n]. Causal (softmax only): the rows are those
 * of square [n, n] matrices, and row i keeps columns 0..i (the others come out 0).
 */
export function softmax(x: usize, out: usize, rows: i32, n: i32, log: bool, causal: bool): void {
  for (let r = 0; r < rows; r++) {
    const len = causal ? (r % n) + 1 : n;
    const n4 = len & ~3;
    const xr = x + ((<usize>r * n) << 2);
    const orow = out + ((<usize>r * n) << 2);
    let vm = splat(-Infinity);
    for (let i = 0; i < n4; i += 4) vm = f32x4.max(vm, v128.load(xr + (<usize>i << 2)));
    let m = hmax(vm);
    for (let i = n4; i < len; i++) m = max(m, load<f32>(xr + (<usize>i << 2)));
    const sm = splat(m);
    let vs = splat(0);
    let s: f32 = 0;
    for (let i = 0; i < n4; i += 4) {
      const e = exp4(f32x4.sub(v128.load(xr + (<usize>i << 2)), sm));
      if (!log) v128.store(orow + (<usize>i << 2), e);
      vs = f32x4.add(vs, e);
    }
    for (let i = n4; i < len; i++) {
      const e = f32x4.extract_lane(exp4(splat(load<f32>(xr + (<usize>i << 2)) - m)), 0);
      if (!log) store<f32>(orow + (<usize>i << 2), e);
      s += e;
    }
    s += hsum(vs);
    if (log) {
      const lse = splat(m + Mathf.log(s));
      for (let i = 0; i < n4; i += 4) v128.store(orow + (<usize>i << 2), f32x4.sub(v128.load(xr + (<usize>i << 2)), lse));
      for (let i = n4; i < len; i++) store<f32>(orow + (<usize>i << 2), load<f32>(xr + (<usize>i << 2)) - f32x4.extract_lane(lse, 0));
    } else {
      const inv = splat(1 / s);
      for (let i = 0; i < n4; i += 4) v128.store(orow + (<usize>i << 2), f32x4.mul(v128.load(orow + (<usize>i << 2)), inv));
      for (let i = n4; i < len; i++) store<f32>(orow + (<usize>i << 2), load<f32>(orow + (<usize>i << 2)) / s);
    }
    for (let i = len; i < n; i++) store<f32>(orow + (<usize>i << 2), 0);
  }
}

/** Backward of softmax (y = softmax) or log-softmax (y = log-softmax) rows. */
export function softmaxBackward(y: usize, dy: usize, out: usize, rows: i32, n: i32, log: bool): void {
  const n4 = n & ~3;
  for (let r = 0; r < rows; r++) {
    const off = (<usize>r * n) << 2;
    let vs = splat(0);
    let s: f32 = 0;
    for (let i = 0; i < n4; i += 4) {
      const d = v128.load(dy + off + (<usize>i << 2));
      vs = f32x4.add(vs, log ? d : f32x4.mul(d, v128.load(y + off + (<usize>i << 2))));
    }
    for (let i = n4; i < n; i++) {
      const d = load<f32>(dy + off + (<usize>i << 2));
      s += log ? d : d * load<f32>(y + off + (<usize>i << 2));
    }
    s += hsum(vs);
    const ss = splat(s);
    for (let i = 0; i < n4; i += 4) {
      const p = off + (<usize>i << 2);
      const yv = v128.load(y + p);
      const d = v128.load(dy + p);
      // log: dx = dy - exp(y) * sum(dy); softmax: dx = y * (dy - sum(dy * y))
      v128.store(out + p, log ? f32x4.sub(d, f32x4.mul(exp4(yv), ss)) : f32x4.mul(yv, f32x4.sub(d, ss)));
    }
    for (let i = n4; i < n; i++) {
      const p = off + (<usize>i << 2);
      const yv = load<f32>(y + p);
      const d = load<f32>(dy + p);
      store<f32>(out + p, log ? d - f32x4.extract_lane(exp4(splat(yv)), 0) * s : yv * (d - s));
    }
  }
}

/**
 * One Adam(W) step (see Backend.adamStep): g' = g + coupled * p; m' = b1 m + (1 - b1) g';
 * v' = b2 v + (1 - b2) g'^2; p' = shrink * p - step * m' / (sqrt(v' / bc2) + eps).
 */
export function adamStep(p: usize, g: usize, m: usize, v: usize, n: i32, coupled: f32, shrink: f32, b1: f32, b2: f32,
  step: f32, bc2: f32, eps: f32, pOut: usize, mOut: usize, vOut: usize): void {
  const n4 = n & ~3;
  const c = splat(coupled);
  const sh = splat(shrink);
  const vb1 = splat(b1);
  const vb1c = splat(1 - b1);
  const vb2 = splat(b2);
  const vb2c = splat(1 - b2);
  const st = splat(step);
  const rbc2 = splat(1 / bc2);
  const ve = splat(eps);
  for (let i = 0; i < n4; i += 4) {
    const o = <usize>i << 2;
    const pv = v128.load(p + o);
    const gv = f32x4.add(v128.load(g + o), f32x4.mul(c, pv));
    const mv = f32x4.add(f32x4.mul(vb1, v128.load(m + o)), f32x4.mul(vb1c, gv));
    const vv = f32x4.add(f32x4.mul(vb2, v128.load(v + o)), f32x4.mul(vb2c, f32x4.mul(gv, gv)));
    v128.store(mOut + o, mv);
    v128.store(vOut + o, vv);
    const denom = f32x4.add(f32x4.sqrt(f32x4.mul(vv, rbc2)), ve);
    v128.store(pOut + o, f32x4.sub(f32x4.mul(sh, pv), f32x4.div(f32x4.mul(st, mv), denom)));
  }
  for (let i = n4; i < n; i++) {
    const o = <usize>i << 2;
    const pv = load<f32>(p + o);
    const gv = load<f32>(g + o) + coupled * pv;
    const mv = b1 * load<f32>(m + o) + (1 - b1) * gv;
    const vv = b2 * load<f32>(v + o) + (1 - b2) * gv * gv;
    store<f32>(mOut + o, mv);
    store<f32>(vOut + o, vv);
    store<f32>(pOut + o, shrink * pv - (step * mv) / (Mathf.sqrt(vv / bc2) + eps));
  }
}
