/**
 * The compiled addon (native/addon.cpp), loaded on demand. Where it was not built, the reason
 * recorded by scripts/build.mjs becomes the backend's "unavailable" reason.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

export interface DeviceProperties {
  name: string;
  computeCapability: string;
  multiprocessors: number;
  sharedMemoryPerBlock: number;
  totalMemory: number;
  driverVersion: number;
}

/** Device pointers travel as numbers (exact below 2^53, far above any device address). */
export interface Addon {
  init(device?: number): DeviceProperties;
  fn(name: string): number;
  launch(id: number, gx: number, gy: number, gz: number, bx: number, by: number, bz: number, sharedBytes: number, args: Uint8Array, offsets: Uint32Array): void;
  setSharedMemory(id: number, bytes: number): void;
  /** The TMA descriptor (CUtensorMap, 128 bytes) of a row-major [outer, inner] fp32 or bf16 matrix. */
  tensorMap(
    ptr: number,
    bf16: number,
    inner: number,
    outer: number,
    rowStrideBytes: number,
    boxInner: number,
    boxOuter: number,
    swizzleBytes: number,
  ): Uint8Array;
  malloc(bytes: number): number;
  free(ptr: number): void;
  upload(ptr: number, data: ArrayBufferView): void;
  memset32(ptr: number, value: number, count: number): void;
  copy(dst: number, src: number, bytes: number): void;
  read(ptr: number, bytes: number): Promise<ArrayBuffer>;
  /** Blocking readback, for setup only. */
  readSync(ptr: number, bytes: number): ArrayBuffer;
  synchronize(): void;
  memInfo(): [free: number, total: number];
  recordEvent(): number;
  elapsed(start: number, end: number): number;
  releaseEvents(): void;
  /**
   * Column-major C = op(A) op(B) through cuBLAS; compute 0 fp32, 1 TF32, 2 BF16 (fp32 data);
   * cublasLt 1: through cuBLASLt where it loaded; dtype 0 fp32, 1 bf16, 2 fp16 (A, B and C; fp32 accumulation).
   */
  gemm(
    transA: number,
    transB: number,
    m: number,
    n: number,
    k: number,
    a: number,
    lda: number,
    strideA: number,
    b: number,
    ldb: number,
    strideB: number,
    c: number,
    ldc: number,
    strideC: number,
    batch: number,
    compute: number,
    cublasLt: number,
    dtype: number,
  ): void;
  /** Synchronous host -> device copy outside the stream (uploads while a graph is captured). */
  uploadSync(ptr: number, data: ArrayBufferView): void;
  /** Starts capturing the stream into a graph (relaxed mode). */
  captureBegin(): void;
  /** The index of the node the last captured operation became. */
  captureNode(): number;
  /** Ends the capture and instantiates the graph; returns its id. */
  captureEnd(): number;
  /** Ends a capture and discards it. */
  captureAbort(): void;
  graphLaunch(graph: number): void;
  /** Replaces a captured kernel node's launch (cuGraphExecKernelNodeSetParams), arguments as for launch. */
  graphSetKernel(
    graph: number,
    node: number,
    id: number,
    gx: number,
    gy: number,
    gz: number,
    bx: number,
    by: number,
    bz: number,
    sharedBytes: number,
    args: Uint8Array,
    offsets: Uint32Array,
  ): void;
  graphRelease(graph: number): void;
}

const build = join(import.meta.dirname, '..', 'build');

export function loadAddon(): Addon {
  const file = join(build, 'Release', 'sparsegrad_cuda.node');
  if (!existsSync(file)) {
    let reason = 'the CUDA addon was not built (run `npm run build -w @sparsegrad/cuda`)';
    try {
      const status = JSON.parse(readFileSync(join(build, 'status.json'), 'utf8')) as { reason?: string };
      if (status.reason) reason = `the CUDA addon was not built: ${status.reason}`;
    } catch {
      // no status: the install script never ran
    }
    throw new Error(reason);
  }
  return createRequire(import.meta.url)(file) as Addon;
}
