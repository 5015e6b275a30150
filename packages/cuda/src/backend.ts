/**
 * The CUDA backend: every primitive of @sparsegrad/core's Backend as a CUDA kernel of ours
 * (native/kernels/), except dense matmul, which is cuBLAS. This file decides which kernel runs
 * with which launch shape and arguments; the addon only launches. All work goes to one stream in
 * program order; `read` is the only wait, and it does not block the event loop.
 */
import type { Backend, DType, MatmulPrecision } from '@sparsegrad/core';
import { adamCoefficients, type BackendBuffer, type BinaryOp, type MatrixView, type ReduceOp, type UnaryOp, type View } from '@sparsegrad/core/backend';
import { CachingAllocator, CudaBuffer } from './allocator.ts';
import { blockSparseKernels } from './blocksparse.ts';
import { Args } from './args.ts';
import { listChunks, listStruct } from './lists.ts';
import { float4Layout, outputOperand, stridedLayout, transposeGrid, viewOperand } from './layout.ts';
import type { Addon, DeviceProperties } from './native.ts';
import { deviceIndexErrors, isIndexError } from './index-errors.ts';
import { DEFAULT_CUDA_TUNING, type CudaTuning } from './tuning.ts';

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
export const BINARY_OPS: readonly BinaryOp[] = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'ne', 'lt', 'le', 'gt', 'ge'];
const COMPARISONS = new Set<BinaryOp>(['eq', 'ne', 'lt', 'le', 'gt', 'ge']);
export const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'max', 'min', 'argmax', 'argmin'];
const PRECISION_CODE: Record<MatmulPrecision, number> = { highest: 0, high: 1, medium: 2 };

const THREADS = 256;
/** Rows up to this long are reduced by one warp each (kernels *_warp), longer ones by a block. */
const WARP_ROW = 1024;
const tname = (d: DType) => (d === 'int32' ? 'i32' : 'f32');

export interface CudaBackend extends Backend {
  readonly properties: DeviceProperties;
  /** Waits for all queued work (benchmarks). */
  synchronize(): void;
  /** Device milliseconds of the work `fn` queues, timed with CUDA events (waits for it). */
  timeDevice(fn: () => void): number;
  /** Returns the allocator's cached blocks to the driver. */
  emptyCache(): void;
  /** The kernel routes in use (tuning.ts): the defaults unless a benchmark or test set others. */
  readonly tuning: Readonly<CudaTuning>;
  /** Sets some routes (the rest keep their values); returns the previous tuning, to restore it. */
  setTuning(changes: Partial<CudaTuning>): Readonly<CudaTuning>;
}

