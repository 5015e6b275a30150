/** WGSL building blocks shared by the kernels. */
import type { DType } from '@sparsegrad/core';
import type { BinaryOp, UnaryOp } from '@sparsegrad/core/backend';
import { LAYOUT } from './uniforms.ts';

export const wgslType = (d: DType) => (d === 'int32' ? 'i32' : 'f32');

/** Parameters arrive as 64 u32 words; floats are bitcast. */
export const PARAMS = /* wgsl */ `
@group(0) @binding(0) var<uniform> P: array<vec4<u32>, 16>;
fn p(i: u32) -> u32 { return P[i / 4u][i % 4u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(p(i)); }
fn pi(i: u32) -> i32 { return bitcast<i32>(p(i)); }
${
  /* wgsl */ `
// The edge-case rules of core's backend contract (backend.ts), shared by every kernel. NaN is
// tested on the bits: a compiler may assume x != x is false. Infinity comes from a private
// variable because a constant expression may not be infinite.
var<private> INF_BITS: u32 = 0x7f800000u;
fn posInf() -> f32 { return bitcast<f32>(INF_BITS); }
fn nanF() -> f32 { return bitcast<f32>(INF_BITS | 0x400000u); }
fn isNan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn nmax(a: f32, b: f32) -> f32 { return select(max(a, b), a + b, isNan(a) || isNan(b)); }
fn nmin(a: f32, b: f32) -> f32 { return select(min(a, b), a + b, isNan(a) || isNan(b)); }
// float -> int32 as JavaScript's ToInt32: NaN and infinities give 0, others truncate and wrap mod 2^32.
fn toI32(x: f32) -> i32 {
  let bits = bitcast<u32>(x);
  let e = (bits >> 23u) & 0xffu;
  if (e == 0xffu) { return 0; }
  if (e < 158u) { return i32(x); }
  let shift = e - 150u;
  let m = select(((bits & 0x7fffffu) | 0x800000u) << min(shift, 31u), 0u, shift >= 32u);
  return bitcast<i32>(select(m, 0u - m, (bits >> 31u) != 0u));
}
// int32 a^b: exact, wrapping mod 2^32; a negative exponent truncates a^b toward zero (0 unless |a| = 1).
fn ipow(a: i32, b: i32) -> i32 {
  if (b < 0) { return select(select(0, select(1, -1, (b & 1) != 0), a == -1), 1, a == 1); }
  var r = 1u; var base = bitcast<u32>(a); var e = u32(b);
  while (e != 0u) { if ((e & 1u) != 0u) { r *= base; } base *= base; e >>= 1u; }
  return bitcast<i32>(r);
}`
}`;

/**
 * The index flags of gather and scatter-add at `binding` (GpuContext.indexErrors): the first
 * invocation to find an index out of range records [op code, index, n]; the next read throws.
 */
export const INDEX_ERRORS = (binding: number) => /* wgsl */ `@group(0) @binding(${binding}) var<storage, read_write> E: array<atomic<i32>, 4>;
fn reportIndex(code: i32, k: i32, n: u32) {
  loop {
    let r = atomicCompareExchangeWeak(&E[0], 0, code);
    if (r.exchanged) { atomicStore(&E[1], k); atomicStore(&E[2], i32(n)); break; }
    if (r.old_value != 0) { break; }
  }
}`;

/** NaN-propagating subgroup max/min (subgroupMax alone may drop a NaN); for kernels that enable subgroups. */
export const SUBGROUP_NAN = /* wgsl */ `
fn sgMaxN(v: f32) -> f32 { return select(subgroupMax(v), nanF(), subgroupAny(isNan(v))); }
fn sgMinN(v: f32) -> f32 { return select(subgroupMin(v), nanF(), subgroupAny(isNan(v))); }`;

/**
 * viewOffsets(i): the offsets of element `i` (row-major over the layout block's shape) in its
 * views 0..k-1 (uniforms.ts's LAYOUT), the index decomposed into coordinates
 * once for all views: a u32 division per dim is what these memory-bound kernels spend their
 * instructions on.
 */
