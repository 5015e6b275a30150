/**
 * The WebGPU engine: the device, its buffer pool (pool.ts) and kernel cache (pipelines.ts), and lazy
 * command submission. Kernels
 * call `dispatch`, which records into the current command encoder; work is submitted at a read
 * or once a batch is full, and only reads wait for the GPU. After a read the GPU has nothing
 * queued, so batches start small and double up to MAX_BATCH: the GPU starts on the first
 * FIRST_BATCH dispatches instead of idling while the host encodes MAX_BATCH of them. Per-dispatch
 * parameters go into one uniform arena per batch, uploaded just before its submit (queue order
 * guarantees the previous batch has consumed the arena by then).
 */
import type { DType } from '@sparsegrad/core';
import { type BackendBuffer, DTYPE_BYTES } from '@sparsegrad/core/backend';
import { type Kernel, Pipelines } from './pipelines.ts';
import { BufferPool, GpuBuffer } from './pool.ts';
import { KernelProfiler, type KernelTime } from './profiler.ts';
import { Readback, mapForReading } from './readback.ts';
import { DEFAULT_WEBGPU_TUNING, type WebGPUTuning } from './tuning.ts';

const MAX_BATCH = 256;
/** Uniform blocks are bound at multiples of this offset alignment. */
const UNIFORM_STRIDE = 256;
const WORKGROUP = 256;
export const MAX_GROUPS_X = 65535;

export { GpuBuffer, type Kernel };

/** A word of a dispatch's uniform block: a plain number is a u32 (no object per word); holes are left as they are. */
export type Param = number | { i32: number } | { f32: number } | undefined;
/** A backend buffer as this backend's own; a u32 kernel parameter. */
export const G = (b: BackendBuffer) => b as GpuBuffer;
export const u = (v: number): Param => v >>> 0;

export class GpuContext {
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  /** Dispatches the current batch takes before it is submitted (ramps from firstBatch to MAX_BATCH). */
  private batchLimit: number;
  private tuningNow: Readonly<WebGPUTuning> = DEFAULT_WEBGPU_TUNING;
  private readonly arena: GPUBuffer;
  private readonly arenaData = new ArrayBuffer(MAX_BATCH * UNIFORM_STRIDE);
  private readonly arenaView = new DataView(this.arenaData);
  /** The dynamic offset of the next setBindGroup (one array, not one per dispatch). */
  private readonly offsets = new Uint32Array(1);
  /** The pipeline last set in the open pass, so that runs of one kernel set it once. */
  private passPipeline: GPUComputePipeline | null = null;
  private readonly pool: BufferPool;
  private readonly pipelines: Pipelines;
  private lastOp = '';
  private timing: { querySet: GPUQuerySet; resolve: GPUBuffer; readback: GPUBuffer } | null = null;
  private error: string | null = null;
  private lost: string | null = null;
  private profiler: KernelProfiler | null = null;
  private readonly readback: Readback;
  /** Objects that must live as long as the device (see device.ts). */
  readonly owners: unknown[] = [];

