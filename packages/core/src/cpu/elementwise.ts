import type { BinaryOp, TypedArray, UnaryOp, View } from '../backend.ts';
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
};

type Loop = (out: TypedArray, o: number, n: number, x: ArrayLike<number>[], starts: number[], inner: number[]) => void;
const loops = new Map<string, Loop>();

function loopFor(key: string, arity: number, expr: string): Loop {
  let f = loops.get(key);
  if (!f) {
    const names = ['a', 'b', 'c'].slice(0, arity);
    const loads = names.map((v, k) => `const ${v} = X${k}[s${k} + i * d${k}];`).join(' ');
    const decl = names.map((_, k) => `const X${k} = x[${k}], s${k} = starts[${k + 1}], d${k} = inner[${k + 1}];`).join(' ');
    const body = `${decl} for (let i = 0; i < n; i++) { ${loads} out[o + i] = ${expr}; }`;
    f = new Function('M', `return function ${key}(out, o, n, x, starts, inner) { ${body} }`)(M) as Loop;
    loops.set(key, f);
  }
  return f;
}

/** Runs `loop` over the output shape, feeding each operand through its strided view. */
function run(loop: Loop, out: TypedArray, views: { data: ArrayLike<number>; offset: number; strides: readonly number[] }[], shape: readonly number[]): void {
  const { shape: cs, ops } = collapse(shape, [{ offset: 0, strides: contiguousStrides(shape) }, ...views]);
  const data = views.map((v) => v.data);
  forEachRun(cs, ops, (starts, n, inner) => loop(out, starts[0], n, data, starts, inner));
}

type Data = (v: View) => TypedArray;

export function unary(op: UnaryOp, x: View, out: TypedArray, data: Data): void {
  run(loopFor(`u_${op}`, 1, UNARY[op]), out, [{ data: data(x), offset: x.offset, strides: x.strides }], x.shape);
}

function scalarView(v: number, shape: readonly number[]) {
  return { data: [v], offset: 0, strides: shape.map(() => 0) };
}

export function binary(op: BinaryOp, a: View | number, b: View | number, out: TypedArray, data: Data): void {
  const shape = typeof a === 'number' ? (b as View).shape : a.shape;
  const operand = (v: View | number) => (typeof v === 'number' ? scalarView(v, shape) : { data: data(v), offset: v.offset, strides: v.strides });
  run(loopFor(`b_${op}`, 2, BINARY[op]), out, [operand(a), operand(b)], shape);
}

export function where(cond: View, a: View, b: View, out: TypedArray, data: Data): void {
  const views = [cond, a, b].map((v) => ({ data: data(v), offset: v.offset, strides: v.strides }));
  run(loopFor('where', 3, 'a !== 0 ? b : c'), out, views, cond.shape);
}

/** Strided copy between any two views (with dtype conversion through the typed arrays). */
export function copy(src: View, dst: View, data: Data): void {
  const { shape, ops } = collapse(src.shape, [
    { offset: dst.offset, strides: dst.strides },
    { offset: src.offset, strides: src.strides },
  ]);
  const s = data(src);
  const d = data(dst);
  forEachRun(shape, ops, (starts, n, inner) => {
    const [o, i0] = starts;
    const [od, id] = inner;
    if (od === 1 && id === 1 && s.constructor === d.constructor) d.set(s.subarray(i0, i0 + n), o);
    else for (let i = 0; i < n; i++) d[o + i * od] = s[i0 + i * id];
  });
}
