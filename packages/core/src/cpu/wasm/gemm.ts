import type { BlockLayout } from '../../backend.ts';
import { KERNELS_WASM_BASE64 } from './kernels.generated.ts';

interface Exports {
  bsmm(a: number, K: number, mBlocks: number, ptr: number, kIdx: number, outBlocks: number, bsN: number, bsK: number, wp: number, c: number, ldc: number): void;
  sddmm(at: number, xp: number, M: number, rowIdx: number, colIdx: number, nnz: number, bs: number, out: number): void;
  packPanels(src: number, K: number, ld: number, panels: number, dst: number): void;
  packBlocks(src: number, order: number, nnz: number, bs: number, transpose: number, dst: number): void;
  transpose(src: number, rows: number, cols: number, dst: number): void;
  packPanelsT(src: number, K: number, ld: number, panels: number, dst: number): void;
}

/** A strided float32 matrix operand on the host. */
export interface HostMatrix {
  data: Float32Array;
  offset: number;
  rowStride: number;
  colStride: number;
}

function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  if (typeof Buffer !== 'undefined') return Uint8Array.from(Buffer.from(b64, 'base64'));
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const ceil = (x: number, m: number) => Math.ceil(x / m) * m;
/** Floats at the start of memory that stay zero: the kernels read index 0 there as a constant k-block. */
const RESERVED = 16;

/**
 * Host side of the WebAssembly SIMD kernels: lays operands out in linear memory in the packed
 * formats the micro-kernel streams (see assembly/gemm.ts), runs it, and copies results out.
 * Packing costs O(size of the operands), small next to the O(m n k) product.
 */
export class WasmGemm {
  private readonly memory = new WebAssembly.Memory({ initial: 16 });
  private readonly k: Exports;
  private f32 = new Float32Array(this.memory.buffer);
  private i32 = new Int32Array(this.memory.buffer);
  private top = RESERVED;

  constructor() {
    const module = new WebAssembly.Module(decodeBase64(KERNELS_WASM_BASE64));
    this.k = new WebAssembly.Instance(module, { env: { memory: this.memory, abort: () => { throw new Error('wasm abort'); } } }).exports as unknown as Exports;
  }

  /** Starts a new layout of `floats` 4-byte slots; returns nothing, regions come from take(). */
  private reserve(floats: number): void {
    const bytes = floats * 4 + 64 * 16;
    if (bytes > this.memory.buffer.byteLength) {
      this.memory.grow(Math.ceil((bytes - this.memory.buffer.byteLength) / 65536));
      this.f32 = new Float32Array(this.memory.buffer);
      this.i32 = new Int32Array(this.memory.buffer);
    }
    this.top = RESERVED;
  }

  /** A 64-byte aligned region of n floats; returns its index in f32 elements. */
  private take(n: number): number {
    const at = this.top;
    this.top = ceil(at + n, 16);
    return at;
  }

  /** Copies an m x cols strided matrix into rows of length ld (>= cols) at `at`, zero-filling to rowsPad x ld. */
  private putRows(a: HostMatrix, m: number, cols: number, ld: number, rowsPad: number, at: number): void {
    const f = this.f32;
    const { data, offset, rowStride, colStride } = a;
    for (let row = 0; row < m; row++) {
      const src = offset + row * rowStride;
      const dst = at + row * ld;
      // subarray+set has a fixed cost that only pays off for long rows.
      if (colStride === 1 && cols >= 64) f.set(data.subarray(src, src + cols), dst);
      else for (let k = 0; k < cols; k++) f[dst + k] = data[src + k * colStride];
      if (ld > cols) f.fill(0, dst + cols, dst + ld);
    }
    f.fill(0, at + m * ld, at + rowsPad * ld);
  }

  /** out[outOffset + i*n + j] = (a @ b)[i, j] for an m x k by k x n product. */
  matmul(a: HostMatrix, b: HostMatrix, out: Float32Array, outOffset: number, m: number, n: number, k: number): void {
    const mPad = ceil(m, 4);
    const nPad = ceil(n, 8);
    this.reserve(mPad * k + 2 * Math.max(nPad, mPad) * k + mPad * nPad + 64);
    const ap = this.take(mPad * k);
    const braw = this.take(Math.max(nPad, mPad) * k); // staging for whichever operand needs re-layout
    const bp = this.take(nPad * k);
    const cp = this.take(mPad * nPad);
    const idx = this.take(4);
    // Operands that are transposed views of contiguous matrices are copied row by row in their
    // stored orientation and re-laid out inside linear memory, which is far faster than a strided
    // element-by-element gather in JS.
    if (a.colStride !== 1 && a.rowStride === 1) {
      this.putRows({ data: a.data, offset: a.offset, rowStride: a.colStride, colStride: 1 }, k, m, m, k, braw);
      this.k.transpose(braw * 4, k, m, ap * 4);
      this.f32.fill(0, ap + m * k, ap + mPad * k);
    } else {
      this.putRows(a, m, k, k, mPad, ap);
    }
    if (b.colStride !== 1 && b.rowStride === 1) {
      this.putRows({ data: b.data, offset: b.offset, rowStride: b.colStride, colStride: 1 }, n, k, k, nPad, braw);
      this.k.packPanelsT(braw * 4, k, k, nPad / 8, bp * 4);
    } else {
      this.putRows(b, k, n, nPad, k, braw);
      this.k.packPanels(braw * 4, k, nPad, nPad / 8, bp * 4);
    }
    this.i32.set([0, 1, 0], idx); // one block row holding one entry at k-block 0
    this.k.bsmm(ap * 4, k, mPad / 4, idx * 4, (idx + 2) * 4, 1, nPad, k, bp * 4, cp * 4, nPad);
    const f = this.f32;
    if (n === nPad) out.set(f.subarray(cp, cp + m * n), outOffset);
    else for (let i = 0; i < m; i++) out.set(f.subarray(cp + i * nPad, cp + i * nPad + n), outOffset + i * n);
  }

