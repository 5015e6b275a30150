import type { BlockLayout } from '../../backend.ts';
import type { WasmHeap } from './heap.ts';
import { KERNELS_WASM_BASE64, KERNELS_WASM_SHARED_BASE64 } from './kernels.generated.ts';
import { ThreadPool } from './threads.ts';

interface Exports {
  bsmm(
    a: number,
    lda: number,
    mbStart: number,
    mBlocks: number,
    ptr: number,
    kIdx: number,
    outBlocks: number,
    bsN: number,
    bsK: number,
    wp: number,
    c: number,
    ldc: number,
  ): void;
  sddmm(at: number, xp: number, M: number, rowIdx: number, colIdx: number, bStart: number, nnz: number, bs: number, out: number): void;
  packPanels(src: number, K: number, ld: number, panels: number, dst: number): void;
  packPanelsT(src: number, K: number, ld: number, panels: number, dst: number): void;
  packBlocks(src: number, order: number, nnz: number, bs: number, transpose: number, dst: number): void;
  transpose(src: number, rows: number, cols: number, ldSrc: number, dst: number): void;
  unary(op: number, x: number, out: number, n: number): void;
  binary(op: number, a: number, aScalar: number, b: number, bScalar: number, out: number, n: number): void;
  softmax(x: number, out: number, rows: number, n: number, log: number, causal: number): void;
  softmaxBackward(y: number, dy: number, out: number, rows: number, n: number, log: number): void;
  adamStep(
    p: number,
    g: number,
    m: number,
    v: number,
    n: number,
    coupled: number,
    shrink: number,
    b1: number,
    b2: number,
    step: number,
    bc2: number,
    eps: number,
    pOut: number,
    mOut: number,
    vOut: number,
  ): void;
  heapBase(): number;
}

/** A strided float32 matrix in the heap: element (i, j) is at byte ptr + 4 * (i*rowStride + j*colStride). */
export interface HeapMatrix {
  ptr: number;
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
 * Host side of the WebAssembly SIMD kernels. Operands already live in the heap; the kernels read
 * them in place where their layout allows (row-contiguous A with a multiple of 4 rows, C with
 * multiples of 4 rows and 8 columns) and otherwise through scratch copies. B operands and blocks
 * are always re-laid into 8-column panels, which costs O(size of B), small next to the product.
 */
export class WasmKernels {
  /** The raw module exports, for the elementwise SIMD kernels (see cpu/simd.ts). */
  readonly k: Exports;

  private readonly pool: ThreadPool | null;

  /** With threads > 1 the heap must be shared; products then split across worker threads. */
  constructor(
    private readonly heap: WasmHeap,
    threads = 1,
  ) {
    const module = new WebAssembly.Module(decodeBase64(heap.shared ? KERNELS_WASM_SHARED_BASE64 : KERNELS_WASM_BASE64));
    const env = {
      memory: heap.memory,
      abort: () => {
        throw new Error('cpu backend: WebAssembly kernel aborted');
      },
    };
    this.k = new WebAssembly.Instance(module, { env }).exports as unknown as Exports;
    heap.setBase(this.k.heapBase());
    this.pool = threads > 1 && heap.shared ? ThreadPool.create(module, heap.memory, threads - 1) : null;
  }

  get threads(): number {
    return this.pool?.size ?? 1;
  }

  /**
   * Splits [0, count) into one contiguous range per thread when the work is worth a hand-off
   * (thread wake-up costs tens of microseconds), and runs `fn` with args(start, end) on each.
   */
  private split(fn: 'bsmm' | 'sddmm', count: number, flops: number, args: (start: number, end: number) => number[]): void {
    const threads = this.pool && flops >= 4e6 ? Math.min(this.pool.size, count) : 1;
    const call = (a: number[]) => (this.k[fn] as (...x: number[]) => void)(...a);
    if (threads <= 1) {
      call(args(0, count));
      return;
    }
    const ranges = Array.from({ length: threads }, (_, i) => args(Math.floor((count * i) / threads), Math.floor((count * (i + 1)) / threads)));
    this.pool!.run(fn, ranges, call);
  }

  private bsmm(
    a: number,
    lda: number,
    mBlocks: number,
    ptr: number,
    kIdx: number,
    outBlocks: number,
    bsN: number,
    bsK: number,
    wp: number,
    c: number,
    ldc: number,
    flops: number,
  ): void {
    this.split('bsmm', mBlocks, flops, (s, e) => [a, lda, s, e, ptr, kIdx, outBlocks, bsN, bsK, wp, c, ldc]);
  }

  /** Runs fn with scratch regions of the given float counts, returned as byte offsets, then recycles them. */
  private scratch<T>(floats: number[], fn: (...ptrs: number[]) => T): T {
    const ptrs = floats.map((n) => this.heap.alloc(n * 4));
    try {
      return fn(...ptrs);
    } finally {
      ptrs.forEach((p, i) => this.heap.release(p, floats[i] * 4));
    }
  }

  /** Copies an r x c strided matrix into rows of length ld (>= c) at byte `dst`, zero-padding to rowsPad x ld. */
  private gatherRows(src: HeapMatrix, r: number, c: number, ld: number, rowsPad: number, dst: number): void {
    const f = this.heap.f32;
    const s0 = src.ptr / 4;
    const d0 = dst / 4;
    for (let i = 0; i < r; i++) {
      const s = s0 + i * src.rowStride;
      const d = d0 + i * ld;
      if (src.colStride === 1) f.copyWithin(d, s, s + c);
      else for (let j = 0; j < c; j++) f[d + j] = f[s + j * src.colStride];
      if (ld > c) f.fill(0, d + c, d + ld);
    }
    f.fill(0, d0 + r * ld, d0 + rowsPad * ld);
  }

