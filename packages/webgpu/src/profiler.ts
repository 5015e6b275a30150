/**
 * Per-kernel device times (for benchmarks and diagnosis): while on, every dispatch runs in a
 * compute pass of its own with timestamps at its start and end, resolved with the batch and read
 * back asynchronously. Times accumulate per op name. Passes of their own serialise kernels a
 * little more than normal batching, so totals are an upper bound of the kernels' share.
 */
import { mapForReading } from './readback.ts';

export interface KernelTime {
  ms: number;
  count: number;
}

export class KernelProfiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private readonly readbacks: GPUBuffer[] = [];
  private ops: string[] = [];
  private pending: Promise<void>[] = [];
  readonly times = new Map<string, KernelTime>();

  constructor(
    private readonly device: GPUDevice,
    private readonly capacity: number,
  ) {
    this.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * capacity });
    this.resolve = device.createBuffer({ size: 16 * capacity, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  }

  /** A pass for the next dispatch of `op` (the caller ends it after the dispatch). */
  pass(encoder: GPUCommandEncoder, op: string): GPUComputePassEncoder {
    const i = this.ops.length;
    this.ops.push(op);
    return encoder.beginComputePass({ timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
  }

  /** Records the resolve of this batch's timestamps into `encoder`; call `collect` after submitting it. */
  beforeSubmit(encoder: GPUCommandEncoder): (() => void) | null {
    const n = this.ops.length;
    if (!n) return null;
    const ops = this.ops;
    this.ops = [];
    const readback = this.readbacks.pop() ?? this.device.createBuffer({ size: 16 * this.capacity, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.resolveQuerySet(this.querySet, 0, 2 * n, this.resolve, 0);
    encoder.copyBufferToBuffer(this.resolve, 0, readback, 0, 16 * n);
    return () => {
      this.pending.push(
        mapForReading(readback).then(() => {
          const t = new BigUint64Array(readback.getMappedRange(0, 16 * n).slice(0));
          readback.unmap();
          this.readbacks.push(readback);
          ops.forEach((op, i) => {
            const entry = this.times.get(op) ?? { ms: 0, count: 0 };
            entry.ms += Number(t[2 * i + 1] - t[2 * i]) / 1e6;
            entry.count++;
            this.times.set(op, entry);
          });
        }),
      );
    };
  }

  /** Waits for every batch submitted so far to be read back. */
  async settle(): Promise<void> {
    while (this.pending.length) await Promise.all(this.pending.splice(0));
  }
}