  /**
   * Shared driver of the two block-row products: per output block (ptr), the entries to combine,
   * each entry e being block order[e] of `blocks` at k-block kIdx[e].
   */
  private blockProduct(x: Float32Array, m: number, K: number, outBlocks: number, bs: number, ptr: Int32Array, kIdx: Int32Array,
    order: Int32Array, transposeBlocks: boolean, blocks: Float32Array, out: Float32Array): void {
    const mPad = ceil(m, 4);
    const nnz = kIdx.length;
    const N = outBlocks * bs;
    this.reserve(mPad * K + 2 * nnz * bs * bs + mPad * N + ptr.length + 2 * nnz + 64);
    const ap = this.take(mPad * K);
    const raw = this.take(nnz * bs * bs);
    const wp = this.take(nnz * bs * bs);
    const cp = this.take(mPad * N);
    const pp = this.take(ptr.length);
    const kp = this.take(nnz);
    const op = this.take(nnz);
    const f = this.f32;
    f.set(x.subarray(0, m * K), ap);
    f.fill(0, ap + m * K, ap + mPad * K);
    f.set(blocks.subarray(0, nnz * bs * bs), raw);
    this.i32.set(ptr, pp);
    this.i32.set(kIdx, kp);
    this.i32.set(order, op);
    this.k.packBlocks(raw * 4, op * 4, nnz, bs, transposeBlocks ? 1 : 0, wp * 4);
    this.k.bsmm(ap * 4, K, mPad / 4, pp * 4, kp * 4, outBlocks, bs, bs, wp * 4, cp * 4, N);
    out.set(f.subarray(cp, cp + m * N));
  }

  /** out [m, rows] = x [m, cols] @ W^T */
  bsrMatmul(x: Float32Array, blocks: Float32Array, l: BlockLayout, m: number, out: Float32Array): void {
    this.blockProduct(x, m, l.cols, l.rows / l.blockSize, l.blockSize, l.rowPtr, l.colIdx, identity(l.nnzBlocks), true, blocks, out);
  }

  /** out [m, cols] = dy [m, rows] @ W */
  bsrMatmulGradInput(dy: Float32Array, blocks: Float32Array, l: BlockLayout, m: number, out: Float32Array): void {
    const kIdx = new Int32Array(l.nnzBlocks);
    for (let e = 0; e < l.nnzBlocks; e++) kIdx[e] = l.rowIdx[l.cscBlock[e]];
    this.blockProduct(dy, m, l.rows, l.cols / l.blockSize, l.blockSize, l.colPtr, kIdx, l.cscBlock, false, blocks, out);
  }

  /** out [nnz, bs, bs] = (dy^T x) on W's blocks; dy [m, rows], x [m, cols]. */
  bsrSddmm(dy: Float32Array, x: Float32Array, l: BlockLayout, m: number, out: Float32Array): void {
    const { rows, cols, blockSize: bs, nnzBlocks: nnz } = l;
    this.reserve(2 * rows * m + 2 * cols * m + nnz * bs * bs + 2 * nnz + 64);
    const dyRaw = this.take(rows * m);
    const at = this.take(rows * m);
    const xRaw = this.take(cols * m);
    const xp = this.take(cols * m);
    const op = this.take(nnz * bs * bs);
    const rp = this.take(nnz);
    const cp = this.take(nnz);
    const f = this.f32;
    f.set(dy.subarray(0, m * rows), dyRaw);
    f.set(x.subarray(0, m * cols), xRaw);
    this.k.transpose(dyRaw * 4, m, rows, at * 4);
    this.k.packPanels(xRaw * 4, m, cols, cols / 8, xp * 4);
    this.i32.set(l.rowIdx, rp);
    this.i32.set(l.colIdx, cp);
    this.k.sddmm(at * 4, xp * 4, m, rp * 4, cp * 4, nnz, bs, op * 4);
    out.set(f.subarray(op, op + nnz * bs * bs));
  }
}

const identities = new Map<number, Int32Array>();
function identity(n: number): Int32Array {
  let id = identities.get(n);
  if (!id) {
    id = Int32Array.from({ length: n }, (_, i) => i);
    identities.set(n, id);
  }
  return id;
}
