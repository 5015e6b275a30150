/**
 * The buffer pool: storage buffers in power-of-two size classes, recycled oldest first, each
 * with a stable id (bind groups are cached by the ids of their buffers).
 */
import type { DType } from '@sparsegrad/core';
import { type BackendBuffer, DTYPE_BYTES } from '@sparsegrad/core/backend';

/** Bytes a buffer of `size` elements takes: whole 4-byte words (16-bit values are stored in pairs), at least 16. */
export const bufferBytes = (size: number, dtype: DType) => Math.max(16, Math.ceil((size * DTYPE_BYTES[dtype]) / 4) * 4);

/** A tensor's buffer: a pooled GPU buffer (at least 16 bytes, so never an empty binding) and its logical size. */
export class GpuBuffer implements BackendBuffer {
  constructor(
    readonly buffer: GPUBuffer,
    readonly size: number,
    readonly dtype: DType,
  ) {}
}

export class BufferPool {
  private readonly classes = new Map<number, GPUBuffer[]>();
  private readonly ids = new WeakMap<GPUBuffer, number>();
  private nextId = 1;
  liveBuffers = 0;
  liveBytes = 0;

  /** `onError` receives out-of-memory errors, which the device reports asynchronously. */
  constructor(
    private readonly device: GPUDevice,
    private readonly onError: (message: string) => void,
  ) {}

  alloc(size: number, dtype: DType): GpuBuffer {
    const bytes = bufferBytes(size, dtype);
    // Every buffer must be bindable by a kernel: larger ones are an error now, not a validation
    // error (or an out-of-memory kill) later.
    const limit = Math.min(this.device.limits.maxStorageBufferBindingSize, this.device.limits.maxBufferSize);
    if (bytes > limit) {
      throw new Error(
        `webgpu: alloc: a tensor of ${size.toLocaleString('en-US')} elements (${bytes.toLocaleString('en-US')} bytes) is larger than the largest buffer this device can bind (${limit.toLocaleString('en-US')} bytes)`,
      );
    }
    const cls = Math.min(2 ** Math.ceil(Math.log2(bytes)), Math.floor(limit / 16) * 16);
    const buffer = this.classes.get(cls)?.pop() ?? this.create(cls);
    this.liveBuffers++;
    this.liveBytes += size * DTYPE_BYTES[dtype];
    return new GpuBuffer(buffer, size, dtype);
  }

  /**
   * Returns a buffer to its size class. Each class hands out its oldest buffer first (lists are
   * kept in descending creation order, popped from the end) rather than the last freed: a
   * training step then gets the same buffers for the same tensors step after step, so its bind
   * groups come from the cache instead of being created again (~10-20 us each).
   */
  free(b: GpuBuffer): void {
    this.liveBuffers--;
    this.liveBytes -= b.size * DTYPE_BYTES[b.dtype];
    const cls = b.buffer.size;
    let list = this.classes.get(cls);
    if (!list) this.classes.set(cls, (list = []));
    const id = this.id(b.buffer);
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.id(list[mid]) > id) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, b.buffer);
  }

  /** A buffer's id, in creation order (any GPU buffer gets one on first use). */
  id(b: GPUBuffer): number {
    let id = this.ids.get(b);
    if (id === undefined) this.ids.set(b, (id = this.nextId++));
    return id;
  }

  /** A new pooled buffer; running out of device memory is reported through onError. */
  private create(bytes: number): GPUBuffer {
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    this.id(buffer);
    const live = this.liveBytes;
    void this.device.popErrorScope().then((e) => {
      if (e)
        this.onError(
          `alloc: out of device memory creating a buffer of ${bytes.toLocaleString('en-US')} bytes (${live.toLocaleString('en-US')} bytes of tensors live)`,
        );
    });
    return buffer;
  }
}
