/**
 * Fills, random numbers, copies (flat, tiled transposes, strided, vec4) and the elementwise ops:
 * one WGSL kernel per op, dtypes and specialisation, generated on a pipeline-cache miss. Strided
 * operands are described in the uniform block (uniforms.ts's LAYOUT); scalars follow at LAYOUT.scalars.
 */
import type { Backend, DType } from '@sparsegrad/core';
import {
  collapseDims,
  contiguousStrides,
  isHalf,
  isTranspose,
  vectorize,
  type BackendBuffer,
  type BinaryOp,
  type UnaryOp,
  type View,
} from '@sparsegrad/core/backend';
import { G, MAX_GROUPS_X, type Param } from '../context.ts';
import { BINARY_WGSL, ERF, GELU_TANH_GRAD, HALF_WGSL, RANDOM, UNARY_WGSL, stridedOffsets, wgslType } from '../wgsl.ts';
import { LAYOUT, layoutWords, uniforms } from '../uniforms.ts';
import { HEAD, perElement, perElementThreads, type KernelHost } from './common.ts';

// Uniform words of the kernels without a strided layout (word 0: the count perElement reads).
const FILL = { int32: uniforms(['count', 'value'], { value: 'i32' }), float32: uniforms(['count', 'value'], { value: 'f32' }) };
const RANDOM_WORDS = uniforms(['count', 'key', 'a', 'b'], { a: 'f32', b: 'f32' });
const FLAT_COPY = uniforms(['count', 'srcOffset', 'dstOffset']);

/** A value of WGSL type `from` converted to `to` (float to int by core's rule: toI32). */
const cast = (from: string, to: string, value: string) => (from === 'f32' && to === 'i32' ? `toI32(${value})` : `${to}(${value})`);

