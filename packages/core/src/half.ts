/**
 * 16-bit floats as stored in files and on GPUs: bfloat16 (float32's top 16 bits: 8 exponent bits,
 * 7 mantissa bits) and IEEE float16 (5 exponent bits, 10 mantissa bits). Conversions from float32
 * round to nearest, ties to even, as PyTorch's `.to(torch.bfloat16)` / `.half()` do; NaN stays NaN
 * (quiet, sign kept), infinities stay infinite, float16 overflow becomes infinity and its
 * subnormals are exact.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bfloat16 bits of a number (first rounded to float32, as every value held is one). */
export function toBfloat16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  // NaN: keep the sign, force a quiet NaN.
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40;
  // Add half an ulp of bfloat16 (minus one when the kept bit is even, for ties to even).
  return (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
}

/** The value of bfloat16 bits (exact). */
export function fromBfloat16Bits(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/** The IEEE float16 bits of a number (first rounded to float32). */
export function toFloat16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const abs = bits & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00 | ((abs >>> 13) & 0x3ff); // NaN (quiet)
  if (abs >= 0x477ff000) return sign | 0x7c00; // past 65504 by half an ulp or more, and infinity: infinite
  if (abs < 0x38800000) {
    // Below float16's smallest normal (2^-14): a subnormal m x 2^-24, m rounded to nearest even
    // (m is exact: the float32 value scaled by a power of two).
    const m = Math.abs(f32[0]) * 2 ** 24;
    const r = Math.round(m);
    return sign | (m - Math.floor(m) === 0.5 && r % 2 === 1 ? r - 1 : r);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 23-bit mantissa to 10 bits; a carry
  // out of the mantissa correctly bumps the exponent.
  const rebiased = abs - 0x38000000;
  return sign | ((rebiased + 0xfff + ((rebiased >>> 13) & 1)) >>> 13);
}

/** The value of IEEE float16 bits (exact). */
export function fromFloat16Bits(bits: number): number {
  const h = bits & 0xffff;
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** The bfloat16 bits of each float32, rounded to nearest even. */
export function float32ToBfloat16(x: ArrayLike<number>): Uint16Array {
  return Uint16Array.from({ length: x.length }, (_, i) => toBfloat16Bits(x[i]));
}

/** float32 values of bfloat16 bits (exact). */
export function bfloat16ToFloat32(bits: ArrayLike<number>): Float32Array {
  const out = new Float32Array(bits.length);
  const view = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) view[i] = (bits[i] & 0xffff) << 16;
  return out;
}

/** The IEEE float16 bits of each float32, rounded to nearest even. */
export function float32ToFloat16(x: ArrayLike<number>): Uint16Array {
  return Uint16Array.from({ length: x.length }, (_, i) => toFloat16Bits(x[i]));
}

/** float32 values of IEEE float16 bits (exact). */
export function float16ToFloat32(bits: ArrayLike<number>): Float32Array {
  return Float32Array.from({ length: bits.length }, (_, i) => fromFloat16Bits(bits[i]));
}

/** A number rounded to a floating dtype as stored (float32, bfloat16 or float16). */
export function roundTo(dtype: 'float32' | 'bfloat16' | 'float16', x: number): number {
  if (dtype === 'bfloat16') return fromBfloat16Bits(toBfloat16Bits(x));
  if (dtype === 'float16') return fromFloat16Bits(toFloat16Bits(x));
  return Math.fround(x);
}
