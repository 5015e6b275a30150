import type { BlockLayout } from '../../backend.ts';
import { KERNELS_WASM_BASE64 } from './kernels.generated.ts';

interface Exports {
  bsmm(ap: number, K: number, mBlocks: number, ptr: number, kIdx: number, outBlocks: number, bsN: number, bsK: number, wp: number, c: number, ldc: number): void;
  sddmm(atp: number, xp: number, M: number, rowIdx: number, colIdx: number, nnz: number, bs: number, out: number): void;
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
  private top = 0;

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
    this.top = 0;
  }

  /** A 64-byte aligned region of n floats; returns its index in f32 elements. */
  private take(n: number): number {
    const at = this.top;
    this.top = ceil(at + n, 16);
    return at;
  }

  /** A [mBlocks][K][4] row-interleaved copy of the m x K matrix a. */
  private packRows(a: HostMatrix, m: number, K: number, at: number): void {
    const f = this.f32;
    const { data, offset, rowStride, colStride } = a;
    const mPad = ceil(m, 4);
    for (let row = 0; row < mPad; row++) {
      const base = at + Math.floor(row / 4) * K * 4 + (row % 4);
      if (row >= m) {
        for (let k = 0; k < K; k++) f[base + k * 4] = 0;
        continue;
      }
      const src = offset + row * rowStride;
      for (let k = 0; k < K; k++) f[base + k * 4] = data[src + k * colStride];
    }
  }

  /** A [panels][K][8] column-panel copy of the K x n matrix b (columns past n are zero). */
  private packCols(b: HostMatrix, K: number, n: number, at: number): void {
    const f = this.f32;
    const { data, offset, rowStride, colStride } = b;
    const nPad = ceil(n, 8);
    for (let col = 0; col < nPad; col++) {
      const base = at + Math.floor(col / 8) * K * 8 + (col % 8);
      if (col >= n) {
        for (let k = 0; k < K; k++) f[base + k * 8] = 0;
        continue;
      }
      const src = offset + col * colStride;
      for (let k = 0; k < K; k++) f[base + k * 8] = data[src + k * rowStride];
    }
  }

  /** out[outOffset + i*n + j] = (a @ b)[i, j] for an m x k by k x n product. */
  matmul(a: HostMatrix, b: HostMatrix, out: Float32Array, outOffset: number, m: number, n: number, k: number): void {
    const mPad = ceil(m, 4);
    const nPad = ceil(n, 8);
    this.reserve(mPad * k + nPad * k + mPad * nPad + 64);
    const ap = this.take(mPad * k);
    const bp = this.take(nPad * k);
    const cp = this.take(mPad * nPad);
    const idx = this.take(4);
    this.packRows(a, m, k, ap);
    this.packCols(b, k, n, bp);
    this.i32.set([0, 1, 0], idx); // one block row holding one entry at k-block 0
    this.k.bsmm(ap * 4, k, mPad / 4, idx * 4, (idx + 2) * 4, 1, nPad, k, bp * 4, cp * 4, nPad);
    const f = this.f32;
    if (n === nPad) out.set(f.subarray(cp, cp + m * n), outOffset);
    else for (let i = 0; i < m; i++) out.set(f.subarray(cp + i * nPad, cp + i * nPad + n), outOffset + i * n);
  }

  /**
   * Shared driver of the two block-row products: `entries` lists, per output block, the blocks to
   * combine, each packed from `blocks` by `packBlock`.
   */
  private blockProduct(x: Float32Array, m: number, K: number, outBlocks: number, bs: number, ptr: Int32Array, kIdx: Int32Array,
    blockOf: (e: number) => number, transposeBlocks: boolean, blocks: Float32Array, out: Float32Array): void {
    const mPad = ceil(m, 4);
    const nnz = kIdx.length;
    const N = outBlocks * bs;
    this.reserve(mPad * K + nnz * bs * bs + mPad * N + ptr.length + nnz + 64);
    const ap = this.take(mPad * K);
    const wp = this.take(nnz * bs * bs);
    const cp = this.take(mPad * N);
    const pp = this.take(ptr.length);
    const kp = this.take(nnz);
    this.packRows({ data: x, offset: 0, rowStride: K, colStride: 1 }, m, K, ap);
    const f = this.f32;
    const bb = bs * bs;
    for (let e = 0; e < nnz; e++) {
      const src = blockOf(e) * bb;
      const dst = wp + e * bb;
      // Panel q of entry e holds the block's columns (n) q*8..q*8+7 for every k.
      for (let kk = 0; kk < bs; kk++) {
        for (let nn = 0; nn < bs; nn++) {
          f[dst + (nn >> 3) * bs * 8 + kk * 8 + (nn & 7)] = transposeBlocks ? blocks[src + nn * bs + kk] : blocks[src + kk * bs + nn];
        }
      }
    }
    this.i32.set(ptr, pp);
    this.i32.set(kIdx, kp);
    this.k.bsmm(ap * 4, K, mPad / 4, pp * 4, kp * 4, outBlocks, bs, bs, wp * 4, cp * 4, N);
    out.set(f.subarray(cp, cp + m * N));
  }

  /** out [m, rows] = x [m, cols] @ W^T */
  bsrMatmul(x: Float32Array, blocks: Float32Array, l: BlockLayout, m: number, out: Float32Array): void {
    this.blockProduct(x, m, l.cols, l.rows / l.blockSize, l.blockSize, l.rowPtr, l.colIdx, (e) => e, true, blocks, out);
  }

  /** out [m, cols] = dy [m, rows] @ W */
  bsrMatmulGradInput(dy: Float32Array, blocks: Float32Array, l: BlockLayout, m: number, out: Float32Array): void {
    const kIdx = new Int32Array(l.nnzBlocks);
    for (let e = 0; e < l.nnzBlocks; e++) kIdx[e] = l.rowIdx[l.cscBlock[e]];
    this.blockProduct(dy, m, l.rows, l.cols / l.blockSize, l.blockSize, l.colPtr, kIdx, (e) => l.cscBlock[e], false, blocks, out);
  }

  /** out [nnz, bs, bs] = (dy^T x) on W's blocks; dy [m, rows], x [m, cols]. */
  bsrSddmm(dy: Float32Array, x: Float32Array, l: BlockLayout, m: number, out: Float32Array): void {
    const { rows, cols, blockSize: bs, nnzBlocks: nnz } = l;
    this.reserve(rows * m + cols * m + nnz * bs * bs + 2 * nnz + 64);
    const atp = this.take(rows * m);
    const xp = this.take(cols * m);
    const op = this.take(nnz * bs * bs);
    const rp = this.take(nnz);
    const cp = this.take(nnz);
    // dy^T as a rows x m matrix, and x as an m x cols matrix.
    this.packRows({ data: dy, offset: 0, rowStride: 1, colStride: rows }, rows, m, atp);
    this.packCols({ data: x, offset: 0, rowStride: cols, colStride: 1 }, m, cols, xp);
    this.i32.set(l.rowIdx, rp);
    this.i32.set(l.colIdx, cp);
    this.k.sddmm(atp * 4, xp * 4, m, rp * 4, cp * 4, nnz, bs, op * 4);
    out.set(this.f32.subarray(op, op + nnz * bs * bs));
  }
}
