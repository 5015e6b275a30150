import type { Backend, BackendBuffer, BlockLayout, DType, MatrixView, RandomSpec, TypedArray, View } from '../backend.ts';
import { normalAt, uniformAt } from '../random.ts';
import { registerBackend } from '../registry.ts';
import * as ew from './elementwise.ts';
import * as rk from './rowkernels.ts';
import { WasmGemm } from './wasm/gemm.ts';

/** A CPU buffer is a typed array; `size` is its length. */
class CpuBuffer implements BackendBuffer {
  constructor(readonly data: TypedArray) {}
  get size(): number {
    return this.data.length;
  }
  get dtype(): DType {
    return this.data instanceof Int32Array ? 'int32' : 'float32';
  }
}

/**
 * Recycles freed typed arrays by exact length: a training step allocates the same shapes every
 * time, and fresh arrays cost a zero-fill plus garbage collection. Bounded so that memory held
 * for reuse never exceeds POOL_LIMIT bytes.
 */
const POOL_LIMIT = 256 * 1024 * 1024;
class BufferPool {
  private readonly free = new Map<string, TypedArray[]>();
  private held = 0;
  take(size: number, dtype: DType): TypedArray {
    const list = this.free.get(`${dtype}:${size}`);
    const arr = list?.pop();
    if (arr) {
      this.held -= arr.byteLength;
      return arr;
    }
    return dtype === 'int32' ? new Int32Array(size) : new Float32Array(size);
  }
  give(arr: TypedArray): void {
    if (this.held + arr.byteLength > POOL_LIMIT || arr.length === 0) return;
    const key = `${arr instanceof Int32Array ? 'int32' : 'float32'}:${arr.length}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(arr);
    this.held += arr.byteLength;
  }
}

const data = (b: BackendBuffer): TypedArray => (b as CpuBuffer).data;
const f32 = (b: BackendBuffer): Float32Array => (b as CpuBuffer).data as Float32Array;
const viewData = (v: View): TypedArray => data(v.buffer);

/**
 * The reference backend and the embedded default: typed arrays on the host, elementwise and row
 * kernels in generated JS loops, matmul and the block-sparse products in WebAssembly SIMD.
 */
export function createCpuBackend(): Backend {
  const gemm = new WasmGemm();
  const pool = new BufferPool();
  let buffers = 0;
  let bytes = 0;
  const make = (arr: TypedArray): CpuBuffer => {
    buffers++;
    bytes += arr.byteLength;
    return new CpuBuffer(arr);
  };
  return {
    name: 'cpu',
    device: { name: 'cpu', description: 'host CPU (WebAssembly SIMD matmul, 1 thread)' },

    alloc: (size, dtype) => make(pool.take(size, dtype)),
    upload: (arr) => make(arr.slice()),
    read: async (buffer, size) => data(buffer).slice(0, size),
    free(buffer) {
      buffers--;
      bytes -= data(buffer).byteLength;
      pool.give(data(buffer));
    },
    memory: () => ({ buffers, bytes }),

    fill: (out, size, value) => void data(out).fill(value, 0, size),
    random(out, size, spec: RandomSpec) {
      const o = f32(out);
      const { key, a, b } = spec;
      if (spec.kind === 'uniform') for (let i = 0; i < size; i++) o[i] = a + (b - a) * uniformAt(key, i);
      else for (let i = 0; i < size; i++) o[i] = a + b * normalAt(key, i);
    },
    copy: (src, dst) => ew.copy(src, dst, viewData),

    unary: (op, x, out) => ew.unary(op, x, data(out), viewData),
    binary: (op, a, b, out) => ew.binary(op, a, b, data(out), viewData),
    where: (cond, a, b, out) => ew.where(cond, a, b, data(out), viewData),
    reduce: (op, x, outer, n, inner, out) => rk.reduce(op, data(x), outer, n, inner, data(out)),

    matmul(a: MatrixView, b: MatrixView, out, batch, m, n, k) {
      const o = f32(out);
      for (let i = 0; i < batch; i++) {
        gemm.matmul(
          { data: f32(a.buffer), offset: a.offset + i * a.batchStride, rowStride: a.rowStride, colStride: a.colStride },
          { data: f32(b.buffer), offset: b.offset + i * b.batchStride, rowStride: b.rowStride, colStride: b.colStride },
          o, i * m * n, m, n, k);
      }
    },
    bsrMatmul: (x, blocks, layout: BlockLayout, m, out) => gemm.bsrMatmul(f32(x), f32(blocks), layout, m, f32(out)),
    bsrMatmulGradInput: (dy, blocks, layout, m, out) => gemm.bsrMatmulGradInput(f32(dy), f32(blocks), layout, m, f32(out)),
    bsrSddmm: (dy, x, layout, m, out) => gemm.bsrSddmm(f32(dy), f32(x), layout, m, f32(out)),

    gather: (x, idx, outer, n, inner, count, out) =>
      rk.gather(data(x), viewData(idx), idx.offset, idx.strides, outer, n, inner, count, data(out)),
    scatterAdd: (src, idx, outer, n, inner, count, out) =>
      rk.scatterAdd(data(src), viewData(idx), idx.offset, idx.strides, outer, n, inner, count, data(out)),

    softmax: (x, rows, n, log, out) => rk.softmax(f32(x), rows, n, log, f32(out)),
    softmaxBackward: (y, dy, rows, n, log, out) => rk.softmaxBackward(f32(y), f32(dy), rows, n, log, f32(out)),
    layerNorm: (x, g, b, rows, n, eps, out, mean, rstd) =>
      rk.layerNorm(f32(x), g && f32(g), b && f32(b), rows, n, eps, f32(out), f32(mean), f32(rstd)),
    layerNormBackward: (x, g, mean, rstd, dy, rows, n, dx, dg, db) =>
      rk.layerNormBackward(f32(x), g && f32(g), f32(mean), f32(rstd), f32(dy), rows, n, f32(dx), dg && f32(dg), db && f32(db)),
  };
}

registerBackend({ name: 'cpu', priority: 0, create: createCpuBackend });
