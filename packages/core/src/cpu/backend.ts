import {
  KERNELS,
  adamCoefficients,
  type Backend,
  type BackendBuffer,
  type BlockLayout,
  type DType,
  type MatrixView,
  DTYPE_BYTES,
  type RandomSpec,
  type StorageArray,
  type TypedArray,
  type View,
} from '../backend.ts';
import { normalAt, uniformAt } from '../random.ts';
import { registerBackend } from '../registry.ts';
import { CpuRecorder } from './capture.ts';
import * as ew from './elementwise.ts';
import * as rk from './rowkernels.ts';
import { simdBinary, simdUnary } from './simd.ts';
import { WasmKernels } from './wasm/gemm.ts';
import { WasmHeap } from './wasm/heap.ts';
import { threadCount } from './wasm/threads.ts';

/** A CPU buffer is a region of the backend's WebAssembly heap. */
class CpuBuffer implements BackendBuffer {
  constructor(
    readonly ptr: number,
    readonly size: number,
    readonly dtype: DType,
  ) {}
}

/**
 * The reference backend and the embedded default. Tensors live in one WebAssembly memory; matmul
 * and the block-sparse products run there in place as SIMD kernels, and the elementwise and row
 * kernels are generated JS loops over typed-array views of the same memory.
 */
export function createCpuBackend(opts: { threads?: number } = {}): Backend {
  const threads = opts.threads ?? threadCount();
  const heap = new WasmHeap(threads > 1);
  const wasm = new WasmKernels(heap, threads);
  let buffers = 0;
  let bytes = 0;
  // Views are made per call: memory growth detaches older ones.
  const storage = (b: BackendBuffer): StorageArray => heap.view((b as CpuBuffer).ptr, b.size, b.dtype);
  // Kernels other than copy see float32 and int32 only (core widens 16-bit operands: half-fallback.ts).
  const data = (b: BackendBuffer): TypedArray => storage(b) as TypedArray;
  const f32 = (b: BackendBuffer): Float32Array => data(b) as Float32Array;
  const viewData = (v: View): TypedArray => data(v.buffer);
  const ptr = (b: BackendBuffer, offset = 0): number => (b as CpuBuffer).ptr + 4 * offset;
  const blockBytes = (size: number, dtype: DType) => size * DTYPE_BYTES[dtype];
  const recorder = new CpuRecorder((ptr, n) => heap.release(ptr, n));
  const alloc = (size: number, dtype: DType): CpuBuffer => {
    buffers++;
    const n = blockBytes(size, dtype);
    bytes += n;
    return new CpuBuffer(recorder.pool ? recorder.pool.take(n, (k) => heap.alloc(k)) : heap.alloc(n), size, dtype);
  };
  const backend: Backend = {
    name: 'cpu',
    device: { name: 'cpu', description: `host CPU (WebAssembly SIMD, ${wasm.threads} thread${wasm.threads > 1 ? 's' : ''})` },
    // bfloat16 and float16 are stored as 16-bit values and computed through float32 (core's
    // half-fallback.ts): the reference every backend's 16-bit arithmetic is held to.
    dtypes: ['float32', 'int32', 'bfloat16', 'float16'],

    alloc,
    upload(arr, dtype) {
      const b = alloc(arr.length, dtype);
      // While recording, an upload writes now: the recording keeps the block as a constant.
      recorder.pool?.constant(b.ptr);
      storage(b).set(arr);
      return b;
    },
    read: async (buffer, size) => {
      if (recorder.recording) throw new Error('cpu: read: not while a step is being recorded');
      return storage(buffer).slice(0, size);
    },
    free(buffer) {
      buffers--;
      const n = blockBytes(buffer.size, buffer.dtype);
      bytes -= n;
      if (!recorder.keeps((buffer as CpuBuffer).ptr, n)) heap.release((buffer as CpuBuffer).ptr, n);
    },
    capture: recorder,
    memory: () => ({ buffers, bytes }),

    fill: (out, size, value) => void data(out).fill(value, 0, size),
    random(out, size, spec: RandomSpec) {
      const o = f32(out);
      const { key, a, b } = spec;
      if (spec.kind === 'uniform') for (let i = 0; i < size; i++) o[i] = a + (b - a) * uniformAt(key, i);
      else if (spec.kind === 'normal') for (let i = 0; i < size; i++) o[i] = a + b * normalAt(key, i);
      else {
        const [p, keep] = [Math.fround(a), Math.fround(b)];
        for (let i = 0; i < size; i++) o[i] = uniformAt(key, i) >= p ? keep : 0;
      }
    },
    copy: (src, dst) => ew.copy(src, dst, (v) => storage(v.buffer)),

    unary: (op, x, out) => void (simdUnary(wasm, ptr, op, x, out) || ew.unary(op, x, data(out), viewData)),
    binary: (op, a, b, out) => void (simdBinary(wasm, ptr, op, a, b, out) || ew.binary(op, a, b, data(out), viewData)),
    where: (cond, a, b, out) => ew.where(cond, a, b, data(out), viewData),
    reduce: (op, x, outer, n, inner, out) => rk.reduce(op, data(x), outer, n, inner, data(out)),

    matmul(a: MatrixView, b: MatrixView, out, batch, m, n, k) {
      for (let i = 0; i < batch; i++) {
        wasm.matmul(
          { ptr: ptr(a.buffer, a.offset + i * a.batchStride), rowStride: a.rowStride, colStride: a.colStride },
          { ptr: ptr(b.buffer, b.offset + i * b.batchStride), rowStride: b.rowStride, colStride: b.colStride },
          ptr(out, i * m * n),
          m,
          n,
          k,
        );
      }
    },
    bsrMatmul: (x, blocks, layout: BlockLayout, m, out) => wasm.bsrMatmul(ptr(x), ptr(blocks), layout, m, ptr(out)),
    bsrMatmulGradInput: (dy, blocks, layout, m, out) => wasm.bsrMatmulGradInput(ptr(dy), ptr(blocks), layout, m, ptr(out)),
    bsrSddmm: (dy, x, layout, m, out) => wasm.bsrSddmm(ptr(dy), ptr(x), layout, m, ptr(out)),

    gather: (x, idx, outer, n, inner, count, out) => rk.gather(data(x), viewData(idx), idx.offset, idx.strides, outer, n, inner, count, data(out)),
    scatterAdd: (src, idx, outer, n, inner, count, out) => rk.scatterAdd(data(src), viewData(idx), idx.offset, idx.strides, outer, n, inner, count, data(out)),

    softmax: (x, rows, n, log, causal, out) => wasm.k.softmax(ptr(x), ptr(out), rows, n, log ? 1 : 0, causal ? 1 : 0),
    softmaxBackward: (y, dy, rows, n, log, out) => wasm.k.softmaxBackward(ptr(y), ptr(dy), ptr(out), rows, n, log ? 1 : 0),
    layerNorm: (x, g, b, rows, n, eps, out, mean, rstd) => rk.layerNorm(f32(x), g && f32(g), b && f32(b), rows, n, eps, f32(out), f32(mean), f32(rstd)),
    layerNormBackward: (x, g, mean, rstd, dy, rows, n, dx, dg, db) =>
      rk.layerNormBackward(f32(x), g && f32(g), f32(mean), f32(rstd), f32(dy), rows, n, f32(dx), dg && f32(dg), db && f32(db)),
    adamStep(params, s) {
      const { coupled, shrink, step } = adamCoefficients(s);
      for (const { p, g, m, v, size, pOut, mOut, vOut } of params) {
        wasm.k.adamStep(
          ptr(p),
          ptr(g),
          ptr(m),
          ptr(v),
          size,
          coupled,
          shrink,
          s.beta1,
          s.beta2,
          step,
          s.biasCorrection2,
          s.eps,
          ptr(pOut),
          ptr(mOut),
          ptr(vOut),
        );
      }
    },
    sumOfSquares(xs, sizes, out) {
      // Accumulated in float64 (the GPU backends sum float32 partials, then the partials).
      let acc = 0;
      xs.forEach((x, i) => {
        const a = f32(x);
        for (let j = 0; j < sizes[i]; j++) acc += a[j] * a[j];
      });
      f32(out)[0] = acc;
    },
    scaleBuffers(xs, sizes, factor, outs) {
      const k = f32(factor)[0];
      xs.forEach((x, i) => {
        const [a, y] = [f32(x), f32(outs[i])];
        for (let j = 0; j < sizes[i]; j++) y[j] = a[j] * k;
      });
    },
  };
  // Every kernel goes through the recorder: run now, or recorded while a step is captured.
  const kernels = backend as unknown as Record<string, (...args: unknown[]) => void>;
  for (const name of KERNELS) {
    if (['alloc', 'upload', 'read', 'free', 'memory'].includes(name)) continue;
    const kernel = kernels[name];
    kernels[name] = (...args) => recorder.run(() => kernel(...args));
  }
  return backend;
}

registerBackend({ name: 'cpu', priority: 0, create: createCpuBackend });