  private putInts(values: ArrayLike<number>, dst: number): void {
    this.heap.i32.set(values, dst / 4);
  }

  /** out (byte offset, [m, n] contiguous) = a (m x k) @ b (k x n). */
  matmul(a: HeapMatrix, b: HeapMatrix, out: number, m: number, n: number, k: number): void {
    const mPad = ceil(m, 4);
    const nPad = ceil(n, 8);
    const aInPlace = a.colStride === 1 && m % 4 === 0;
    const cInPlace = m % 4 === 0 && n % 8 === 0;
    this.scratch([aInPlace ? 0 : mPad * k, nPad * k, nPad * k, cInPlace ? 0 : mPad * nPad, 4], (aBuf, bRaw, bp, cBuf, idx) => {
      let aPtr = a.ptr;
      let lda = a.rowStride;
      if (!aInPlace) {
        if (a.rowStride === 1) {
          // A is a transposed view: transpose its k x m storage inside linear memory.
          this.k.transpose(a.ptr, k, m, a.colStride, aBuf);
          this.heap.f32.fill(0, aBuf / 4 + m * k, aBuf / 4 + mPad * k);
        } else {
          this.gatherRows(a, m, k, k, mPad, aBuf);
        }
        aPtr = aBuf;
        lda = k;
      }
      if (b.colStride === 1 && n % 8 === 0) {
        this.k.packPanels(b.ptr, k, b.rowStride, nPad / 8, bp);
      } else if (b.rowStride === 1 && n % 8 === 0) {
        this.k.packPanelsT(b.ptr, k, b.colStride, nPad / 8, bp);
      } else if (b.rowStride === 1) {
        this.gatherRows({ ptr: b.ptr, rowStride: b.colStride, colStride: 1 }, n, k, k, nPad, bRaw);
        this.k.packPanelsT(bRaw, k, k, nPad / 8, bp);
      } else {
        this.gatherRows(b, k, n, nPad, k, bRaw);
        this.k.packPanels(bRaw, k, nPad, nPad / 8, bp);
      }
      this.putInts([0, 1, 0], idx); // one block row holding one entry at k-block 0
      this.bsmm(aPtr, lda, mPad / 4, idx, idx + 8, 1, nPad, k, bp, cInPlace ? out : cBuf, nPad, 2 * m * n * k);
      if (!cInPlace) {
        const f = this.heap.f32;
        for (let i = 0; i < m; i++) f.copyWithin(out / 4 + i * n, cBuf / 4 + i * nPad, cBuf / 4 + i * nPad + n);
      }
    });
  }

  /**
   * Shared driver of the two block-row products: per output block (ptr), the entries to combine,
   * each entry e being block order[e] of `blocks` at k-block kIdx[e].
   */
  private blockProduct(
    x: number,
    m: number,
    K: number,
    outBlocks: number,
    bs: number,
    ptr: Int32Array,
    kIdx: Int32Array,
    order: Int32Array,
    transposeBlocks: boolean,
    blocks: number,
    out: number,
  ): void {
    const mPad = ceil(m, 4);
    const nnz = kIdx.length;
    const N = outBlocks * bs;
    const inPlace = m % 4 === 0;
    this.scratch([inPlace ? 0 : mPad * K, nnz * bs * bs, inPlace ? 0 : mPad * N, ptr.length, nnz, nnz], (xBuf, wp, cBuf, pp, kp, op) => {
      if (!inPlace) this.gatherRows({ ptr: x, rowStride: K, colStride: 1 }, m, K, K, mPad, xBuf);
      this.putInts(ptr, pp);
      this.putInts(kIdx, kp);
      this.putInts(order, op);
      this.k.packBlocks(blocks, op, nnz, bs, transposeBlocks ? 1 : 0, wp);
      this.bsmm(inPlace ? x : xBuf, K, mPad / 4, pp, kp, outBlocks, bs, bs, wp, inPlace ? out : cBuf, N, 2 * m * nnz * bs * bs);
      if (!inPlace) this.heap.f32.copyWithin(out / 4, cBuf / 4, cBuf / 4 + m * N);
    });
  }

  /** out [m, rows] = x [m, cols] @ W^T */
  bsrMatmul(x: number, blocks: number, l: BlockLayout, m: number, out: number): void {
    this.blockProduct(x, m, l.cols, l.rows / l.blockSize, l.blockSize, l.rowPtr, l.colIdx, identity(l.nnzBlocks), true, blocks, out);
  }

  /** out [m, cols] = dy [m, rows] @ W */
  bsrMatmulGradInput(dy: number, blocks: number, l: BlockLayout, m: number, out: number): void {
    this.blockProduct(dy, m, l.rows, l.cols / l.blockSize, l.blockSize, l.colPtr, l.cscRow, l.cscBlock, false, blocks, out);
  }

  /** out [nnz, bs, bs] = (dy^T x) on W's blocks; dy [m, rows], x [m, cols]. */
  bsrSddmm(dy: number, x: number, l: BlockLayout, m: number, out: number): void {
    const { rows, cols, blockSize: bs, nnzBlocks: nnz } = l;
    this.scratch([rows * m, cols * m, nnz, nnz], (at, xp, rp, cp) => {
      this.k.transpose(dy, m, rows, rows, at); // dy^T: rows x m
      this.k.packPanels(x, m, cols, cols / 8, xp);
      this.putInts(l.rowIdx, rp);
      this.putInts(l.colIdx, cp);
      this.split('sddmm', nnz, 2 * m * nnz * bs * bs, (s, e) => [at, xp, m, rp, cp, s, e, bs, out]);
    });
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