export function elementwiseKernels(h: KernelHost): Pick<Backend, 'fill' | 'random' | 'copy' | 'unary' | 'binary' | 'where'> {
  const { ctx, pipe } = h;
  /**
   * A copy to or from a 16-bit dtype (HALF_WGSL's packed words): each element decoded to f32 (an
   * int32 converted), then encoded into the destination's type. A 16-bit destination may be any
   * strided view, so each element replaces its half of the word with two atomics: clear, then set.
   */
  function copyHalf(src: View, dst: View): void {
    const [sd, dd] = [src.buffer.dtype, dst.buffer.dtype];
    const merged = collapseDims(src.shape, [src, dst]);
    const count = src.shape.reduce((a, b) => a * b, 1);
    const load =
      sd === 'bfloat16' || sd === 'float16'
        ? `${sd === 'bfloat16' ? 'fromBf16' : 'fromF16'}((X[o[0] >> 1u] >> ((o[0] & 1u) * 16u)) & 0xffffu)`
        : `f32(X[o[0]])`;
    const store =
      dd === 'bfloat16' || dd === 'float16'
        ? `let w = o[1] >> 1u; let shift = (o[1] & 1u) * 16u; atomicAnd(&Y[w], ~(0xffffu << shift)); atomicOr(&Y[w], ${dd === 'bfloat16' ? 'toBf16' : 'toF16'}(v) << shift);`
        : `Y[o[1]] = ${dd === 'int32' ? 'toI32(v)' : 'v'};`;
    const xType = isHalf(sd) ? 'u32' : wgslType(sd);
    const yType = isHalf(dd) ? 'atomic<u32>' : wgslType(dd);
    const pipeline = pipe(
      `copyhalf|${sd}|${dd}`,
      () =>
        `${HEAD(`@group(0) @binding(1) var<storage, read> X: array<${xType}>;\n@group(0) @binding(2) var<storage, read_write> Y: array<${yType}>;`)}\n${HALF_WGSL}\n${stridedOffsets(2)}\n${perElement(`let o = viewOffsets(i); let v = ${load}; ${store}`)}`,
    );
    ctx.dispatch('copy', pipeline, [G(src.buffer), G(dst.buffer)], layoutWords('copy', count, merged.shape, merged.ops), perElementThreads(count));
  }
  /**
   * An elementwise kernel Y[i] = expr over inputs a, b, c (views or scalars). Where the output and
   * every input are float32 and the merged layout allows it (core's vectorize: rows of 4k
   * contiguous floats at offsets of 4k), it moves vec4s: a quarter of the index arithmetic and 16-
   * byte accesses, the scalar expression applied per component.
   */
  function elementwise(op: string, key: string, inputs: (View | number)[], inTypes: DType[], out: BackendBuffer, expr: string, extra = ''): void {
    const views = inputs.filter((v): v is View => typeof v !== 'number');
    const shape = views[0].shape;
    const n = shape.reduce((a, b) => a * b, 1);
    let merged = collapseDims(shape, [{ offset: 0, strides: contiguousStrides(shape) }, ...views]);
    const floats = out.dtype === 'float32' && inTypes.every((t) => t === 'float32');
    const v4 = floats ? vectorize(merged.shape, merged.ops, 4) : undefined;
    if (v4) merged = v4;
    const count = v4 ? n / 4 : n;
    // When every operand is one contiguous run, index directly (no per-dim division).
    const flat = merged.shape.length === 1 && merged.ops.every((o) => o.strides[0] === 1);
    // Scalars travel in the words from LAYOUT.scalars on.
    const scalars: Param[] = [];
    for (let k = 0; k < inputs.length; k++) {
      const v = inputs[k];
      if (typeof v === 'number') scalars.push(inTypes[k] === 'int32' ? { i32: v } : { f32: v });
    }
    let k = `${key}|`;
    for (let j = 0; j < inputs.length; j++) k += (typeof inputs[j] === 'number' ? 's' : 'v') + inTypes[j];
    k += `|${out.dtype}|${flat ? 'flat' : 'strided'}${v4 ? '|vec4' : ''}`;
    // The WGSL is built only when the pipeline is not cached yet (most calls find it).
    const pipeline = pipe(k, () => {
      const names = ['a', 'b', 'c'];
      const t = (j: number) => (v4 ? 'vec4<f32>' : wgslType(inTypes[j]));
      let vi = 0;
      let si = 0;
      const bindings: string[] = [];
      const loads: string[] = [];
      inputs.forEach((v, j) => {
        if (typeof v === 'number') {
          const word = `${inTypes[j] === 'int32' ? 'pi' : 'pf'}(${LAYOUT.scalars + si++}u)`;
          loads.push(`let ${names[j]} = ${v4 ? `vec4<f32>(${word})` : word};`);
        } else {
          bindings.push(`@group(0) @binding(${vi + 1}) var<storage, read> X${j}: array<${t(j)}>;`);
          loads.push(`let ${names[j]} = X${j}[${flat ? `p(${LAYOUT.offset(vi)}u) + i` : `o[${vi}]`}];`);
          vi++;
        }
      });
      const outT = v4 ? 'f32' : wgslType(out.dtype);
      bindings.push(`@group(0) @binding(${vi + 1}) var<storage, read_write> Y: array<${v4 ? 'vec4<f32>' : outT}>;`);
      const args = names.slice(0, inputs.length);
      // vec4: the scalar expression as a function, applied to each component.
      const fn = v4 ? `fn elem(${args.map((a) => `${a}: f32`).join(', ')}) -> f32 { return ${expr}; }` : '';
      const value = v4 ? `vec4<f32>(${['x', 'y', 'z', 'w'].map((c) => `elem(${args.map((a) => `${a}.${c}`).join(', ')})`).join(', ')})` : `${outT}(${expr})`;
      return `${HEAD(bindings.join('\n'))}\n${flat ? '' : stridedOffsets(vi)}\n${extra}\n${fn}\n${perElement(`${flat ? '' : 'let o = viewOffsets(i);'} ${loads.join(' ')} Y[i] = ${value};`)}`;
    });
    const params = layoutWords(op, count, merged.shape, merged.ops.slice(1));
    params.length = LAYOUT.scalars; // the words between the layout and the scalars: holes, not written
    params.push(...scalars);
    ctx.dispatch(op, pipeline, [...views.map((v) => G(v.buffer)), G(out)], params, perElementThreads(out.size === 0 ? 0 : count));
  }
  return {
    fill(out, size, value) {
      const t = wgslType(out.dtype);
      const words = FILL[out.dtype as 'float32' | 'int32'];
      const pipeline = pipe(
        `fill|${t}`,
        () => `${HEAD(`@group(0) @binding(1) var<storage, read_write> Y: array<${t}>;`)}\n${perElement(`${words.lets} Y[i] = value;`)}`,
      );
      ctx.dispatch('fill', pipeline, [G(out)], words.pack({ count: size, value }), perElementThreads(size));
    },
    random(out, size, spec) {
      const normal = spec.kind === 'normal';
      const pipeline = pipe(
        `random|${spec.kind}`,
        () =>
          `${HEAD('@group(0) @binding(1) var<storage, read_write> Y: array<f32>;')}\n${RANDOM}\n${perElement(`
    ${RANDOM_WORDS.lets}
    ${
      normal
        ? `let u1 = (f32(bits(key, 2u * i) >> 8u) + 1.0) * (1.0 / 16777216.0);
    let u2 = uni(key, 2u * i + 1u);
    Y[i] = a + b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);`
        : spec.kind === 'keep'
          ? 'Y[i] = select(0.0, b, uni(key, i) >= a);'
          : 'Y[i] = a + (b - a) * uni(key, i);'
    }`)}`,
      );
      ctx.dispatch('random', pipeline, [G(out)], RANDOM_WORDS.pack({ count: size, key: spec.key, a: spec.a, b: spec.b }), perElementThreads(size));
    },
    copy(src, dst) {
      if (isHalf(src.buffer.dtype) || isHalf(dst.buffer.dtype)) return copyHalf(src, dst);
      const st = wgslType(src.buffer.dtype);
      const dt = wgslType(dst.buffer.dtype);
      const merged = collapseDims(src.shape, [src, dst]);
      if (merged.shape.length === 1 && merged.ops.every((o) => o.strides[0] === 1)) {
        // Both sides one contiguous run: no index arithmetic.
        const flat = pipe(
          `copyflat|${st}|${dt}`,
          () =>
            `${HEAD(`@group(0) @binding(1) var<storage, read> X: array<${st}>;\n@group(0) @binding(2) var<storage, read_write> Y: array<${dt}>;`)}\n${perElement(`${FLAT_COPY.lets} Y[dstOffset + i] = ${cast(st, dt, 'X[srcOffset + i]')};`)}`,
        );
        const n = merged.shape[0];
        ctx.dispatch(
          'copy',
          flat,
          [G(src.buffer), G(dst.buffer)],
          FLAT_COPY.pack({ count: n, srcOffset: merged.ops[0].offset, dstOffset: merged.ops[1].offset }),
          perElementThreads(n),
        );
        return;
      }
      // Layout words: views 0 = source, 1 = destination (merged against each other only).
      if (st === dt && isTranspose(merged.shape, [merged.ops[1], merged.ops[0]])) {
        // A transposed view made contiguous: 32 x 32 tiles through workgroup memory, so that
        // reads and writes both run along a contiguous dim.
        const r = merged.shape.length;
        const tiles = Math.ceil(merged.shape[r - 1] / 32) * Math.ceil(merged.shape[r - 2] / 32);
        const batch = merged.shape.slice(0, r - 2).reduce((a, b) => a * b, 1);
        const kernel = pipe(`transpose|${st}`, () => transposeKernel(st));
        const params = layoutWords('copy', tiles, merged.shape, merged.ops);
        const groups = tiles * batch;
        const x = Math.min(groups, MAX_GROUPS_X);
        ctx.dispatchGrid('copy', kernel, [G(src.buffer), G(dst.buffer)], params, [x, Math.ceil(groups / x), 1]);
        return;
      }
      const v4 = st === 'f32' && dt === 'f32' ? vectorize(merged.shape, merged.ops, 4) : undefined;
      const L = v4 ?? merged;
      const vt = (t: string) => (v4 ? 'vec4<f32>' : t);
      const count = src.shape.reduce((a, b) => a * b, 1) / (v4 ? 4 : 1);
      const pipeline = pipe(
        `copy|${st}|${dt}${v4 ? '|vec4' : ''}`,
        () =>
          `${HEAD(`@group(0) @binding(1) var<storage, read> X: array<${vt(st)}>;\n@group(0) @binding(2) var<storage, read_write> Y: array<${vt(dt)}>;`)}\n${stridedOffsets(2)}\n${perElement(`let o = viewOffsets(i); Y[o[1]] = ${v4 ? 'X[o[0]]' : cast(st, dt, 'X[o[0]]')};`)}`,
      );
      ctx.dispatch('copy', pipeline, [G(src.buffer), G(dst.buffer)], layoutWords('copy', count, L.shape, L.ops), perElementThreads(count));
    },

    unary(op: UnaryOp, x, out) {
      const isInt = x.buffer.dtype === 'int32';
      const expr = isInt ? (({ neg: '-a', abs: 'abs(a)', sign: 'sign(a)' } as Record<string, string>)[op] ?? 'a') : UNARY_WGSL[op];
      elementwise(op, `u|${op}`, [x], [x.buffer.dtype], out, expr, isInt ? '' : `${ERF}\n${GELU_TANH_GRAD}`);
    },
    binary(op: BinaryOp, a, b, out) {
      const t = typeof a === 'number' ? (b as View).buffer.dtype : a.buffer.dtype;
      const ft = wgslType(out.dtype);
      let expr = BINARY_WGSL[op].replace(/CMP\((.*)\)/, `select(${ft}(0), ${ft}(1), $1)`);
      if (op === 'pow') expr = t === 'int32' ? 'ipow(a, b)' : 'pow(a, b)';
      // Integers: no NaN to propagate; division truncates and a zero divisor gives 0 (core's rules).
      if (t === 'int32' && (op === 'maximum' || op === 'minimum')) expr = op === 'maximum' ? 'max(a, b)' : 'min(a, b)';
      if (t === 'int32' && op === 'div') expr = 'select(a / b, 0, b == 0)';
      if (op === 'pow' && t === 'float32') {
        // WGSL pow is undefined for negative bases; match IEEE pow for integral exponents.
        expr = 'select(pow(abs(a), b) * select(1.0, -1.0, (abs(b) % 2.0) == 1.0), pow(a, b), a >= 0.0 || fract(b) != 0.0)';
      }
      elementwise(op, `b|${op}`, [a, b], [t, t], out, expr, op.startsWith('gelu') ? `${ERF}\n${GELU_TANH_GRAD}` : '');
    },
    where(cond, a, b, out) {
      elementwise(
        'where',
        'where',
        [cond, a, b],
        [cond.buffer.dtype, a.buffer.dtype, b.buffer.dtype],
        out,
        `select(c, b, a != ${wgslType(cond.buffer.dtype)}(0))`,
      );
    },
  };
}

