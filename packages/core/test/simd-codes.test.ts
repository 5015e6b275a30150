/**
 * The CPU backend's SIMD op codes (src/cpu/simd.ts) against the constants of the WebAssembly
 * kernels (assembly/elementwise.ts), by name: geluTanhGrad is GELU_TANH_GRAD there.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BINARY_CODES, UNARY_CODES } from '../src/cpu/simd.ts';

const source = readFileSync(join(import.meta.dirname, '..', 'assembly', 'elementwise.ts'), 'utf8');
const constants = new Map([...source.matchAll(/\b([A-Z][A-Z_]*) = (\d+)\b/g)].map((m) => [m[1], Number(m[2])]));
const constantName = (op: string) => op.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();

test('every SIMD op code of the host is the assembly constant of the same name', () => {
  for (const [op, code] of [...Object.entries(UNARY_CODES), ...Object.entries(BINARY_CODES)]) {
    assert.is(constants.get(constantName(op)), code, `${op} (${constantName(op)})`);
  }
  assert.ok(Object.keys(UNARY_CODES).length >= 7 && Object.keys(BINARY_CODES).length >= 6);
});

test.run();
