/**
 * bfloat16 and float16 conversions against a reference written another way: the value of every
 * 16-bit pattern computed from its fields in float64, and float32 -> 16-bit rounding as "the
 * nearest of the two neighbouring representable values, ties to the even pattern", found by search.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from '@sparsegrad/core';
import { randomArray } from './helpers.ts';

/** The value of a 16-bit pattern with `e` exponent bits from its sign, exponent and mantissa. */
function value(h: number, e: number): number {
  const m = 15 - e;
  const bias = 2 ** (e - 1) - 1;
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> m) & (2 ** e - 1);
  const man = h & (2 ** m - 1);
  if (exp === 2 ** e - 1) return man ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  if (exp === 0) return sign * man * 2 ** (1 - bias - m);
  return sign * (1 + man / 2 ** m) * 2 ** (exp - bias);
}

/** Round-to-nearest-even by search over the sorted finite patterns of one sign (and overflow as IEEE says). */
function nearest(x: number, e: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const maxExp = (2 ** e - 1) << (15 - e); // the infinity pattern
  let lo = 0;
  let hi = maxExp; // patterns below hi are finite; value(hi) is infinity
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (value(mid, e) <= a) lo = mid;
    else hi = mid;
  }
  const vlo = value(lo, e);
  if (vlo === a) return sign | lo;
  // The next value above the largest finite one, for overflow: max + one ulp.
  const vhi = hi === maxExp ? 2 * value(lo, e) - value(lo - 1, e) : value(hi, e);
  const pick = a - vlo < vhi - a ? lo : a - vlo > vhi - a ? hi : lo % 2 === 0 ? lo : hi;
  return sign | pick;
}

test('every 16-bit pattern converts to its exact float32 value (bfloat16 and float16)', () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const bf = bfloat16ToFloat32(all);
  const hf = float16ToFloat32(all);
  for (let h = 0; h < 65536; h++) {
    const [b, f] = [value(h, 8), value(h, 5)];
    assert.ok(Number.isNaN(b) ? Number.isNaN(bf[h]) : Object.is(bf[h], b), `bfloat16 0x${h.toString(16)}: ${bf[h]} vs ${b}`);
    assert.ok(Number.isNaN(f) ? Number.isNaN(hf[h]) : Object.is(hf[h], f), `float16 0x${h.toString(16)}: ${hf[h]} vs ${f}`);
  }
});

test('every finite or infinite pattern survives a round trip, and float32 values round to nearest even', () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i).filter((h) => !Number.isNaN(value(h, 8)));
  assert.equal([...float32ToBfloat16(bfloat16ToFloat32(all))], [...all]);
  const halves = Uint16Array.from({ length: 65536 }, (_, i) => i).filter((h) => !Number.isNaN(value(h, 5)));
  assert.equal([...float32ToFloat16(float16ToFloat32(halves))], [...halves]);
  // Random float32 values over the whole range of each format, ties and boundaries included.
  const xs = Float32Array.from(randomArray(20000, 7), (v, i) => v * 2 ** ((i % 80) - 40));
  const edges = [
    0,
    -0,
    1 / 3,
    1 + 2 ** -8,
    1 + 3 * 2 ** -8,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    65504,
    65519.99,
    65520,
    1e5,
    2 ** -14,
    2 ** -24,
    2 ** -25,
    3 * 2 ** -25,
    2 ** -26,
    1e-30,
    3.4e38,
  ];
  const all32 = Float32Array.from([...xs, ...edges, ...edges.map((v) => -v), Infinity, -Infinity]);
  const bf = float32ToBfloat16(all32);
  const hf = float32ToFloat16(all32);
  for (let i = 0; i < all32.length; i++) {
    assert.is(bf[i], nearest(all32[i], 8), `bfloat16 of ${all32[i]}`);
    assert.is(hf[i], nearest(all32[i], 5), `float16 of ${all32[i]}`);
  }
});

test('NaN stays NaN with its sign; overflow is infinite; the documented boundaries', () => {
  const [bnan, bneg] = float32ToBfloat16([Number.NaN, -Number.NaN]);
  assert.ok(Number.isNaN(bfloat16ToFloat32([bnan])[0]) && (bnan & 0x40) !== 0);
  assert.is(float32ToBfloat16(new Float32Array(new Uint32Array([0xffc00001]).buffer))[0] >> 15, 1, 'negative NaN keeps its sign');
  assert.ok(Number.isNaN(bfloat16ToFloat32([bneg])[0]));
  const nanBits = new Float32Array(new Uint32Array([0x7f800001]).buffer); // a signalling NaN with its payload in the low bits
  assert.ok(Number.isNaN(bfloat16ToFloat32(float32ToBfloat16(nanBits))[0]), 'a NaN whose payload bfloat16 drops is still NaN');
  assert.ok(Number.isNaN(float16ToFloat32(float32ToFloat16(nanBits))[0]));
  assert.equal([...float16ToFloat32(float32ToFloat16([65504, 65519, 65520, -1e6, 2 ** -25, 3 * 2 ** -25]))], [65504, 65504, Infinity, -Infinity, 0, 2 ** -23]);
  assert.equal([...bfloat16ToFloat32(float32ToBfloat16([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4028234663852886e38]))], [1, 1, 1 + 2 ** -6, Infinity]);
});

test.run();