/**
 * A copy that transposes its last two dims (see copy): workgroup (tile, batch) moves a 32 x 32
 * tile, reading along I (contiguous in the source) and writing along J (contiguous in the
 * destination). Words: 0 tiles per batch, then the merged layout of the source (view 0) and the
 * destination (view 1); the batch dims are the leading ones.
 */
function transposeKernel(t: string): string {
  return `${HEAD(`@group(0) @binding(1) var<storage, read> X: array<${t}>;\n@group(0) @binding(2) var<storage, read_write> Y: array<${t}>;`)}
var<workgroup> tile: array<${t}, ${32 * 33}>;
@compute @workgroup_size(256) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = p(${LAYOUT.rank}u);
  let I = p(${LAYOUT.shape}u + r - 2u);
  let J = p(${LAYOUT.shape}u + r - 1u);
  let tilesPerBatch = p(${LAYOUT.count}u);
  let id = wg.x + wg.y * nwg.x;
  let tileId = id % tilesPerBatch;
  var rem = id / tilesPerBatch;
  var src = p(${LAYOUT.offset(0)}u);
  var dst = p(${LAYOUT.offset(1)}u);
  for (var d = i32(r) - 3; d >= 0; d--) {
    let dim = p(${LAYOUT.shape}u + u32(d));
    let c = rem % dim;
    rem /= dim;
    src += c * p(${LAYOUT.stride(0)}u + u32(d));
    dst += c * p(${LAYOUT.stride(1)}u + u32(d));
  }
  if (rem > 0u) { return; } // past the last batch: the grid is rounded up
  let tilesJ = (J + 31u) / 32u;
  let i0 = (tileId / tilesJ) * 32u;
  let j0 = (tileId % tilesJ) * 32u;
  let tx = lid % 32u;
  let ty = lid / 32u;
  let sj = p(${LAYOUT.stride(0)}u + r - 1u);
  let di = p(${LAYOUT.stride(1)}u + r - 2u);
  for (var k = 0u; k < 32u; k += 8u) {
    let i = i0 + tx;
    let j = j0 + ty + k;
    if (i < I && j < J) { tile[(ty + k) * 33u + tx] = X[src + i + j * sj]; }
  }
  workgroupBarrier();
  for (var k = 0u; k < 32u; k += 8u) {
    let i = i0 + ty + k;
    let j = j0 + tx;
    if (i < I && j < J) { Y[dst + i * di + j] = tile[tx * 33u + ty + k]; }
  }
}`;
}