  constructor(
    readonly device: GPUDevice,
    readonly description: string,
  ) {
    this.readback = new Readback(device);
    this.batchLimit = this.firstBatch;
    this.arena = device.createBuffer({ size: this.arenaData.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.pool = new BufferPool(device, (message) => {
      this.error ??= message;
    });
    this.pipelines = new Pipelines(device, this.pool, this.arena, UNIFORM_STRIDE);
    device.addEventListener('uncapturederror', (e) => {
      this.error ??= `${this.lastOp}: ${(e as GPUUncapturedErrorEvent).error.message}`;
    });
    void device.lost.then((info) => {
      this.lost = `device lost (${info.reason}): ${info.message}`;
    });
  }

  /**
   * Throws the first asynchronous GPU error seen, naming the op that was being encoded. A
   * validation error is reported once (later ops may still work); a lost device stays an error.
   */
  check(): void {
    if (this.lost) throw new Error(`webgpu: ${this.lost}`);
    const error = this.error;
    this.error = null;
    if (error) throw new Error(`webgpu: ${error}`);
  }

  /** The kernel variants in use (tuning.ts): the defaults unless a benchmark or test set others. */
  get tuning(): Readonly<WebGPUTuning> {
    return this.tuningNow;
  }

  /** Sets some kernel variants (the rest keep their values); returns the previous tuning, to restore it. */
  setTuning(changes: Partial<WebGPUTuning>): Readonly<WebGPUTuning> {
    const previous = this.tuningNow;
    this.tuningNow = Object.freeze({ ...previous, ...changes });
    return previous;
  }

  /** The first batch after a read (the submission ramp above). */
  private get firstBatch(): number {
    return Math.max(1, Math.min(this.tuningNow.firstBatch, MAX_BATCH));
  }

  // ---- buffers (pool.ts) ----
  alloc(size: number, dtype: DType): GpuBuffer {
    return this.pool.alloc(size, dtype);
  }

  free(b: GpuBuffer): void {
    this.pool.free(b);
  }

  /** Tensors' buffers alive now, and their bytes as requested (classes round up). */
  get live(): { buffers: number; bytes: number } {
    return { buffers: this.pool.liveBuffers, bytes: this.pool.liveBytes };
  }

  upload(b: GpuBuffer, data: ArrayBufferView): void {
    if (!data.byteLength) return;
    if (data.byteLength % 4) {
      // writeBuffer copies whole words: an odd count of 16-bit values is padded by one.
      const padded = new Uint8Array(data.byteLength + 2);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      data = padded;
    }
    // queue.writeBuffer runs before commands still in an unsubmitted encoder, and `b` may be a
    // recycled buffer those commands read: submit them first so the order is kept.
    this.flush();
    this.device.queue.writeBuffer(b.buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  }

  /** The flag buffer of the index-checking kernels (readback.ts); binding it marks it for checking at the next read. */
  indexErrors(): GpuBuffer {
    return this.readback.flags();
  }

  async read(b: GpuBuffer, size: number): Promise<Float32Array | Int32Array | Uint16Array> {
    this.check();
    this.ensureEncoder();
    this.endPass();
    const staged = this.readback.stage(this.encoder!, b.buffer, Math.ceil((size * DTYPE_BYTES[b.dtype]) / 4) * 4);
    this.flush();
    const { data, indexError } = await this.readback.finish(staged);
    this.batchLimit = this.firstBatch; // the GPU has run dry: start it again soon
    this.check();
    if (indexError) {
      this.upload(this.readback.flagBuffer!, new Int32Array(4));
      throw indexError;
    }
    if (b.dtype === 'int32') return new Int32Array(data);
    return b.dtype === 'float32' ? new Float32Array(data) : new Uint16Array(data, 0, size);
  }

  // ---- kernels (pipelines.ts) ----
  /** Compiles a kernel once per key (see Pipelines.kernel). */
  pipeline(key: string, code: () => string): Kernel {
    return this.pipelines.kernel(key, code);
  }

  private ensureEncoder(): void {
    this.encoder ??= this.device.createCommandEncoder();
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
    this.passPipeline = null;
  }

  /**
   * Records one dispatch. Bindings: @binding(0) is the uniform parameter block (when params are
   * given), then the buffers in order. `threads` is the number of invocations needed; the grid is
   * folded into 2-D when it exceeds the per-dimension limit (kernels use `globalIndex()`).
   */
  dispatch(op: string, kernel: Kernel, buffers: GpuBuffer[], params: Param[], threads: number, workgroup = WORKGROUP): void {
    if (threads <= 0) return;
    const groups = Math.ceil(threads / workgroup);
    const x = Math.min(groups, MAX_GROUPS_X);
    this.dispatchGrid(op, kernel, buffers, params, [x, Math.ceil(groups / x), 1]);
  }

  /** Records one dispatch of an explicit workgroup grid. */
  dispatchGrid(op: string, kernel: Kernel, buffers: GpuBuffer[], params: Param[], grid: [number, number, number]): void {
    if (grid[0] * grid[1] * grid[2] <= 0) return;
    this.check();
    this.lastOp = op;
    if (this.dispatches >= this.batchLimit) this.flush();
    this.ensureEncoder();
    const offset = this.dispatches * UNIFORM_STRIDE;
    const view = this.arenaView;
    for (let i = 0; i < params.length; i++) {
      const p = params[i];
      if (typeof p === 'number') view.setUint32(offset + i * 4, p, true);
      else if (p === undefined) continue;
      else if ('i32' in p) view.setInt32(offset + i * 4, p.i32, true);
      else view.setFloat32(offset + i * 4, p.f32, true);
    }
    const group = this.pipelines.bindGroup(kernel, buffers);
    if (this.profiler) {
      this.pass = this.profiler.pass(this.encoder!, op);
      this.passPipeline = null;
    }
    if (!this.pass) {
      this.pass = this.encoder!.beginComputePass();
      this.passPipeline = null;
    }
    if (this.passPipeline !== kernel.pipeline) {
      this.pass.setPipeline(kernel.pipeline);
      this.passPipeline = kernel.pipeline;
    }
    this.offsets[0] = offset;
    this.pass.setBindGroup(0, group, this.offsets, 0, 1);
    this.pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    if (this.profiler) this.endPass();
    this.dispatches++;
  }

  get profiling(): boolean {
    return this.profiler !== null;
  }

  /** Starts timing every kernel by op name (needs `canTime`); see profiler.ts. */
  startProfile(): void {
    if (!this.canTime) throw new Error('webgpu: profiling needs the timestamp-query feature, which this adapter lacks');
    this.flush();
    this.profiler = new KernelProfiler(this.device, MAX_BATCH);
  }

  /** Stops profiling; resolves with milliseconds and dispatch counts per op name. */
  async stopProfile(): Promise<Map<string, KernelTime>> {
    const profiler = this.profiler;
    if (!profiler) throw new Error('webgpu: stopProfile without startProfile');
    this.flush();
    this.profiler = null;
    await profiler.settle();
    return profiler.times;
  }

  /** Whether the device can time passes (the `timestamp-query` feature). */
  get canTime(): boolean {
    return this.device.features.has('timestamp-query');
  }

  /**
   * Device time in milliseconds of the dispatches `record` encodes, from timestamps written at
   * the start and end of one compute pass (benchmarks; needs `canTime`). `record` must only
   * dispatch: an upload, a read or more than MAX_BATCH dispatches would split the pass.
   */
  async timePass(record: () => void): Promise<number> {
    this.flush();
    this.ensureEncoder();
    this.timing ??= {
      querySet: this.device.createQuerySet({ type: 'timestamp', count: 2 }),
      resolve: this.device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }),
      readback: this.device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
    };
    const { querySet, resolve, readback } = this.timing;
    const encoder = this.encoder!;
    this.pass = encoder.beginComputePass({ timestampWrites: { querySet: querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    const pass = this.pass;
    // A whole batch for the timed work, which must not be split.
    const limit = this.batchLimit;
    this.batchLimit = MAX_BATCH;
    record();
    this.batchLimit = limit;
    if (this.encoder !== encoder || this.pass !== pass) throw new Error('webgpu: timePass: the timed work was split across passes');
    this.endPass();
    encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, readback, 0, 16);
    this.flush();
    await mapForReading(readback);
    const [t0, t1] = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    this.check();
    return Number(t1 - t0) / 1e6;
  }

  /** Submits what was recorded (with its uniforms). */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.dispatches) this.device.queue.writeBuffer(this.arena, 0, this.arenaData, 0, this.dispatches * UNIFORM_STRIDE);
    const collect = this.profiler?.beforeSubmit(this.encoder);
    this.device.queue.submit([this.encoder.finish()]);
    collect?.();
    this.encoder = null;
    this.dispatches = 0;
    this.batchLimit = Math.min(MAX_BATCH, 2 * this.batchLimit);
  }
}

/** WGSL helper every kernel includes: the flat invocation index over a folded 2-D grid. */
export const INDEX_WGSL = /* wgsl */ `
fn flatIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * ${WORKGROUP}u;
}`;
export const WG = WORKGROUP;
