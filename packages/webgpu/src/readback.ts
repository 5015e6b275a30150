/**
 * Reading GPU buffers back to the host: pooled staging buffers, and the index flags of the
 * gather and scatter-add kernels (core's edge-case rules), which travel with a read's data when
 * such a kernel ran since the last read.
 */
import { deviceIndexError } from '@sparsegrad/core/backend';
import { GpuBuffer } from './context.ts';

/**
 * Maps a buffer for reading. Dawn's Node bindings hold no event-loop handle while a map is
 * pending: keep the loop alive (or Node would exit with the promise unsettled).
 */
export async function mapForReading(buffer: GPUBuffer): Promise<void> {
  const keepAlive = setInterval(() => {}, 1000);
  try {
    await buffer.mapAsync(GPUMapMode.READ);
  } finally {
    clearInterval(keepAlive);
  }
}

/** A read in flight: its data's staging buffer, and the flags' where they travel with it. */
export interface StagedRead {
  readonly data: GPUBuffer;
  readonly bytes: number;
  readonly flags: GPUBuffer | null;
}

export class Readback {
  /** Staging buffers by size: reused, since creating and destroying one per read crashed Dawn's Node bindings. */
  private readonly staging = new Map<number, GPUBuffer[]>();
  private indexFlags: GpuBuffer | null = null;
  private indexCheckPending = false;

  constructor(private readonly device: GPUDevice) {}

  /**
   * The flag buffer of the index-checking kernels: [op code, index, n] of the first index found
   * out of range, 0 while none was. Binding it marks it for checking at the next read.
   */
  flags(): GpuBuffer {
    // Outside the pool and its accounting: it lives as long as the device. WebGPU zeroes new buffers.
    this.indexFlags ??= new GpuBuffer(
      this.device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST }),
      4,
      'int32',
    );
    this.indexCheckPending = true;
    return this.indexFlags;
  }

  /** Records the copies of a read into `encoder` (no pass open): the first `bytes` of `src`, and the flags if pending. */
  stage(encoder: GPUCommandEncoder, src: GPUBuffer, bytes: number): StagedRead {
    const data = this.copyToStaging(encoder, src, bytes);
    const flags = this.indexCheckPending ? this.copyToStaging(encoder, this.indexFlags!.buffer, 12) : null;
    this.indexCheckPending = false;
    return { data, bytes, flags };
  }

  /**
   * Waits for a staged read (after its commands were submitted). `indexError` is the Error the
   * caller must throw (after clearing `flagBuffer`) when a kernel found a bad index.
   */
  async finish(read: StagedRead): Promise<{ data: ArrayBuffer; indexError: Error | null }> {
    const [data, flagBytes] = await Promise.all([this.readStaging(read.data, read.bytes), read.flags && this.readStaging(read.flags, 12)]);
    if (!flagBytes) return { data, indexError: null };
    const [code, index, n] = new Int32Array(flagBytes);
    return { data, indexError: deviceIndexError(code, index, n) };
  }

  /** The flag buffer, for clearing it once its error was reported. */
  get flagBuffer(): GpuBuffer | null {
    return this.indexFlags;
  }

  private copyToStaging(encoder: GPUCommandEncoder, src: GPUBuffer, bytes: number): GPUBuffer {
    const cls = Math.max(16, 2 ** Math.ceil(Math.log2(Math.max(4, bytes))));
    const staging = this.staging.get(cls)?.pop() ?? this.device.createBuffer({ size: cls, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.copyBufferToBuffer(src, 0, staging, 0, Math.min(staging.size, src.size));
    return staging;
  }

  /** Maps a staging buffer, copies out its first `bytes` and returns it to the pool. */
  private async readStaging(staging: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    await mapForReading(staging);
    const copy = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    let list = this.staging.get(staging.size);
    if (!list) this.staging.set(staging.size, (list = []));
    list.push(staging);
    return copy;
  }
}