export function stridedOffsets(k: number): string {
  const views = Array.from({ length: k }, (_, j) => j);
  return /* wgsl */ `
fn viewOffsets(i: u32) -> array<u32, ${k}> {
  ${views.map((j) => `var o${j} = p(${LAYOUT.offset(j)}u);`).join(' ')}
  var rem = i;
  for (var d = i32(p(${LAYOUT.rank}u)) - 1; d >= 0; d--) {
    let dim = p(${LAYOUT.shape}u + u32(d));
    let c = rem % dim;
    rem /= dim;
    ${views.map((j) => `o${j} += c * p(${LAYOUT.stride(j)}u + u32(d));`).join(' ')}
  }
  return array<u32, ${k}>(${views.map((j) => `o${j}`).join(', ')});
}`;
}

export const ERF = /* wgsl */ `
fn erf1(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}
fn sigm(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }`;

const C = '0.7978845608028654';
export const UNARY_WGSL: Record<UnaryOp, string> = {
  neg: '-a',
  exp: 'exp(a)',
  log: 'log(a)',
  sqrt: 'sqrt(a)',
  abs: 'abs(a)',
  sign: 'sign(a)',
  // Overflow-safe forms (exp(large) = inf gives the right limits).
  tanh: '1.0 - 2.0 / (exp(2.0 * a) + 1.0)',
  sigmoid: 'sigm(a)',
  relu: 'select(0.0, a, a > 0.0 || isNan(a))',
  geluTanh: `a * sigm(2.0 * ${C} * (a + 0.044715 * a * a * a))`,
  geluErf: '0.5 * a * (1.0 + erf1(a * 0.7071067811865476))',
  geluTanhGrad: `gtg(a)`,
  geluErfGrad: '0.5 * (1.0 + erf1(a * 0.7071067811865476)) + a * 0.3989422804014327 * exp(-0.5 * a * a)',
};
export const GELU_TANH_GRAD = /* wgsl */ `
fn gtg(x: f32) -> f32 {
  let s = sigm(2.0 * ${C} * (x + 0.044715 * x * x * x));
  return s + x * 2.0 * s * (1.0 - s) * ${C} * (1.0 + 3.0 * 0.044715 * x * x);
}`;

export const BINARY_WGSL: Record<BinaryOp, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  pow: 'POW',
  maximum: 'nmax(a, b)',
  minimum: 'nmin(a, b)',
  eq: 'CMP(a == b)',
  ne: 'CMP(a != b)',
  lt: 'CMP(a < b)',
  le: 'CMP(a <= b)',
  gt: 'CMP(a > b)',
  ge: 'CMP(a >= b)',
  geluTanhBackward: 'b * gtg(a)',
  geluErfBackward: 'b * (0.5 * (1.0 + erf1(a * 0.7071067811865476)) + a * 0.3989422804014327 * exp(-0.5 * a * a))',
};

/** The counter-based generator of core's random.ts, bit for bit. */
export const RANDOM = /* wgsl */ `
fn fmix(h0: u32) -> u32 {
  var h = h0;
  h ^= h >> 16u; h *= 0x85ebca6bu; h ^= h >> 13u; h *= 0xc2b2ae35u; h ^= h >> 16u;
  return h;
}
fn bits(key: u32, i: u32) -> u32 { return fmix(fmix(i * 0x9e3779b1u + key) ^ key); }
fn uni(key: u32, i: u32) -> f32 { return f32(bits(key, i) >> 8u) * (1.0 / 16777216.0); }`;

/**
 * bfloat16 and float16 held as pairs in u32 words (element i in the low half of word i / 2 when i
 * is even, the high half when odd), converted with integer arithmetic so that every device gives
 * core's exact results (WGSL leaves the rounding of f32 -> f16 conversions and of pack2x16float to
 * the implementation, and needs no shader-f16 this way): decoding is exact, encoding rounds to
 * nearest even, float16 overflow gives infinity, NaN stays NaN. The same rules as core's half.ts.
 */
export const HALF_WGSL = /* wgsl */ `
fn fromBf16(h: u32) -> f32 { return bitcast<f32>(h << 16u); }
fn toBf16(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return (b >> 16u) | 0x40u; }
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}
fn fromF16(h: u32) -> f32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) { return bitcast<f32>(bitcast<u32>(f32(m) * 5.9604644775390625e-8) | s); }
  if (e == 31u) { return bitcast<f32>(s | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}
fn toF16(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let s = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return s | 0x7e00u | ((a >> 13u) & 0x3ffu); }
  if (a >= 0x477ff000u) { return s | 0x7c00u; }
  if (a < 0x38800000u) { return s | u32(round(abs(x) * 16777216.0)); }
  let r = a - 0x38000000u;
  return s | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
}`;
