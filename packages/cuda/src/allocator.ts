/**
 * A caching device allocator (as PyTorch's): freed blocks stay reserved and are handed out again
 * for requests of the same size class, so a training step's allocations cost no cuMemAlloc (which
 * is slow and synchronising) after the first. Reuse is safe without events because the backend
 * has one stream: work that used a block was queued before any work that reuses it.
 *
 * Size classes: multiples of 512 bytes up to 1 MiB, then four classes per power of two (at most
 * 25% slack). On out-of-memory the cache is released and the allocation retried once.
 */
import type { DType } from '@sparsegrad/core';
import type { BackendBuffer } from '@sparsegrad/core/backend';
import type { CapturePool } from '@sparsegrad/core/backend';
import type { Addon } from './native.ts';

/** A device allocation: a pointer into device memory (a number: exact below 2^53). */
export class CudaBuffer implements BackendBuffer {
  constructor(
    readonly ptr: number,
    readonly size: number,
    readonly dtype: DType,
  ) {}
}

const SMALL = 1 << 20;

export function sizeClass(bytes: number): number {
  if (bytes <= SMALL) return Math.max(512, Math.ceil(bytes / 512) * 512);
  const quarter = 2 ** (Math.floor(Math.log2(bytes)) - 2);
  return Math.ceil(bytes / quarter) * quarter;
}

export class CachingAllocator {
  private readonly cache = new Map<number, number[]>();
  /** Bytes held by live allocations (by class size) and by the cache. */
  liveBytes = 0;
  liveBlocks = 0;
  cachedBytes = 0;

  /** While a graph is recorded or holds blocks: where blocks come from and which frees it keeps (capture.ts). */
  capture: { readonly pool: CapturePool | null; keeps(ptr: number, bytes: number): boolean } | null = null;

  constructor(private readonly addon: Addon) {}

  /** A device pointer to at least `bytes` bytes (its class size is `sizeClass(bytes)`). */
  alloc(bytes: number): number {
    const pool = this.capture?.pool;
    return pool ? pool.take(bytes, (b) => this.cached(b)) : this.cached(bytes);
  }

  /** Returns a block to the cache, unless a graph keeps it. */
  release(ptr: number, bytes: number): void {
    if (this.capture?.keeps(ptr, bytes)) return;
    this.uncached(ptr, bytes);
  }

  /** A block from the cache or the driver. */
  private cached(bytes: number): number {
    const size = sizeClass(bytes);
    const list = this.cache.get(size);
    let ptr = list?.pop();
    if (ptr !== undefined) {
      this.cachedBytes -= size;
    } else {
      ptr = this.fresh(size);
    }
    this.liveBytes += size;
    this.liveBlocks++;
    return ptr;
  }

  /** A block back into the cache (also where a released graph's blocks go). */
  uncached(ptr: number, bytes: number): void {
    const size = sizeClass(bytes);
    let list = this.cache.get(size);
    if (!list) this.cache.set(size, (list = []));
    list.push(ptr);
    this.liveBytes -= size;
    this.liveBlocks--;
    this.cachedBytes += size;
  }

  /** Returns every cached block to the driver (cuMemFree waits for the device). */
  emptyCache(): void {
    for (const list of this.cache.values()) for (const p of list) this.addon.free(p);
    this.cache.clear();
    this.cachedBytes = 0;
  }

  private fresh(size: number): number {
    try {
      return this.addon.malloc(size);
    } catch (e) {
      if ((e as { code?: string }).code !== 'CUDA_OOM') throw e;
      this.emptyCache();
      try {
        return this.addon.malloc(size);
      } catch (e2) {
        if ((e2 as { code?: string }).code !== 'CUDA_OOM') throw e2;
        const [free, total] = this.addon.memInfo();
        const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
        throw new Error(
          `out of device memory allocating ${mib(size)} (${mib(this.liveBytes)} in ${this.liveBlocks} live buffers; device ${mib(free)} free of ${mib(total)}; the cache was released and the allocation retried)`,
        );
      }
    }
  }
}
