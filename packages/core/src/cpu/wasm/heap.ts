import type { DType, StorageArray } from '../../backend.ts';

const ALIGN = 64; // cache-line alignment for SIMD loads
const PAGE = 65536;
/** wasm32 linear memory tops out at 4 GiB. */
const MAX_PAGES = 65536;

const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/**
 * All CPU tensors live in one WebAssembly memory, so the SIMD kernels read and write them in
 * place; JS kernels see them through typed-array views made on demand (a view made before the
 * memory grows is detached, so views are never kept across an allocation).
 *
 * Allocation is a bump pointer plus free lists keyed by exact (aligned) size: a training step
 * allocates the same sizes every step, so after the first step everything is recycled.
 */
export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  /** Nothing is handed out until the module's static data is known (see setBase). */
  private top = -1;
  private readonly free = new Map<number, number[]>();
  private f32cache: Float32Array;
  private i32cache: Int32Array;

  /** `shared` memory can be used by worker threads (and then must match a shared-memory module). */
  constructor(readonly shared: boolean) {
    this.memory = new WebAssembly.Memory({ initial: 256, maximum: MAX_PAGES, shared });
    this.f32cache = new Float32Array(this.memory.buffer);
    this.i32cache = new Int32Array(this.memory.buffer);
  }

  /** Byte offset of a fresh region of at least `bytes` bytes (contents undefined). */
  /** Starts the heap above the kernel module's static data, which must never be overwritten. */
  setBase(base: number): void {
    this.top = align(base);
  }

  alloc(bytes: number): number {
    if (this.top < 0) throw new Error('cpu backend: heap used before the kernel module was loaded');
    const size = align(Math.max(bytes, 1));
    const list = this.free.get(size);
    if (list?.length) return list.pop()!;
    const ptr = this.top;
    const end = ptr + size;
    if (end > this.memory.buffer.byteLength) {
      const pages = Math.ceil((end - this.memory.buffer.byteLength) / PAGE);
      if (this.memory.buffer.byteLength / PAGE + pages > MAX_PAGES) {
        throw new Error(`cpu backend: out of memory (asked for ${bytes} bytes; WebAssembly memory is limited to 4 GiB)`);
      }
      // Grow by >= 25% to amortise, but never past the 4 GiB cap.
      const current = this.memory.buffer.byteLength / PAGE;
      this.memory.grow(Math.min(MAX_PAGES - current, Math.max(pages, current >> 2)));
    }
    this.top = end;
    return ptr;
  }

  release(ptr: number, bytes: number): void {
    const size = align(Math.max(bytes, 1));
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(ptr);
  }

  /** The whole memory as float32 / int32 (refreshed after growth). */
  get f32(): Float32Array {
    if (this.f32cache.buffer !== this.memory.buffer) this.f32cache = new Float32Array(this.memory.buffer);
    return this.f32cache;
  }
  get i32(): Int32Array {
    if (this.i32cache.buffer !== this.memory.buffer) this.i32cache = new Int32Array(this.memory.buffer);
    return this.i32cache;
  }

  view(ptr: number, size: number, dtype: DType): StorageArray {
    if (dtype === 'int32') return new Int32Array(this.memory.buffer, ptr, size);
    if (dtype === 'float32') return new Float32Array(this.memory.buffer, ptr, size);
    return new Uint16Array(this.memory.buffer, ptr, size);
  }

  /** Bytes ever taken from the memory (live plus recyclable). */
  get reserved(): number {
    return this.top;
  }
}
