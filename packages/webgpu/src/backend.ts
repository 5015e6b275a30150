/**
 * The WebGPU backend: every primitive of @sparsegrad/core's Backend as a WGSL compute kernel.
 * Kernels are generated per op, dtype and specialisation and cached by key; strided operands are
 * described in the uniform block (shape and per-operand offset/strides, rank <= 6 after merging
 * contiguous dims). Matrix products come from gemm.ts, reductions from reductions.ts, and their
 * tile shapes from tiles.ts; the block-sparse trio lives in blocksparse.ts.
 */
import { adamCoefficients, collapseDims, contiguousStrides, isTranspose, vectorize, type Backend, type BackendBuffer, type BinaryOp, type DType, type MatrixView, type ReduceOp, type UnaryOp, type View } from '@sparsegrad/core';
import { G, GpuBuffer, GpuContext, INDEX_WGSL, MAX_GROUPS_X, WG, u, type Kernel, type Param } from './context.ts';
import { blockSparseKernels } from './blocksparse.ts';
import { gemmKernel, tileCols, tileRows, type GemmShape } from './gemm.ts';
import { COLUMN_MIN_ROWS, COLUMN_TARGET_GROUPS, COLUMN_TILE, LANE_ROW, ROWS_PER_GROUP, SHORT_ROW, TREE_LANES, columnKernel, gridFor, laneRowKernel, reduceWgslOps, rowBindings, shortRowsKernel, type RowReduction } from './reductions.ts';
import { DENSE_LARGE, denseTiling, env, fitShape, shapeKey, tuned } from './tiles.ts';
import { BINARY_WGSL, ERF, GELU_TANH_GRAD, INDEX_ERRORS, MAX_RANK, PARAMS, RANDOM, UNARY_WGSL, stridedOffsets, wgslType } from './wgsl.ts';

/** A value of WGSL type `from` converted to `to` (float to int by core's rule: toI32). */
const cast = (from: string, to: string, value: string) => (from === 'f32' && to === 'i32' ? `toI32(${value})` : `${to}(${value})`);
const HEAD = (bindings: string) => `${PARAMS}\n${INDEX_WGSL}\n${bindings}`;
const MAIN = '@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {\n  let i = flatIndex(gid, nwg);';

/**
 * A merged layout (collapseDims) as uniform words: [n, rank, shape[6], (offset, strides[6]) per
 * view]; the views only, not a contiguous output.
 */
function layoutWords(op: string, n: number, shape: readonly number[], views: { offset: number; strides: readonly number[] }[]): Param[] {
  if (shape.length > MAX_RANK) throw new Error(`webgpu: ${op}: views of rank ${shape.length} after merging dims are not supported (max ${MAX_RANK})`);
  const words: Param[] = [u(n), u(shape.length)];
  for (let d = 0; d < MAX_RANK; d++) words.push(u(shape[d] ?? 1));
  views.forEach((o) => {
    words.push(u(o.offset));
    for (let d = 0; d < MAX_RANK; d++) words.push(u(o.strides[d] ?? 0));
  });
  return words;
}

/** The backend object also carries its engine, for benchmarks (device timing) and diagnostics. */
export interface WebGPUBackend extends Backend {
  readonly context: GpuContext;
}

