import type { BinaryOp, DType, StorageArray, TypedArray, UnaryOp, View } from '../backend.ts';
import { fromBfloat16Bits, fromFloat16Bits, toBfloat16Bits, toFloat16Bits } from '../half.ts';
import { contiguousStrides } from '../shape.ts';
import { collapse, forEachRun } from './strided.ts';
import * as M from './math.ts';

/**
 * Elementwise loops are generated once per op from an expression, so each op gets its own
 * monomorphic loop that V8 optimises fully (a shared loop calling a function per element is
 * several times slower). `a`, `b`, `c` are the operand values; `M` holds the math helpers.
 */
const UNARY: Record<UnaryOp, string> = {
  neg: '-a',
  exp: 'Math.exp(a)',
  log: 'Math.log(a)',
  sqrt: 'Math.sqrt(a)',
  abs: 'Math.abs(a)',
  sign: 'Math.sign(a)',
  tanh: 'Math.tanh(a)',
  sigmoid: '1 / (1 + Math.exp(-a))',
  relu: 'a > 0 ? a : (a === a ? 0 : a)',
  geluTanh: 'M.geluTanh(a)',
  geluErf: 'M.geluErf(a)',
  geluTanhGrad: 'M.geluTanhGrad(a)',
  geluErfGrad: 'M.geluErfGrad(a)',
};

const BINARY: Record<BinaryOp, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  pow: 'Math.pow(a, b)',
  // NaN propagates, as in PyTorch.
  maximum: 'a > b ? a : (a === a ? b : a)',
  minimum: 'a < b ? a : (a === a ? b : a)',
  eq: 'a === b ? 1 : 0',
  ne: 'a !== b ? 1 : 0',
  lt: 'a < b ? 1 : 0',
  le: 'a <= b ? 1 : 0',
  gt: 'a > b ? 1 : 0',
  ge: 'a >= b ? 1 : 0',
  geluTanhBackward: 'b * M.geluTanhGrad(a)',
  geluErfBackward: 'b * M.geluErfGrad(a)',
};

/**
 * int32 results where computing in doubles and storing through ToInt32 would differ from exact
 * integer arithmetic (core's edge-case rules): products beyond 2^53 lose low bits, so multiply
 * and power wrap exactly.
 */
const INT_BINARY: Partial<Record<BinaryOp, string>> = {
  mul: 'Math.imul(a, b)',
  pow: 'M.ipow(a, b)',
};

type Loop = (out: TypedArray, o: number, n: number, x: (TypedArray | number)[], starts: number[], inner: number[]) => void;
const loops = new Map<string, Loop>();

/**
 * `kinds` has one letter per operand: 'v' (strided view) or 's' (scalar, passed as a number so
 * that the array reads in the loop stay monomorphic typed-array accesses).
 */
function loopFor(name: string, kinds: string, expr: string): Loop {
  const key = `${name}_${kinds}`;
  let f = loops.get(key);
  if (!f) {
    const names = ['a', 'b', 'c'].slice(0, kinds.length);
    const decl = names
      .map((v, k) => (kinds[k] === 's' ? `const ${v} = x[${k}];` : `const X${k} = x[${k}], s${k} = starts[${k + 1}], d${k} = inner[${k + 1}];`))
      .join(' ');
    const loads = names.map((v, k) => (kinds[k] === 's' ? '' : `const ${v} = X${k}[s${k} + i * d${k}];`)).join(' ');
    const body = `${decl} for (let i = 0; i < n; i++) { ${loads} out[o + i] = ${expr}; }`;
    f = new Function('M', `return function ${key}(out, o, n, x, starts, inner) { ${body} }`)(M) as Loop;
    loops.set(key, f);
  }
  return f;
}

type Operand = { data: TypedArray | number; offset: number; strides: readonly number[] };

/** Runs `loop` over the output shape, feeding each operand through its strided view. */
function run(loop: Loop, out: TypedArray, views: Operand[], shape: readonly number[]): void {
  const { shape: cs, ops } = collapse(shape, [{ offset: 0, strides: contiguousStrides(shape) }, ...views]);
  const data = views.map((v) => v.data);
  forEachRun(cs, ops, (starts, n, inner) => loop(out, starts[0], n, data, starts, inner));
}

const kindsOf = (views: Operand[]) => views.map((v) => (typeof v.data === 'number' ? 's' : 'v')).join('');

type Data = (v: View) => TypedArray;

export function unary(op: UnaryOp, x: View, out: TypedArray, data: Data): void {
  run(loopFor(`u_${op}`, 'v', UNARY[op]), out, [{ data: data(x), offset: x.offset, strides: x.strides }], x.shape);
}

export function binary(op: BinaryOp, a: View | number, b: View | number, out: TypedArray, data: Data): void {
  const shape = typeof a === 'number' ? (b as View).shape : a.shape;
  const operand = (v: View | number): Operand =>
    typeof v === 'number'
      ? { data: out instanceof Int32Array ? Math.trunc(v) : Math.fround(v), offset: 0, strides: shape.map(() => 0) }
      : { data: data(v), offset: v.offset, strides: v.strides };
  const views = [operand(a), operand(b)];
  const intExpr = out instanceof Int32Array ? INT_BINARY[op] : undefined;
  run(loopFor(intExpr ? `bi_${op}` : `b_${op}`, kindsOf(views), intExpr ?? BINARY[op]), out, views, shape);
}

export function where(cond: View, a: View, b: View, out: TypedArray, data: Data): void {
  const views = [cond, a, b].map((v) => ({ data: data(v), offset: v.offset, strides: v.strides }));
  run(loopFor('where', 'vvv', 'a !== 0 ? b : c'), out, views, cond.shape);
}

/** Strided copy between any two views (with dtype conversion through the typed arrays). */
export function copy(src: View, dst: View, data: (v: View) => StorageArray): void {
  const { shape, ops } = collapse(src.shape, [
    { offset: dst.offset, strides: dst.strides },
    { offset: src.offset, strides: src.strides },
  ]);
  const s = data(src);
  const d = data(dst);
  const same = src.buffer.dtype === dst.buffer.dtype;
  const convert = same ? (v: number) => v : converter(src.buffer.dtype, dst.buffer.dtype);
  forEachRun(shape, ops, (starts, n, inner) => {
    const [o, i0] = starts;
    const [od, id] = inner;
    if (od === 1 && id === 1 && same) d.set(s.subarray(i0, i0 + n), o);
    else for (let i = 0; i < n; i++) d[o + i * od] = convert(s[i0 + i * id]);
  });
}

/**
 * Element conversion between dtypes as stored: 16-bit floats are decoded to their value, values
 * stored into a 16-bit float round to nearest even (an int32 first to float32, as on every
 * backend), and storing into an Int32Array applies ToInt32 itself.
 */
function converter(from: DType, to: DType): (v: number) => number {
  const load = from === 'bfloat16' ? fromBfloat16Bits : from === 'float16' ? fromFloat16Bits : (v: number) => v;
  if (to === 'bfloat16') return (v) => toBfloat16Bits(load(v));
  if (to === 'float16') return (v) => toFloat16Bits(load(v));
  return load;
}