export function createCudaBackend(addon: Addon, props: DeviceProperties): CudaBackend {
  const allocator = new CachingAllocator(addon);
  const args = new Args();
  const ids = new Map<string, number>();
  const sms = props.multiprocessors;
  const P = (b: BackendBuffer) => (b as CudaBuffer).ptr;
  /** Blocks for a grid-stride loop over n items: enough to fill the GPU, no more. */
  const blocksFor = (n: number, perBlock = THREADS) => Math.max(1, Math.min(Math.ceil(n / perBlock), sms * 16));
  /** Blocks per tensor of a list launch (grid y = the tensors): the largest tensor's share of a few waves. */
  const listBlocks = (sizes: readonly number[]) => Math.max(1, Math.min(Math.ceil(Math.max(...sizes) / THREADS), Math.ceil((sms * 8) / sizes.length) * 4));

  function launch(op: string, kernel: string, grid: [number, number, number], threads: number, a: Args, sharedBytes = 0): void {
    try {
      let id = ids.get(kernel);
      if (id === undefined) {
        ids.set(kernel, (id = addon.fn(kernel)));
        // Dynamic shared memory beyond 48 KB must be allowed per kernel.
        if (sharedBytes > 0) addon.setSharedMemory(id, sharedBytes);
      }
      addon.launch(id, grid[0], grid[1], grid[2], threads, 1, 1, sharedBytes, a.data, a.offsets);
    } catch (e) {
      throw new Error(`cuda: ${op}: ${(e as Error).message}`);
    }
  }
  let tuning: Readonly<CudaTuning> = DEFAULT_CUDA_TUNING;
  /** Bytes of the live buffers as requested (the allocator reserves whole size classes). */
  let liveBytes = 0;
  function alloc(size: number, dtype: DType): CudaBuffer {
    let ptr: number;
    try {
      ptr = allocator.alloc(Math.max(1, size) * 4);
    } catch (e) {
      throw new Error(`cuda: alloc: ${(e as Error).message}`);
    }
    // Poisoned (tests): an output element a kernel fails to write shows instead of stale data.
    if (tuning.poison) addon.memset32(ptr, 0x7fc00000, size);
    liveBytes += size * 4;
    return new CudaBuffer(ptr, size, dtype);
  }
  function free(b: BackendBuffer): void {
    liveBytes -= b.size * 4;
    allocator.release(P(b), Math.max(1, b.size) * 4);
  }
  function upload(data: Int32Array | Float32Array): CudaBuffer {
    const b = alloc(data.length, data instanceof Int32Array ? 'int32' : 'float32');
    addon.upload(b.ptr, data);
    return b;
  }

  /** A row-wise kernel (softmax, layer norm, row reductions): a warp per row for short rows, else a block. */
  function rowLaunch(op: string, kernel: string, rows: number, n: number, a: Args): void {
    if (n <= WARP_ROW) launch(op, `${kernel}_warp`, [blocksFor(rows, THREADS / 32), 1, 1], THREADS, a);
    else launch(op, `${kernel}_block`, [Math.max(1, Math.min(rows, sms * 8)), 1, 1], THREADS, a);
  }

  /** How many pieces to cut a reduction of `n` into when only `outputs` results would keep the GPU too idle. */
  const piecesFor = (outputs: number, n: number, minPiece: number) =>
    Math.max(1, Math.min(Math.ceil((sms * 2048) / Math.max(1, outputs)), Math.ceil(n / minPiece)));

  function reduceF32(op: 'sum' | 'max' | 'min', x: number, outer: number, n: number, inner: number, out: number, split = true): void {
    if (inner === 1) {
      // Rows; a few very long rows are cut into pieces reduced in a second pass.
      const pieces = outer < 2 * sms && n > 16384 ? piecesFor(outer * 32, n, 4096) : 1;
      const chunk = Math.ceil(n / pieces);
      const used = Math.ceil(n / chunk);
      const target = used > 1 ? allocator.alloc(outer * used * 4) : out;
      rowLaunch(op, `${op}_rows`, outer * used, chunk, args.reset().ptr(x).ptr(target).u32(outer).u32(n).u32(chunk).u32(used));
      if (used > 1) {
        reduceF32(op, target, outer, used, 1, out);
        allocator.release(target, outer * used * 4);
      }
      return;
    }
    // Columns; when there are few, the rows are cut into pieces too: partial [outer, pieces, inner],
    // reduced by one more launch without further cuts (at most a few hundred rows remain).
    const pieces = split ? piecesFor(outer * inner, n, 64) : 1;
    const chunk = Math.ceil(n / pieces);
    const used = Math.ceil(n / chunk);
    const target = used > 1 ? allocator.alloc(outer * used * inner * 4) : out;
    launch(
      op,
      `${op}_columns`,
      [blocksFor(outer * used * inner), 1, 1],
      THREADS,
      args.reset().ptr(x).ptr(target).u32(outer).u32(n).u32(inner).u32(chunk).u32(used),
    );
    if (used > 1) {
      reduceF32(op, target, outer, used, inner, out, false);
      allocator.release(target, outer * used * inner * 4);
    }
  }

  const indexErrors = deviceIndexErrors(addon);

  const bsr = blockSparseKernels({
    addon,
    allocator,
    args,
    sms,
    launch,
    upload,
    free,
    ptr: P,
    blocksFor,
    hopper: props.computeCapability === '9.0',
    tuning: () => tuning,
    sumMiddle: (x, outer, n, inner, out) => reduceF32('sum', x, outer, n, inner, out),
    alloc: (size) => alloc(size, 'float32'),
    fill: (out, size, value) => backend.fill(out, size, value),
    matmul: (...a) => backend.matmul(...a),
  });

  const backend: CudaBackend = {
    name: 'cuda',
    properties: props,
    device: {
      name: 'cuda',
      description: `${props.name} (compute capability ${props.computeCapability}, ${props.multiprocessors} multiprocessors, ${(props.totalMemory / 2 ** 30).toFixed(0)} GiB)`,
    },

    alloc,
    upload,
    async read(b, size) {
      let bytes: ArrayBuffer;
      try {
        [bytes] = await Promise.all([addon.read(P(b), size * 4), indexErrors.check()]);
      } catch (e) {
        throw isIndexError(e) ? e : new Error(`cuda: read: ${(e as Error).message}`);
      }
      return b.dtype === 'int32' ? new Int32Array(bytes) : new Float32Array(bytes);
    },
    free,
    memory: () => ({ buffers: allocator.liveBlocks, bytes: liveBytes }),

    fill(out, size, value) {
      const bits = out.dtype === 'int32' ? value | 0 : new Uint32Array(Float32Array.of(value).buffer)[0];
      addon.memset32(P(out), bits >>> 0, size);
    },
    random(out, size, spec) {
      if (size === 0) return;
      launch(
        'random',
        'random_f32',
        [blocksFor(size), 1, 1],
        THREADS,
        args
          .reset()
          .ptr(P(out))
          .u32(size)
          .i32(spec.kind === 'normal' ? 1 : 0)
          .u32(spec.key)
          .f32(spec.a)
          .f32(spec.b),
      );
    },
    copy(src, dst) {
      const L = stridedLayout('copy', src.shape, [viewOperand(dst), viewOperand(src)]);
      if (L.n === 0) return;
      if (L.flat && src.buffer.dtype === dst.buffer.dtype) {
        addon.copy(P(dst.buffer) + 4 * L.ops[0].offset, P(src.buffer) + 4 * L.ops[1].offset, 4 * L.n);
        return;
      }
      const tiles = src.buffer.dtype === dst.buffer.dtype ? transposeGrid(L) : undefined;
      if (tiles) {
        launch('copy', 'transpose_32', tiles, THREADS, args.reset().ptr(P(src.buffer)).ptr(P(dst.buffer)).strided(L.n, L.shape, L.flat, L.ops));
        return;
      }
      const v4 = src.buffer.dtype === 'float32' && dst.buffer.dtype === 'float32' ? float4Layout(L) : undefined;
      const V = v4 ?? L;
      launch(
        'copy',
        v4 ? 'copy_f32x4' : `copy_${tname(src.buffer.dtype)}_${tname(dst.buffer.dtype)}`,
        [blocksFor(V.n), 1, 1],
        THREADS,
        args.reset().ptr(P(src.buffer)).ptr(P(dst.buffer)).strided(V.n, V.shape, V.flat, V.ops),
      );
    },

    unary(op, x, out) {
      const L = stridedLayout(op, x.shape, [outputOperand(x.shape), viewOperand(x)]);
      const v4 = x.buffer.dtype === 'float32' ? float4Layout(L) : undefined;
      const V = v4 ?? L;
      launch(
        op,
        v4 ? 'unary_f32x4' : `unary_${tname(x.buffer.dtype)}`,
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
      const v4 = dtype === 'float32' ? float4Layout(L) : undefined;
      const kernel = v4 ? 'binary_f32x4' : dtype === 'float32' ? 'binary_f32' : COMPARISONS.has(op) ? 'compare_i32' : 'binary_i32';
      const scalars = (typeof a === 'number' ? 1 : 0) | (typeof b === 'number' ? 2 : 0);
      const s = (v: View | number) => (typeof v === 'number' ? v : 0);
      args
        .reset()
        .ptr(typeof a === 'number' ? 0 : P(a.buffer))
        .ptr(typeof b === 'number' ? 0 : P(b.buffer))
        .ptr(P(out))
        .i32(BINARY_OPS.indexOf(op))
        .i32(scalars);
      if (dtype === 'float32') args.f32(s(a)).f32(s(b));
      else args.i32(s(a)).i32(s(b));
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

    reduce(op, x, outer, n, inner, out) {
      if (outer * inner === 0) return;
      if (x.dtype === 'float32' && (op === 'sum' || op === 'max' || op === 'min') && n > 0) {
        reduceF32(op, P(x), outer, n, inner, P(out));
        return;
      }
      const kernel = op === 'argmax' || op === 'argmin' ? (x.dtype === 'float32' ? 'arg_reduce_f32' : 'reduce_simple_i32') : `reduce_simple_${tname(x.dtype)}`;
      launch(
        op,
        kernel,
        [blocksFor(outer * inner), 1, 1],
        THREADS,
        args.reset().ptr(P(x)).ptr(P(out)).i32(REDUCE_OPS.indexOf(op)).u32(outer).u32(n).u32(inner),
      );
    },

    matmul(a: MatrixView, b: MatrixView, out, batch, m, n, k, precision) {
      if (batch * m * n === 0) return;
      if (k === 0) return backend.fill(out, batch * m * n, 0);
      // Row-major C [m, n] = A B is column-major C^T = B^T A^T: cuBLAS gets B as its first operand.
      const opB = blasOperand(k, n, b);
      const opA = blasOperand(m, k, a);
      const temps: CudaBuffer[] = [];
      const dense = (v: MatrixView, r: number, c: number) => {
        // Neither stride is 1 (or a leading dimension is too small): copy to a contiguous batch.
        const t = alloc(batch * r * c, 'float32');
        temps.push(t);
        backend.copy(
          { buffer: v.buffer, offset: v.offset, shape: [batch, r, c], strides: [v.batchStride, v.rowStride, v.colStride] },
          { buffer: t, offset: 0, shape: [batch, r, c], strides: [r * c, c, 1] },
        );
        return { ptr: t.ptr, op: 0, ld: c, stride: r * c };
      };
      const B = opB ? { ptr: P(b.buffer) + 4 * b.offset, ...opB, stride: b.batchStride } : dense(b, k, n);
      const A = opA ? { ptr: P(a.buffer) + 4 * a.offset, ...opA, stride: a.batchStride } : dense(a, m, k);
      try {
        addon.gemm(
          B.op,
          A.op,
          n,
          m,
          k,
          B.ptr,
          B.ld,
          B.stride,
          A.ptr,
          A.ld,
          A.stride,
          P(out),
          n,
          m * n,
          batch,
          PRECISION_CODE[precision],
          tuning.cublasLt ? 1 : 0,
        );
      } catch (e) {
        throw new Error(`cuda: matmul: ${(e as Error).message}`);
      } finally {
        temps.forEach(free);
      }
    },

    ...bsr,

    gather(x, idx, outer, n, inner, count, out) {
      const total = outer * count * inner;
      if (total === 0) return;
      launch(
        'gather',
        `gather_${tname(x.dtype)}`,
        [blocksFor(total), 1, 1],
        THREADS,
        args
          .reset()
          .ptr(P(x))
          .ptr(P(idx.buffer))
          .ptr(P(out))
          .u32(outer)
          .u32(n)
          .u32(inner)
          .u32(count)
          .u32(idx.offset)
          .i32(idx.strides[0])
          .i32(idx.strides[1])
          .i32(idx.strides[2])
          .ptr(indexErrors.pointer()),
      );
    },
    scatterAdd(src, idx, outer, n, inner, count, out) {
      addon.memset32(P(out), 0, outer * n * inner);
      const total = outer * count * inner;
      if (total === 0) return;
      launch(
        'scatterAdd',
        `scatter_add_${tname(src.dtype)}`,
        [blocksFor(total), 1, 1],
        THREADS,
        args
          .reset()
          .ptr(P(src))
          .ptr(P(idx.buffer))
          .ptr(P(out))
          .u32(outer)
          .u32(n)
          .u32(inner)
          .u32(count)
          .u32(idx.offset)
          .i32(idx.strides[0])
          .i32(idx.strides[1])
          .i32(idx.strides[2])
          .ptr(indexErrors.pointer()),
      );
    },

    softmax(x, rows, n, log, causal, out) {
      rowLaunch(
        'softmax',
        'softmax',
        rows,
        n,
        args
          .reset()
          .ptr(P(x))
          .ptr(P(out))
          .u32(rows)
          .u32(n)
          .i32(log ? 1 : 0)
          .i32(causal ? 1 : 0),
      );
    },
    softmaxBackward(y, dy, rows, n, log, out) {
      rowLaunch(
        'softmaxBackward',
        'softmax_backward',
        rows,
        n,
        args
          .reset()
          .ptr(P(y))
          .ptr(P(dy))
          .ptr(P(out))
          .u32(rows)
          .u32(n)
          .i32(log ? 1 : 0),
      );
    },
    layerNorm(x, gamma, beta, rows, n, eps, out, mean, rstd) {
      rowLaunch(
        'layerNorm',
        'layer_norm',
        rows,
        n,
        args
          .reset()
          .ptr(P(x))
          .ptr(gamma ? P(gamma) : 0)
          .ptr(beta ? P(beta) : 0)
          .ptr(P(out))
          .ptr(P(mean))
          .ptr(P(rstd))
          .u32(rows)
          .u32(n)
          .f32(eps),
      );
    },
    layerNormBackward(x, gamma, mean, rstd, dy, rows, n, dx, dgamma, dbeta) {
      rowLaunch(
        'layerNormBackward',
        'layer_norm_backward',
        rows,
        n,
        args
          .reset()
          .ptr(P(x))
          .ptr(gamma ? P(gamma) : 0)
          .ptr(P(mean))
          .ptr(P(rstd))
          .ptr(P(dy))
          .ptr(P(dx))
          .u32(rows)
          .u32(n),
      );
      if (!dgamma && !dbeta) return;
      // Column sums over the rows, in pieces when the columns alone would leave the GPU idle.
      const pieces = piecesFor(n, rows, 64);
      const chunk = Math.ceil(rows / pieces);
      const used = Math.ceil(rows / chunk);
      const scratch = (b: BackendBuffer | null) => (used > 1 || !b ? allocator.alloc(used * n * 4) : P(b));
      const dg = scratch(dgamma);
      const db = scratch(dbeta);
      launch(
        'layerNormBackward',
        'layer_norm_params',
        [blocksFor(used * n), 1, 1],
        THREADS,
        args.reset().ptr(P(x)).ptr(P(mean)).ptr(P(rstd)).ptr(P(dy)).ptr(dg).ptr(db).u32(rows).u32(n).u32(chunk).u32(used),
      );
      if (used > 1) {
        if (dgamma) reduceF32('sum', dg, 1, used, n, P(dgamma));
        if (dbeta) reduceF32('sum', db, 1, used, n, P(dbeta));
      }
      if (dg !== (dgamma && P(dgamma))) allocator.release(dg, used * n * 4);
      if (db !== (dbeta && P(dbeta))) allocator.release(db, used * n * 4);
    },
    adamStep(list, spec) {
      const { coupled, shrink, step } = adamCoefficients(spec);
      for (const chunk of listChunks(list.filter((t) => t.size > 0))) {
        const struct = listStruct(
          ['p', 'g', 'm', 'v', 'pOut', 'mOut', 'vOut'].map((k) => chunk.map((t) => P(t[k as 'p']))),
          [chunk.map((t) => t.size)],
        );
        launch(
          'adamStep',
          'adam_step_list',
          [listBlocks(chunk.map((t) => t.size)), chunk.length, 1],
          THREADS,
          args.reset().raw(struct, 8).f32(coupled).f32(shrink).f32(spec.beta1).f32(spec.beta2).f32(step).f32(spec.biasCorrection2).f32(spec.eps),
        );
      }
    },
    sumOfSquares(xs, sizes, out) {
      const items = xs.map((x, i) => ({ x: P(x), n: sizes[i] })).filter((t) => t.n > 0);
      const chunks = listChunks(items);
      const grids = chunks.map((c) => listBlocks(c.map((t) => t.n)));
      const total = chunks.reduce((a, c, i) => a + c.length * grids[i], 0);
      if (total === 0) return backend.fill(out, 1, 0);
      const partial = allocator.alloc(total * 4);
      let base = 0;
      chunks.forEach((c, i) => {
        launch(
          'sumOfSquares',
          'sum_squares_list',
          [grids[i], c.length, 1],
          THREADS,
          args
            .reset()
            .raw(listStruct([c.map((t) => t.x)], [c.map((t) => t.n)]), 8)
            .ptr(partial)
            .u32(base),
        );
        base += c.length * grids[i];
      });
      reduceF32('sum', partial, 1, total, 1, P(out));
      allocator.release(partial, total * 4);
    },
    scaleBuffers(xs, sizes, factor, outs) {
      const items = xs.map((x, i) => ({ x: P(x), y: P(outs[i]), n: sizes[i] })).filter((t) => t.n > 0);
      for (const c of listChunks(items)) {
        launch(
          'scaleBuffers',
          'scale_list',
          [listBlocks(c.map((t) => t.n)), c.length, 1],
          THREADS,
          args
            .reset()
            .raw(listStruct([c.map((t) => t.x), c.map((t) => t.y)], [c.map((t) => t.n)]), 8)
            .ptr(P(factor)),
        );
      }
    },

    synchronize: () => addon.synchronize(),
    timeDevice(fn) {
      const start = addon.recordEvent();
      fn();
      const end = addon.recordEvent();
      addon.synchronize();
      const ms = addon.elapsed(start, end);
      addon.releaseEvents();
      return ms;
    },
    emptyCache: () => allocator.emptyCache(),
    get tuning() {
      return tuning;
    },
    setTuning(changes) {
      const previous = tuning;
      tuning = Object.freeze({ ...previous, ...changes });
      return previous;
    },
  };
  return backend;
}

/**
 * How cuBLAS (column-major) can read the transpose of a row-major-indexed r x c matrix with the
 * given strides, without a copy: as a column-major c x r matrix (op N) when columns are
 * contiguous, or as the r x c matrix itself transposed (op T) when rows are. A size-1 dim may
 * have any stride. Null when neither works.
 */
function blasOperand(r: number, c: number, v: MatrixView): { op: number; ld: number } | null {
  const cs = c === 1 ? 1 : v.colStride;
  const rs = r === 1 ? Math.max(c, 1) : v.rowStride;
  if (cs === 1 && rs >= c) return { op: 0, ld: Math.max(rs, 1) };
  const rs2 = r === 1 ? 1 : v.rowStride;
  const cs2 = c === 1 ? Math.max(r, 1) : v.colStride;
  if (rs2 === 1 && cs2 >= r) return { op: 1, ld: Math.max(cs2, 1) };
  return null;
}