export function createWebGPUBackend(ctx: GpuContext, software = false, rowSubgroups = 0): WebGPUBackend {
  const pipe = ctx.pipeline.bind(ctx);
  /**
   * Dispatches a row-wise kernel (laneRowKernel) over `rows` rows of n in the form that suits n:
   * rows up to LANE_ROW several to a workgroup, a row per subgroup where probeRowSubgroups found
   * them usable (rowSubgroups, their size) or TREE_LANES invocations reducing in workgroup memory;
   * longer rows a workgroup each. On an H100 the GPT step's attention softmax (rows of 256) went
   * from 0.19 ms per call a workgroup per row to 0.049 in rows of 32 and 0.046 a subgroup each,
   * layer norm (rows of 512) from 0.035 to 0.021 (NOTES 35). SPARSEGRAD_WEBGPU_ROW_SUBGROUPS=0
   * forces the tree, SPARSEGRAD_WEBGPU_LANE_ROWS=0 a workgroup per row (tests, benchmarks).
   */
  const rowOp = (op: string, key: string, rows: number, n: number, bindings: string, body: string, buffers: GpuBuffer[], params: Param[]) => {
    const reduction: RowReduction =
      n > LANE_ROW || env('SPARSEGRAD_WEBGPU_LANE_ROWS') === '0' ? 'workgroup' : rowSubgroups > 0 && env('SPARSEGRAD_WEBGPU_ROW_SUBGROUPS') !== '0' ? 'subgroup' : 'tree';
    const lanes = { workgroup: WG, subgroup: rowSubgroups, tree: TREE_LANES }[reduction];
    const kernel = pipe(`${key}|${reduction}|${lanes}`, () => laneRowKernel(bindings, body, lanes, reduction, sg));
    ctx.dispatchGrid(op, kernel, buffers, params, gridFor(Math.ceil(rows / (WG / lanes))));
  };
  const fit = (shape: GemmShape) => fitShape(shape, ctx.device.limits.maxComputeWorkgroupStorageSize);
  // Reductions inside row kernels use subgroup operations where the device has them.
  const sg = ctx.device.features.has('subgroups');
  const storageBuffers = ctx.device.limits.maxStorageBuffersPerShaderStage;
  /** A kernel over `count` buffers of a list (see packs()), cached per count. */
  const packedKernel = (name: string, count: number, wgsl: (count: number) => string) => pipe(`${name}|${count}`, () => wgsl(count));
  // The block-sparse trio (blocksparse.ts); its token chunks' partial sums fold through reduce.
  const blockSparse = blockSparseKernels(ctx, { sumPartials: (partials, parts, size, out) => backend.reduce('sum', partials, 1, parts, size, out) });

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
    // Scalars travel in words 40.. of the uniform block.
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
          const word = `${inTypes[j] === 'int32' ? 'pi' : 'pf'}(${40 + si++}u)`;
          loads.push(`let ${names[j]} = ${v4 ? `vec4<f32>(${word})` : word};`);
        } else {
          bindings.push(`@group(0) @binding(${vi + 1}) var<storage, read> X${j}: array<${t(j)}>;`);
          loads.push(`let ${names[j]} = X${j}[${flat ? `p(${8 + vi * 7}u) + i` : `o[${vi}]`}];`);
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
    params.length = 40; // words up to 40 unread: left as holes, not written
    params.push(...scalars);
    ctx.dispatch(op, pipeline, [...views.map((v) => G(v.buffer)), G(out)], params, perElementThreads(out.size === 0 ? 0 : count));
  }

  const backend: WebGPUBackend = {
    name: 'webgpu',
    context: ctx,
    device: { name: 'webgpu', description: ctx.description, software },

    alloc: (size, dtype) => ctx.alloc(size, dtype),
    upload(data) {
      const b = ctx.alloc(data.length, data instanceof Int32Array ? 'int32' : 'float32');
      ctx.upload(b, data);
      return b;
    },
    read: (b, size) => ctx.read(G(b), size),
    free: (b) => ctx.free(G(b)),
    memory: () => ({ buffers: ctx.liveBuffers, bytes: ctx.liveBytes }),

    fill(out, size, value) {
      const t = wgslType(out.dtype);
      const pipeline = pipe(`fill|${t}`, () => `${HEAD(`@group(0) @binding(1) var<storage, read_write> Y: array<${t}>;`)}\n${perElement(`Y[i] = ${t === 'i32' ? 'pi(1u)' : 'pf(1u)'};`)}`);
      ctx.dispatch('fill', pipeline, [G(out)], [u(size), out.dtype === 'int32' ? { i32: value } : { f32: value }], perElementThreads(size));
    },
    random(out, size, spec) {
      const normal = spec.kind === 'normal';
      const pipeline = pipe(`random|${spec.kind}`, () => `${HEAD('@group(0) @binding(1) var<storage, read_write> Y: array<f32>;')}\n${RANDOM}\n${perElement(`
    let key = p(1u); let a = pf(2u); let b = pf(3u);
    ${normal
    ? `let u1 = (f32(bits(key, 2u * i) >> 8u) + 1.0) * (1.0 / 16777216.0);
    let u2 = uni(key, 2u * i + 1u);
    Y[i] = a + b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);`
    : 'Y[i] = a + (b - a) * uni(key, i);'}`)}`);
      ctx.dispatch('random', pipeline, [G(out)], [u(size), u(spec.key), { f32: spec.a }, { f32: spec.b }], perElementThreads(size));
    },
    copy(src, dst) {
      const st = wgslType(src.buffer.dtype);
      const dt = wgslType(dst.buffer.dtype);
      const merged = collapseDims(src.shape, [src, dst]);
      if (merged.shape.length === 1 && merged.ops.every((o) => o.strides[0] === 1)) {
        // Both sides one contiguous run: no index arithmetic.
        const flat = pipe(`copyflat|${st}|${dt}`, () => `${HEAD(`@group(0) @binding(1) var<storage, read> X: array<${st}>;\n@group(0) @binding(2) var<storage, read_write> Y: array<${dt}>;`)}\n${perElement(`Y[p(2u) + i] = ${cast(st, dt, 'X[p(1u) + i]')};`)}`);
        const n = merged.shape[0];
        ctx.dispatch('copy', flat, [G(src.buffer), G(dst.buffer)], [n, merged.ops[0].offset, merged.ops[1].offset].map(u), perElementThreads(n));
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
      const pipeline = pipe(`copy|${st}|${dt}${v4 ? '|vec4' : ''}`, () => `${HEAD(`@group(0) @binding(1) var<storage, read> X: array<${vt(st)}>;\n@group(0) @binding(2) var<storage, read_write> Y: array<${vt(dt)}>;`)}\n${stridedOffsets(2)}\n${perElement(`let o = viewOffsets(i); Y[o[1]] = ${v4 ? 'X[o[0]]' : cast(st, dt, 'X[o[0]]')};`)}`);
      ctx.dispatch('copy', pipeline, [G(src.buffer), G(dst.buffer)], layoutWords('copy', count, L.shape, L.ops), perElementThreads(count));
    },

    unary(op: UnaryOp, x, out) {
      const isInt = x.buffer.dtype === 'int32';
      const expr = isInt ? ({ neg: '-a', abs: 'abs(a)', sign: 'sign(a)' } as Record<string, string>)[op] ?? 'a' : UNARY_WGSL[op];
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
      elementwise(op, `b|${op}`, [a, b], [t, t], out, expr);
    },
    where(cond, a, b, out) {
      elementwise('where', 'where', [cond, a, b], [cond.buffer.dtype, a.buffer.dtype, b.buffer.dtype], out, `select(c, b, a != ${wgslType(cond.buffer.dtype)}(0))`);
    },

    reduce(op: ReduceOp, x, outer, n, inner, out) {
      const t = wgslType(x.dtype);
      if (inner === 1 && t === 'f32' && (op === 'sum' || op === 'max' || op === 'min')) {
        // Rows reduced by a whole workgroup each. Params: rows, row length, total length (the
        // last row of a chunked pass may be short).
        const { init, combine, subgroupOp } = reduceWgslOps(op);
        if (sg && n <= SHORT_ROW && outer > 1) {
          // Short rows: one workgroup reduces ROWS_PER_GROUP of them, so each thread has several
          // loads in flight and the reduction's barrier is shared.
          const short = pipe(`reduceShortRows|${op}`, () => shortRowsKernel(init, combine, subgroupOp));
          ctx.dispatchGrid(op, short, [G(x), G(out)], [u(outer), u(n)], gridFor(Math.ceil(outer / ROWS_PER_GROUP)));
          return;
        }
        // A workgroup per row (its last chunk may end early: p(2) is the whole input's length).
        const pipeline = pipe(`reduceRows|${op}`, () => laneRowKernel(rowBindings(false), `
  var acc = ${init};
  for (var j = lane; live && j < n && base + j < p(2u); j += LANES) { let v = X[base + j]; acc = ${combine('acc', 'v')}; }
  let r = ${op === 'sum' ? 'laneSum(acc, l)' : op === 'max' ? 'laneMax(acc, l)' : '-laneMax(-acc, l)'};
  if (live && lane == 0u) { Y[row] = r; }`, WG, 'workgroup', sg));
        const CHUNK = 16384;
        if (outer === 1 && n > 4 * CHUNK) {
          // One long row (a full-tensor reduction): partial results per chunk, then one more pass.
          const parts = Math.ceil(n / CHUNK);
          const partial = ctx.alloc(parts, 'float32');
          ctx.dispatchGrid(op, pipeline, [G(x), partial], [u(parts), u(CHUNK), u(n)], gridFor(parts));
          ctx.dispatchGrid(op, pipeline, [partial, G(out)], [u(1), u(parts), u(parts)], [1, 1, 1]);
          ctx.free(partial); // reuse is ordered after these dispatches on the queue
          return;
        }
        ctx.dispatchGrid(op, pipeline, [G(x), G(out)], [u(outer), u(n), u(outer * n)], gridFor(outer));
        return;
      }
      if (t === 'f32' && op === 'sum' && env('SPARSEGRAD_WEBGPU_FEW_ROWS') !== '0' && n <= FEW_ROWS && inner % 4 === 0 && outer * inner >= FEW_ROWS_MIN_FLOATS) {
        // A few long rows (the SDDMM's partial sums: 8-16 rows of 1-2M floats): one thread per vec4 of a
        // column walks all n rows, so every load is a whole 16-byte piece and no workgroup memory
        // or second pass is needed; columnKernel's lanes and splits serve tall columns instead.
        const pipeline = pipe('reduceFewRows', () => `${HEAD('@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;\n@group(0) @binding(2) var<storage, read_write> Y: array<vec4<f32>>;')}\n${MAIN}
  let outer = p(0u); let n = p(1u); let q = p(2u);
  if (i >= outer * q) { return; }
  let base = (i / q) * n * q + i % q;
  var acc = vec4<f32>(0.0); var k = 0u;
  for (; k + 4u <= n; k += 4u) { acc += (X[base + k * q] + X[base + (k + 1u) * q]) + (X[base + (k + 2u) * q] + X[base + (k + 3u) * q]); }
  for (; k < n; k++) { acc += X[base + k * q]; }
  Y[i] = acc;
}`);
        ctx.dispatch(op, pipeline, [G(x), G(out)], [u(outer), u(n), u(inner / 4)], outer * (inner / 4));
        return;
      }
      if (t === 'f32' && (op === 'sum' || op === 'max' || op === 'min')) {
        const { init, combine } = reduceWgslOps(op);
        const pipeline = pipe(`reduceColumns|${op}`, () => columnKernel(
          '@group(0) @binding(1) var<storage, read> X: array<f32>;\n@group(0) @binding(2) var<storage, read_write> Y: array<f32>;',
          [{ init, value: 'X[(o * n + r) * inner + c]', combine, out: 'Y' }]));
        columnReduce(op, pipeline, [G(x)], [G(out)], outer, n, inner, (partials, splits) => backend.reduce(op, partials[0], 1, splits, outer * inner, out));
        return;
      }
      const arg = op === 'argmax' || op === 'argmin';
      const better = op === 'max' || op === 'argmax' ? '>' : '<';
      const pipeline = pipe(`reduce|${op}|${t}`, () => `${HEAD(`@group(0) @binding(1) var<storage, read> X: array<${t}>;\n@group(0) @binding(2) var<storage, read_write> Y: array<${arg ? 'i32' : t}>;`)}\n${MAIN}
  let outer = p(0u); let n = p(1u); let inner = p(2u);
  if (i >= outer * inner) { return; }
  let o = i / inner; let j = i % inner;
  let base = o * n * inner + j;
  ${op === 'sum'
    ? `var acc = ${t}(0); for (var k = 0u; k < n; k++) { acc += X[base + k * inner]; } Y[i] = acc;`
    : `var best = X[base]; var at = 0u;
  for (var k = 1u; k < n; k++) { let v = X[base + k * inner]; if (v ${better} best${t === 'f32' ? ' || (isNan(v) && !isNan(best))' : ''}) { best = v; at = k; } }
  Y[i] = ${arg ? 'i32(at)' : 'best'};`}
}`);
      ctx.dispatch(op, pipeline, [G(x), G(out)], [u(outer), u(n), u(inner)], outer * inner);
    },

    matmul(a: MatrixView, b: MatrixView, out, batch, m, n, k) {
      // The tile and any split of k: tiles.ts's denseTiling.
      const aC = a.colStride === 1 ? 'k' : 'm';
      const bC = b.colStride === 1 ? 'n' : 'k';
      // Measured on an H100: with both operands row-major a k-step of 4 beats 8 (40 vs 37 TFLOP/s).
      const large = aC === 'k' && bC === 'n' ? { ...DENSE_LARGE, bk: 4 } : DENSE_LARGE;
      const tiling = denseTiling(m, n, k, batch, large);
      const shape = fit(tuned('matmul') ?? tiling.shape);
      const kChecked = k % shape.bk !== 0;
      // Outputs as vec4 stores where rows are multiples of 4 (every row and batch then starts
      // aligned): always for X W^T's layout (k-contiguous operands), for the others only over a
      // short k per workgroup. On an H100 X W^T of [16384, 1024] by [4096, 1024]^T went 3.61 ->
      // 3.53 ms, but dY W (k- by n-contiguous) 3.44 -> 3.54 at k = 4096 and 3.49 -> 3.53 at 1024
      // (NOTES 21, 37); in the GPT step (k 64-512 per workgroup) every product was as fast or
      // faster with them, the attention scores 0.143 -> 0.088 ms.
      const kPerGroup = tiling.splits > 1 ? Math.ceil(k / tiling.splits / shape.bk) * shape.bk : k;
      const v4 = n % 4 === 0 && ((aC === 'k' && bC === 'k') || kPerGroup <= (aC === 'k' && bC === 'n' ? VEC_STORE_KN_MAX_K : VEC_STORE_MAX_K));
      const key = `matmul|${shapeKey(shape)}|${aC}${bC}|${kChecked}|${v4}`;
      const pipeline = pipe(key, () => `${PARAMS}\n${gemmKernel({
        shape, aContiguous: aC, bContiguous: bC, kChecked, a: 'A', b: 'B',
        bindings: `@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<${v4 ? 'vec4<f32>' : 'f32'}>;`,
        // Grid: x = column tiles (consecutive workgroups share A's row panel in L2), y = row tiles, z = batch.
        // A split-K product is a batch over chunks of k whose last chunk may be short: L is the
        // chunk length, cut at p(12) (the whole k; 0xffffffff for an ordinary batch).
        setup: `let M = p(0u); let N = p(1u); let batch = wg.z; let L = min(p(2u), p(12u) - batch * p(2u)); let m0 = wg.y * ${tileRows(shape)}u; let n0 = wg.x * ${tileCols(shape)}u;
  let aRS = p(5u); let aKS = p(6u); let bKS = p(9u); let bNS = p(10u);`,
        segBegin: '0u', segEnd: '1u',
        segment: `aBase = p(3u) + batch * p(4u) + m0 * aRS; bBase = p(7u) + batch * p(8u) + n0 * bNS;`,
        ...(v4
          ? { storeVec4: (r: string, c: string, v: string) => `C[(p(11u) + batch * M * N + (m0 + ${r}) * N + n0 + ${c}) / 4u] = ${v};` }
          : { store: (r: string, c: string, v: string) => `C[p(11u) + batch * M * N + (m0 + ${r}) * N + n0 + ${c}] = ${v};` }),
      })}`);
      // Profiles tell products apart by shape and layout.
      const op = ctx.profiling ? `matmul ${batch}x${m}x${n}x${k} ${aC}${bC}` : 'matmul';
      const grid = (count: number): [number, number, number] => [Math.ceil(n / tileCols(shape)), Math.ceil(m / tileRows(shape)), count];
      if (tiling.splits > 1) {
        // Few output tiles over a long k (weight gradients: dW = dY^T X): k in chunks run as a
        // batch writing partial products, then summed, so every multiprocessor has work.
        const chunk = kPerGroup;
        const used = Math.ceil(k / chunk);
        const partial = ctx.alloc(used * m * n, 'float32');
        const params = [m, n, chunk, a.offset, chunk * a.colStride, a.rowStride, a.colStride, b.offset, chunk * b.rowStride, b.rowStride, b.colStride, 0, k].map(u);
        ctx.dispatchGrid(`${op} split ${used}`, pipeline, [G(a.buffer), G(b.buffer), partial], params, grid(used));
        backend.reduce('sum', partial, 1, used, m * n, out);
        ctx.free(partial); // reuse is ordered after these dispatches on the queue
        return;
      }
      const params = [m, n, k, a.offset, a.batchStride, a.rowStride, a.colStride, b.offset, b.batchStride, b.rowStride, b.colStride].map(u);
      // The grid's z dimension is limited: long batches go in slices, each with its own offsets.
      for (let b0 = 0; b0 < batch; b0 += MAX_GROUPS_X) {
        const slice = [...params, u(b0 * m * n), u(0xffffffff)];
        slice[3] = u(a.offset + b0 * a.batchStride);
        slice[7] = u(b.offset + b0 * b.batchStride);
        ctx.dispatchGrid(op, pipeline, [G(a.buffer), G(b.buffer), G(out)], slice, grid(Math.min(MAX_GROUPS_X, batch - b0)));
      }
    },


    ...blockSparse,

    gather(x, idx, outer, n, inner, count, out) {
      const t = wgslType(x.dtype);
      const pipeline = pipe(`gather|${t}`, () => `${HEAD(`@group(0) @binding(1) var<storage, read> X: array<${t}>;
@group(0) @binding(2) var<storage, read> I: array<i32>;
@group(0) @binding(3) var<storage, read_write> Y: array<${t}>;
${INDEX_ERRORS(4)}`)}\n${MAIN}
  let outer = p(0u); let n = p(1u); let inner = p(2u); let count = p(3u);
  if (i >= outer * count * inner) { return; }
  let o = i / (count * inner); let j = (i / inner) % count; let q = i % inner;
  let k = I[p(4u) + o * p(5u) + j * p(6u) + q * p(7u)];
  // Out-of-range indices read as 0 and are reported at the next read; X is read only in range:
  // Node runs Dawn without its robustness clamps (see index.ts).
  var v = ${t}(0);
  if (k >= 0 && u32(k) < n) { v = X[(o * n + u32(k)) * inner + q]; } else { reportIndex(1, k, n); }
  Y[i] = v;
}`);
      ctx.dispatch('gather', pipeline, [G(x), G(idx.buffer), G(out), ctx.indexErrors()], [outer, n, inner, count, idx.offset, ...idx.strides].map(u), outer * count * inner);
    },
    scatterAdd(src, idx, outer, n, inner, count, out) {
      const isInt = src.dtype === 'int32';
      this.fill(out, outer * n * inner, 0);
      // Float atomics do not exist in WGSL: add through a compare-exchange loop on the bits.
      const pipeline = pipe(`scatterAdd|${src.dtype}`, () => `${HEAD(`@group(0) @binding(1) var<storage, read> S: array<${isInt ? 'i32' : 'f32'}>;
@group(0) @binding(2) var<storage, read> I: array<i32>;
@group(0) @binding(3) var<storage, read_write> Y: array<atomic<${isInt ? 'i32' : 'u32'}>>;
${INDEX_ERRORS(4)}`)}\n${MAIN}
  let outer = p(0u); let n = p(1u); let inner = p(2u); let count = p(3u);
  if (i >= outer * count * inner) { return; }
  let o = i / (count * inner); let j = (i / inner) % count; let q = i % inner;
  let k = I[p(4u) + o * p(5u) + j * p(6u) + q * p(7u)];
  if (k < 0 || u32(k) >= n) { reportIndex(2, k, n); return; }
  let at = (o * n + u32(k)) * inner + q;
  let v = S[i];
  ${isInt ? 'atomicAdd(&Y[at], v);' : `var old = atomicLoad(&Y[at]);
  loop {
    let r = atomicCompareExchangeWeak(&Y[at], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (r.exchanged) { break; }
    old = r.old_value;
  }`}
}`);
      ctx.dispatch('scatterAdd', pipeline, [G(src), G(idx.buffer), G(out), ctx.indexErrors()], [outer, n, inner, count, idx.offset, ...idx.strides].map(u), outer * count * inner);
    },

    softmax(x, rows, n, log, causal, out) {
      // Causal: row i of each [n, n] matrix keeps columns 0..i; the rest is written as 0. Passes:
      // the maximum, the sum, the output (and the causal cut's zeros).
      rowOp('softmax', `softmax|${log}|${causal}`, rows, n, rowBindings(false), `
  let end = select(0u, n, live); let len = ${causal ? 'min(row % n + 1u, end)' : 'end'};
  var m = -3.4e38;
  for (var j = lane; j < len; j += LANES) { m = max(m, X[base + j]); }
  let mx = laneMax(m, l);
  var s = 0.0;
  for (var j = lane; j < len; j += LANES) { s += exp(X[base + j] - mx); }
  let total = laneSum(s, l);
  for (var j = lane; j < len; j += LANES) { Y[base + j] = ${log ? 'X[base + j] - mx - log(total)' : 'exp(X[base + j] - mx) / total'}; }${causal ? `
  for (var j = len + lane; j < end; j += LANES) { Y[base + j] = 0.0; }` : ''}`, [G(x), G(out)], [u(rows), u(n)]);
    },
    softmaxBackward(y, dy, rows, n, log, out) {
      rowOp('softmaxBackward', `softmaxBackward|${log}`, rows, n, rowBindings(true), `
  let len = select(0u, n, live);
  var s = 0.0;
  for (var j = lane; j < len; j += LANES) { s += ${log ? 'Dy[base + j]' : 'Dy[base + j] * X[base + j]'}; }
  let total = laneSum(s, l);
  for (var j = lane; j < len; j += LANES) { Y[base + j] = ${log ? 'Dy[base + j] - exp(X[base + j]) * total' : 'X[base + j] * (Dy[base + j] - total)'}; }`, [G(y), G(dy), G(out)], [u(rows), u(n)]);
    },
    layerNorm(x, gamma, beta, rows, n, eps, out, mean, rstd) {
      const g = !!gamma;
      const b = !!beta;
      // The mean, then the variance about it (two passes: no cancellation), then the output.
      rowOp('layerNorm', `layerNorm|${g}|${b}`, rows, n, `@group(0) @binding(1) var<storage, read> X: array<f32>;
${g ? '@group(0) @binding(2) var<storage, read> Gm: array<f32>;' : ''}
${b ? `@group(0) @binding(${g ? 3 : 2}) var<storage, read> Bt: array<f32>;` : ''}
@group(0) @binding(${2 + +g + +b}) var<storage, read_write> Y: array<f32>;
@group(0) @binding(${3 + +g + +b}) var<storage, read_write> Mean: array<f32>;
@group(0) @binding(${4 + +g + +b}) var<storage, read_write> Rstd: array<f32>;`, `
  let len = select(0u, n, live);
  var s = 0.0;
  for (var j = lane; j < len; j += LANES) { s += X[base + j]; }
  let mu = laneSum(s, l) / f32(n);
  var v = 0.0;
  for (var j = lane; j < len; j += LANES) { let d = X[base + j] - mu; v += d * d; }
  let rs = 1.0 / sqrt(laneSum(v, l) / f32(n) + pf(2u));
  if (live && lane == 0u) { Mean[row] = mu; Rstd[row] = rs; }
  for (var j = lane; j < len; j += LANES) {
    Y[base + j] = (X[base + j] - mu) * rs${g ? ' * Gm[j]' : ''}${b ? ' + Bt[j]' : ''};
  }`, [G(x), ...(gamma ? [G(gamma)] : []), ...(beta ? [G(beta)] : []), G(out), G(mean), G(rstd)], [u(rows), u(n), { f32: eps }]);
    },
    layerNormBackward(x, gamma, mean, rstd, dy, rows, n, dx, dgamma, dbeta) {
      const g = !!gamma;
      // dx = rstd (d - mean(d) - x^ mean(d x^)), d = dy * gamma; rows past the end read row 0's statistics.
      rowOp('layerNormBackward', `layerNormBackward|${g}`, rows, n, `@group(0) @binding(1) var<storage, read> X: array<f32>;
${g ? '@group(0) @binding(2) var<storage, read> Gm: array<f32>;' : ''}
@group(0) @binding(${2 + +g}) var<storage, read> Mean: array<f32>;
@group(0) @binding(${3 + +g}) var<storage, read> Rstd: array<f32>;
@group(0) @binding(${4 + +g}) var<storage, read> Dy: array<f32>;
@group(0) @binding(${5 + +g}) var<storage, read_write> Dx: array<f32>;`, `
  let len = select(0u, n, live); let at = select(0u, row, live);
  let mu = Mean[at]; let rs = Rstd[at];
  var sd = 0.0; var sdx = 0.0;
  for (var j = lane; j < len; j += LANES) {
    let xh = (X[base + j] - mu) * rs; let d = Dy[base + j]${g ? ' * Gm[j]' : ''};
    sd += d; sdx += d * xh;
  }
  let md = laneSum(sd, l) / f32(n);
  let mdx = laneSum(sdx, l) / f32(n);
  for (var j = lane; j < len; j += LANES) {
    let xh = (X[base + j] - mu) * rs; let d = Dy[base + j]${g ? ' * Gm[j]' : ''};
    Dx[base + j] = rs * (d - md - xh * mdx);
  }`, [G(x), ...(gamma ? [G(gamma)] : []), G(mean), G(rstd), G(dy), G(dx)], [u(rows), u(n)]);
      if (dgamma || dbeta) {
        // Column sums over the rows, split across workgroups (see columnKernel).
        const pipeline2 = pipe('layerNormParams', () => columnKernel(`@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Mean: array<f32>;
@group(0) @binding(3) var<storage, read> Rstd: array<f32>;
@group(0) @binding(4) var<storage, read> Dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> Dg: array<f32>;
@group(0) @binding(6) var<storage, read_write> Db: array<f32>;`, [
          { init: '0.0', value: 'Dy[r * inner + c] * (X[r * inner + c] - Mean[r]) * Rstd[r]', combine: (a, v) => `${a} + ${v}`, out: 'Dg' },
          { init: '0.0', value: 'Dy[r * inner + c]', combine: (a, v) => `${a} + ${v}`, out: 'Db' },
        ]));
        const scratch = ctx.alloc(n, 'float32');
        const targets = [dgamma ? G(dgamma) : scratch, dbeta ? G(dbeta) : scratch];
        columnReduce('layerNormBackward', pipeline2, [G(x), G(mean), G(rstd), G(dy)], targets, 1, rows, n, (partials, splits) => {
          if (dgamma) backend.reduce('sum', partials[0], 1, splits, n, dgamma);
          if (dbeta) backend.reduce('sum', partials[1], 1, splits, n, dbeta);
        });
        ctx.free(scratch); // later reuse is ordered after this dispatch on the queue
      }
    },
    adamStep(list, spec) {
      // A bind group holds a fixed set of buffers, so a list cannot go to one dispatch as it does
      // on CUDA: in place (outputs = inputs, what core asks for in training), parameters of up to
      // PACK_MAX_FLOATS go as many to a dispatch as the bind group holds (4 buffers each: two with
      // 10 bindings), larger ones alone; otherwise one dispatch per parameter (7 buffers). In place
      // needs its own kernel: a buffer may not be bound twice where one binding is writable.
      const { coupled, shrink, step } = adamCoefficients(spec);
      const coefficients: Param[] = [coupled, shrink, spec.beta1, spec.beta2, step, spec.biasCorrection2, spec.eps].map((f) => ({ f32: f }));
      const live = list.filter((t) => t.size > 0);
      const inPlace = live.filter((t) => t.pOut === t.p && t.mOut === t.m && t.vOut === t.v);
      const chunk = WG * PER_THREAD;
      for (const pack of packs(inPlace, (t) => t.size, Math.floor(storageBuffers / 4))) {
        const firsts = prefix(pack.map((t) => Math.ceil(t.size / chunk)));
        const groups = firsts[pack.length];
        const params = [u(0), ...pack.flatMap((t, i) => [u(t.size), u(firsts[i])]), u(groups), ...coefficients];
        ctx.dispatchGrid('adamStep', packedKernel('adamStepInPlace', pack.length, adamInPlaceWgsl), pack.flatMap((t) => [t.p, t.g, t.m, t.v].map(G)), params, [Math.min(groups, MAX_GROUPS_X), Math.ceil(groups / MAX_GROUPS_X), 1]);
      }
      const pipeline = pipe('adamStep', () => `${HEAD(`@group(0) @binding(1) var<storage, read> Pin: array<f32>;
@group(0) @binding(2) var<storage, read> Gr: array<f32>;
@group(0) @binding(3) var<storage, read> Min: array<f32>;
@group(0) @binding(4) var<storage, read> Vin: array<f32>;
@group(0) @binding(5) var<storage, read_write> Po: array<f32>;
@group(0) @binding(6) var<storage, read_write> Mo: array<f32>;
@group(0) @binding(7) var<storage, read_write> Vo: array<f32>;`)}\n${ADAM_WGSL}\n${perElement(`
    let r = adam(Pin[i], Gr[i], Min[i], Vin[i], 1u);
    Po[i] = r.x; Mo[i] = r.y; Vo[i] = r.z;`)}`);
      const packed = new Set(inPlace);
      for (const t of live) {
        if (packed.has(t)) continue;
        const { p, g, m, v, size, pOut, mOut, vOut } = t;
        ctx.dispatch('adamStep', pipeline, [p, g, m, v, pOut, mOut, vOut].map(G), [u(size), ...coefficients], perElementThreads(size));
      }
    },
    sumOfSquares(xs, sizes, out) {
      // Partial sums per chunk of SUMSQ_CHUNK elements into one list, then one sum over it. Small
      // buffers go several to a dispatch (as many as a bind group may hold), large ones alone.
      const items = xs.map((x, i) => ({ x: G(x), n: sizes[i], parts: Math.ceil(sizes[i] / SUMSQ_CHUNK) })).filter((t) => t.n > 0);
      const total = items.reduce((a, t) => a + t.parts, 0);
      if (total === 0) return backend.fill(out, 1, 0);
      const partial = ctx.alloc(total, 'float32');
      let at = 0;
      for (const pack of packs(items, (t) => t.n, storageBuffers - 1)) {
        const firsts = prefix(pack.map((t) => t.parts));
        const groups = firsts[pack.length];
        const params = [at, ...pack.flatMap((t, i) => [t.n, firsts[i]]), groups].map(u);
        ctx.dispatchGrid('sumOfSquares', packedKernel('sumOfSquares', pack.length, sumOfSquaresWgsl), [...pack.map((t) => t.x), partial], params, [Math.min(groups, MAX_GROUPS_X), Math.ceil(groups / MAX_GROUPS_X), 1]);
        at += groups;
      }
      backend.reduce('sum', partial, 1, total, 1, out);
      ctx.free(partial); // reuse is ordered after these dispatches on the queue
    },
    scaleBuffers(xs, sizes, factor, outs) {
      const chunk = WG * PER_THREAD;
      const items = xs.map((x, i) => ({ x: G(x), y: G(outs[i]), n: sizes[i], parts: Math.ceil(sizes[i] / chunk) })).filter((t) => t.n > 0);
      // Inputs and outputs of a pack plus the factor share the bind group's storage buffers.
      for (const pack of packs(items, (t) => t.n, Math.floor((storageBuffers - 1) / 2))) {
        const firsts = prefix(pack.map((t) => t.parts));
        const groups = firsts[pack.length];
        const params = [0, ...pack.flatMap((t, i) => [t.n, firsts[i]]), groups].map(u);
        ctx.dispatchGrid('scaleBuffers', packedKernel('scaleBuffers', pack.length, scaleBuffersWgsl), [G(factor), ...pack.map((t) => t.x), ...pack.map((t) => t.y)], params, [Math.min(groups, MAX_GROUPS_X), Math.ceil(groups / MAX_GROUPS_X), 1]);
      }
    },
  };
  return backend;

  /**
   * Runs a columnKernel over x [outer, n, inner]: one dispatch when the rows fit one split per
   * workgroup column, else partial results [splits, outer, inner] per output and `finish` to fold them.
   */
  function columnReduce(op: string, kernel: Kernel, inputs: GpuBuffer[], outs: GpuBuffer[], outer: number, n: number, inner: number,
    finish: (partials: GpuBuffer[], splits: number) => void): void {
    if (outer * inner === 0) return;
    const xg = Math.ceil(inner / COLUMN_TILE);
    const wanted = Math.ceil(COLUMN_TARGET_GROUPS / (xg * outer));
    let splits = Math.max(1, Math.min(wanted, Math.ceil(n / COLUMN_MIN_ROWS)));
    const chunk = Math.max(1, Math.ceil(n / splits));
    splits = Math.max(1, Math.ceil(n / chunk));
    const targets = splits === 1 ? outs : outs.map(() => ctx.alloc(splits * outer * inner, 'float32'));
    const pairs = xg * outer;
    const gx = Math.min(pairs, MAX_GROUPS_X);
    ctx.dispatchGrid(op, kernel, [...inputs, ...targets], [outer, n, inner, chunk, xg].map(u), [gx, Math.ceil(pairs / gx), splits]);
    if (splits > 1) {
      finish(targets, splits);
      for (const b of targets) ctx.free(b); // reuse is ordered after these dispatches on the queue
    }
  }

}

/** Buffers up to this many floats are packed several to a dispatch by the list kernels. */
const PACK_MAX_FLOATS = 1 << 20;
/** Sums over at most FEW_ROWS rows of at least FEW_ROWS_MIN_FLOATS outputs in all take reduceFewRows. */
const FEW_ROWS = 64;
const FEW_ROWS_MIN_FLOATS = 1 << 14;
/**
 * Dense products other than X W^T's layout store vec4s up to this k per workgroup (dY W's layout:
 * the first; measured slower at 1024 and 4096, NOTES 37); longer ones store scalars.
 */
const VEC_STORE_KN_MAX_K = 512;
const VEC_STORE_MAX_K = 2048;


/**
 * A list's buffers in dispatches: up to `per` buffers of at most PACK_MAX_FLOATS floats share one
 * (a bind group holds a fixed number of buffers, so a whole list cannot go to one dispatch as it
 * does on CUDA); larger ones go alone.
 */
function packs<T>(items: readonly T[], size: (t: T) => number, per: number): T[][] {
  const out: T[][] = [];
  let open: T[] = [];
  for (const t of items) {
    if (size(t) > PACK_MAX_FLOATS) {
      out.push([t]);
      continue;
    }
    open.push(t);
    if (open.length === per) {
      out.push(open);
      open = [];
    }
  }
  if (open.length) out.push(open);
  return out;
}

/** [0, a, a + b, ...]: the first workgroup of each buffer of a pack, and the total last. */
function prefix(counts: readonly number[]): number[] {
  const out = [0];
  for (const c of counts) out.push(out[out.length - 1] + c);
  return out;
}

/**
 * The buffer `i` (of `count`) that workgroup `w` works on and its first element: params are
 * [base, (n, first workgroup) per buffer, workgroups]; the grid may be 2-D, its last row partly idle.
 */
function packedHead(count: number, chunk: number): string {
  return `let w = wg.x + wg.y * ${MAX_GROUPS_X}u;
  if (w >= p(${1 + 2 * count}u)) { return; }
  var i = 0u;
  for (var j = 1u; j < ${count}u; j++) { if (w >= p(2u + 2u * j)) { i = j; } }
  let n = p(1u + 2u * i);
  let start = (w - p(2u + 2u * i)) * ${chunk}u;`;
}

/** Sum of squares of one SUMSQ_CHUNK of buffer X<i> into Part[base + workgroup]. */
function sumOfSquaresWgsl(count: number): string {
  const cases = Array.from({ length: count }, (_, k) => `case ${k}u: { for (var j = start + l; j < end; j += ${WG}u) { let v = X${k}[j]; acc += v * v; } }`).join('\n    ');
  return `${PARAMS}
${Array.from({ length: count }, (_, k) => `@group(0) @binding(${k + 1}) var<storage, read> X${k}: array<f32>;`).join('\n')}
@group(0) @binding(${count + 1}) var<storage, read_write> Part: array<f32>;
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  ${packedHead(count, SUMSQ_CHUNK)}
  let end = min(n, start + ${SUMSQ_CHUNK}u);
  var acc = 0.0;
  switch i {
    ${cases}
    default: {}
  }
  red[l] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) { if (l < s) { red[l] += red[l + s]; } workgroupBarrier(); }
  if (l == 0u) { Part[p(0u) + w] = red[0]; }
}`;
}

/**
 * One Adam(W) update of an element: p, g, m, v in, (p', m', v') out. Its coefficients are the
 * uniform words c.. (adamCoefficients' coupled and shrink, beta1, beta2, step, 1 - beta2^t, eps).
 */
const ADAM_WGSL = /* wgsl */ `
fn adam(pv: f32, gr: f32, mv: f32, vv: f32, c: u32) -> vec3<f32> {
  let gi = gr + pf(c) * pv;
  let mi = pf(c + 2u) * mv + (1.0 - pf(c + 2u)) * gi;
  let vi = pf(c + 3u) * vv + (1.0 - pf(c + 3u)) * gi * gi;
  return vec3<f32>(pv * pf(c + 1u) - pf(c + 4u) * mi / (sqrt(vi / pf(c + 5u)) + pf(c + 6u)), mi, vi);
}`;

/**
 * One Adam(W) step in place over one chunk of WG * PER_THREAD elements of parameter <i> (buffers
 * P, G, M, V); the coefficients follow packedHead's params, as adamStep's separate kernel takes them.
 */
function adamInPlaceWgsl(count: number): string {
  const c = 2 + 2 * count; // the first coefficient (ADAM_WGSL), after packedHead's words
  const cases = Array.from({ length: count }, (_, k) => `case ${k}u: { for (var j = start + l; j < end; j += ${WG}u) {
      let r = adam(P${k}[j], G${k}[j], M${k}[j], V${k}[j], ${c}u); P${k}[j] = r.x; M${k}[j] = r.y; V${k}[j] = r.z; } }`).join('\n    ');
  const bind = (k: number, i: number, name: string, access: string) => `@group(0) @binding(${4 * k + i + 1}) var<storage, ${access}> ${name}${k}: array<f32>;`;
  return `${PARAMS}
${ADAM_WGSL}
${Array.from({ length: count }, (_, k) => [bind(k, 0, 'P', 'read_write'), bind(k, 1, 'G', 'read'), bind(k, 2, 'M', 'read_write'), bind(k, 3, 'V', 'read_write')].join('\n')).join('\n')}
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  ${packedHead(count, WG * PER_THREAD)}
  let end = min(n, start + ${WG * PER_THREAD}u);
  switch i {
    ${cases}
    default: {}
  }
}`;
}

/** Y<i> = X<i> * F[0] over one chunk of WG * PER_THREAD elements. */
function scaleBuffersWgsl(count: number): string {
  const cases = Array.from({ length: count }, (_, k) => `case ${k}u: { for (var j = start + l; j < end; j += ${WG}u) { Y${k}[j] = X${k}[j] * k; } }`).join('\n    ');
  return `${PARAMS}
@group(0) @binding(1) var<storage, read> F: array<f32>;
${Array.from({ length: count }, (_, k) => `@group(0) @binding(${k + 2}) var<storage, read> X${k}: array<f32>;`).join('\n')}
${Array.from({ length: count }, (_, k) => `@group(0) @binding(${count + k + 2}) var<storage, read_write> Y${k}: array<f32>;`).join('\n')}
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  ${packedHead(count, WG * PER_THREAD)}
  let end = min(n, start + ${WG * PER_THREAD}u);
  let k = F[0];
  switch i {
    ${cases}
    default: {}
  }
}`;
}
/** Elements per workgroup of the sum-of-squares partials. */
const SUMSQ_CHUNK = 8192;
/** Elementwise kernels: each thread handles this many elements, a workgroup apart (coalesced). */
const PER_THREAD = 4;
const perElementThreads = (n: number) => Math.ceil(n / PER_THREAD);

/**
 * The entry point of an elementwise kernel: `body` runs for element `i` (< p(0)), PER_THREAD
 * elements per thread so several loads are in flight; full chunks skip the bounds checks.
 */
function perElement(body: string): string {
  const chunk = WG * PER_THREAD;
  return `@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let first = (wg.x + wg.y * nwg.x) * ${chunk}u + lid;
  let count = p(0u);
  if (first + ${chunk - WG}u < count) {
    for (var j = 0u; j < ${PER_THREAD}u; j++) { let i = first + j * ${WG}u; ${body} }
  } else {
    for (var j = 0u; j < ${PER_THREAD}u; j++) { let i = first + j * ${WG}u; if (i < count) { ${body} } }
  }
}`;
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
  let r = p(1u);
  let I = p(r);
  let J = p(r + 1u);
  let id = wg.x + wg.y * nwg.x;
  let tileId = id % p(0u);
  var rem = id / p(0u);
  var src = p(8u);
  var dst = p(15u);
  for (var d = i32(r) - 3; d >= 0; d--) {
    let dim = p(2u + u32(d));
    let c = rem % dim;
    rem /= dim;
    src += c * p(9u + u32(d));
    dst += c * p(16u + u32(d));
  }
  if (rem > 0u) { return; } // past the last batch: the grid is rounded up
  let tilesJ = (J + 31u) / 32u;
  let i0 = (tileId / tilesJ) * 32u;
  let j0 = (tileId % tilesJ) * 32u;
  let tx = lid % 32u;
  let ty = lid / 32u;
  let sj = p(9u + r - 1u);
  let di = p(16u + r - 2u);
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
