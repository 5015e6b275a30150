/**
 * Fills, random numbers, copies (flat, tiled transposes, strided, 4-element) and the elementwise ops
 * (native/kernels/elementwise.cu). Op codes are positions in UNARY_OPS / BINARY_OPS.
 */
import { type Backend, isFloating } from '@sparsegrad/core';
import { type BinaryOp, DTYPE_BYTES, type RandomSpec, type UnaryOp, type View } from '@sparsegrad/core/backend';
import { outputOperand, stridedLayout, transposeGrid, vectorLayout, viewOperand } from '../layout.ts';
import { type CudaHost, P, THREADS, tname } from './host.ts';

// Op codes of the elementwise kernels: positions in these lists are the cases of the switch
// statements in native/kernels/elementwise.cu (test/kernel-names.test.ts checks them by name).
export const UNARY_OPS: readonly UnaryOp[] = [
  'neg',
  'exp',
  'log',
  'sqrt',
  'abs',
  'sign',
  'tanh',
  'sigmoid',
  'relu',
  'geluTanh',
  'geluErf',
  'geluTanhGrad',
  'geluErfGrad',
];
/** The casts with 4-element kernels (copy_<from>_<to>x4), by dtype names. */
const VECTOR_COPIES = new Set(['f32_f32', 'f32_bf16', 'bf16_f32', 'bf16_bf16', 'f32_f16', 'f16_f32', 'f16_f16']);
export const BINARY_OPS: readonly BinaryOp[] = [
  'add',
  'sub',
  'mul',
  'div',
  'pow',
  'maximum',
  'minimum',
  'eq',
  'ne',
  'lt',
  'le',
  'gt',
  'ge',
  'geluTanhBackward',
  'geluErfBackward',
];
const COMPARISONS = new Set<BinaryOp>(['eq', 'ne', 'lt', 'le', 'gt', 'ge']);
/** The random kernels' kind codes (native/kernels/elementwise.cu, randomBody). */
const RANDOM_KINDS: readonly RandomSpec['kind'][] = ['uniform', 'normal', 'keep'];

export function elementwiseKernels(h: CudaHost): Pick<Backend, 'fill' | 'random' | 'copy' | 'unary' | 'binary' | 'where'> {
  const { addon, args, launch, blocksFor } = h;
  return {
    fill(out, size, value) {
      const bits = out.dtype === 'int32' ? value | 0 : new Uint32Array(Float32Array.of(value).buffer)[0];
      addon.memset32(P(out), bits >>> 0, size);
    },
    random(out, size, spec) {
      if (size === 0) return;
      launch(
        'random',
        `random_${tname(out.dtype)}`,
        [blocksFor(size), 1, 1],
        THREADS,
        args.reset().ptr(P(out)).u32(size).i32(RANDOM_KINDS.indexOf(spec.kind)).u32(spec.key).f32(spec.a).f32(spec.b),
      );
    },
    copy(src, dst) {
      const L = stridedLayout('copy', src.shape, [viewOperand(dst), viewOperand(src)]);
      if (L.n === 0) return;
      const same = src.buffer.dtype === dst.buffer.dtype;
      const bytes = DTYPE_BYTES[src.buffer.dtype];
      if (L.flat && same) {
        addon.copy(P(dst.buffer) + bytes * L.ops[0].offset, P(src.buffer) + bytes * L.ops[1].offset, bytes * L.n);
        return;
      }
      const tiles = same && bytes === 4 ? transposeGrid(L) : undefined;
      if (tiles) {
        launch('copy', 'transpose_32', tiles, THREADS, args.reset().ptr(P(src.buffer)).ptr(P(dst.buffer)).strided(L.n, L.shape, L.flat, L.ops));
        return;
      }
      const [from, to] = [tname(src.buffer.dtype), tname(dst.buffer.dtype)];
      const v4 = VECTOR_COPIES.has(`${from}_${to}`) ? vectorLayout(L) : undefined;
      const V = v4 ?? L;
      launch(
        'copy',
        `copy_${from}_${to}${v4 ? 'x4' : ''}`,
        [blocksFor(V.n), 1, 1],
        THREADS,
        args.reset().ptr(P(src.buffer)).ptr(P(dst.buffer)).strided(V.n, V.shape, V.flat, V.ops),
      );
    },

    unary(op, x, out) {
      const L = stridedLayout(op, x.shape, [outputOperand(x.shape), viewOperand(x)]);
      const v4 = isFloating(x.buffer.dtype) ? vectorLayout(L) : undefined;
      const V = v4 ?? L;
      launch(
        op,
        `unary_${tname(x.buffer.dtype)}${v4 ? 'x4' : ''}`,
        [blocksFor(V.n), 1, 1],
        THREADS,
        args.reset().ptr(P(x.buffer)).ptr(P(out)).i32(UNARY_OPS.indexOf(op)).strided(V.n, V.shape, V.flat, V.ops),
      );
    },
    binary(op, a, b, out) {
      const views = [a, b].filter((v): v is View => typeof v !== 'number');
      const shape = views[0].shape;
      const dtype = views[0].buffer.dtype;
      const L = stridedLayout(op, shape, [outputOperand(shape), ...views.map(viewOperand)]);
      // float32 and integers compare into float32 (compare_*); 16-bit floats take float32 scalars.
      const compare = COMPARISONS.has(op) && dtype !== 'float32';
      const v4 = isFloating(dtype) && !compare ? vectorLayout(L) : undefined;
      const kernel = `${compare ? 'compare' : 'binary'}_${tname(dtype)}${v4 ? 'x4' : ''}`;
      const scalars = (typeof a === 'number' ? 1 : 0) | (typeof b === 'number' ? 2 : 0);
      const s = (v: View | number) => (typeof v === 'number' ? v : 0);
      args
        .reset()
        .ptr(typeof a === 'number' ? 0 : P(a.buffer))
        .ptr(typeof b === 'number' ? 0 : P(b.buffer))
        .ptr(P(out))
        .i32(BINARY_OPS.indexOf(op))
        .i32(scalars);
      if (dtype === 'int32') args.i32(s(a)).i32(s(b));
      else args.f32(s(a)).f32(s(b));
      const V = v4 ?? L;
      launch(op, kernel, [blocksFor(V.n), 1, 1], THREADS, args.strided(V.n, V.shape, V.flat, V.ops));
    },
    where(cond, a, b, out) {
      const L = stridedLayout('where', cond.shape, [outputOperand(cond.shape), viewOperand(cond), viewOperand(a), viewOperand(b)]);
      launch(
        'where',
        `where_${tname(cond.buffer.dtype)}_${tname(a.buffer.dtype)}`,
        [blocksFor(L.n), 1, 1],
        THREADS,
        args.reset().ptr(P(cond.buffer)).ptr(P(a.buffer)).ptr(P(b.buffer)).ptr(P(out)).strided(L.n, L.shape, L.flat, L.ops),
      );
    },
  };
}
