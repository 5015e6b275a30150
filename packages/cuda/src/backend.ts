/**
 * The CUDA backend: every primitive of @sparsegrad/core's Backend as a CUDA kernel of ours
 * (native/kernels/), except dense matmul, which is cuBLAS. The TypeScript decides which kernel runs
 * with which launch shape and arguments; the addon only launches. All work goes to one stream in
 * program order; `read` is the only wait, and it does not block the event loop. The kernel
 * families, one file each under kernels/, are built from a CudaHost (kernels/host.ts):
 *
 *   elementwise.ts  fill, random, copy, unary, binary, where
 *   reduce.ts       reduce (and reduceF32, which other families use)
 *   matmul.ts       matmul (cuBLAS / cuBLASLt)
 *   indexing.ts     gather, scatterAdd (bad indices reported at the next read)
 *   rows.ts         softmax, layer norm and their backward
 *   lists.ts        adamStep, sumOfSquares, scaleBuffers
 *   blocksparse.ts  the block-sparse trio (its routes: ../blocksparse-routes.ts, ../dense-route.ts)
 *   attention.ts    fused attention (optional in the contract: bfloat16 / float16 heads)
 */
import type { Backend, DType } from '@sparsegrad/core';
import { type BackendBuffer, DTYPE_BYTES, type KernelName, type StorageArray } from '@sparsegrad/core/backend';
import { CachingAllocator, CudaBuffer } from './allocator.ts';
import { CudaCapture } from './capture.ts';
import { Args } from './args.ts';
import { deviceIndexErrors, isIndexError } from './index-errors.ts';
import { attentionKernels } from './kernels/attention.ts';
import { blockSparseKernels } from './kernels/blocksparse.ts';
import { elementwiseKernels } from './kernels/elementwise.ts';
import { type CudaHost, P, THREADS, WARP_ROW } from './kernels/host.ts';
import { indexingKernels } from './kernels/indexing.ts';
import { listKernels } from './kernels/lists.ts';
import { matmulKernels } from './kernels/matmul.ts';
import { reduceF32, reduceKernels } from './kernels/reduce.ts';
import { rowKernels } from './kernels/rows.ts';
import type { Addon, DeviceProperties } from './native.ts';
import { DEFAULT_CUDA_TUNING, type CudaTuning } from './tuning.ts';

export { BINARY_OPS, UNARY_OPS } from './kernels/elementwise.ts';
export { REDUCE_OPS } from './kernels/reduce.ts';

export interface CudaBackend extends Backend {
  readonly properties: DeviceProperties;
  /** Waits for all queued work (benchmarks). */
  synchronize(): void;
  /** Device milliseconds of the work `fn` queues, timed with CUDA events (waits for it). */
  timeDevice(fn: () => void): number;
  /** Returns the allocator's cached blocks to the driver. */
  emptyCache(): void;
  /** The kernel routes in use (tuning.ts): the defaults unless a benchmark or test set others. */
  readonly tuning: Readonly<CudaTuning>;
  /** Sets some routes (the rest keep their values); returns the previous tuning, to restore it. */
  setTuning(changes: Partial<CudaTuning>): Readonly<CudaTuning>;
}

/** The kernels with native 16-bit forms (the elementwise, reduction and softmax kernels read and write them, cuBLAS multiplies them). */
const HALF_KERNELS: readonly KernelName[] = ['matmul', 'unary', 'binary', 'reduce', 'softmax', 'softmaxBackward', 'random'];
/**
 * bfloat16 only: the block-sparse trio (bf16 TMA tiles and cuBLAS's bf16 products; the cases they
 * do not take run the float32 kernels on widened copies, see blocksparse-routes.ts).
 */
const BF16_KERNELS: readonly KernelName[] = ['bsrMatmul', 'bsrMatmulGradInput', 'bsrSddmm'];

export function createCudaBackend(rawAddon: Addon, props: DeviceProperties): CudaBackend {
  const allocator = new CachingAllocator(rawAddon);
  // Graphs (captureStep): the addon the kernels see records, or updates recorded launches.
  const capture = new CudaCapture(rawAddon, (ptr, bytes) => allocator.uncached(ptr, bytes));
  const addon = capture.wrap();
  allocator.capture = capture;
  const args = new Args();
  const ids = new Map<string, number>();
  const sms = props.multiprocessors;
  /** Blocks for a grid-stride loop over n items: enough to fill the GPU, no more. */
  const blocksFor = (n: number, perBlock = THREADS) => Math.max(1, Math.min(Math.ceil(n / perBlock), sms * 16));

  function launch(op: string, kernel: string, grid: [number, number, number], threads: number, a: Args, sharedBytes = 0): void {
    try {
      let id = ids.get(kernel);
      if (id === undefined) {
        ids.set(kernel, (id = addon.fn(kernel)));
        // Dynamic shared memory beyond 48 KB must be allowed per kernel.
        if (sharedBytes > 0) addon.setSharedMemory(id, sharedBytes);
      }
      addon.launch(id, grid[0], grid[1], grid[2], threads, 1, 1, sharedBytes, a.data, a.offsets);
    } catch (e) {
      throw new Error(`cuda: ${op}: ${(e as Error).message}`);
    }
  }
  let tuning: Readonly<CudaTuning> = DEFAULT_CUDA_TUNING;
  /** Bytes of the live buffers as requested (the allocator reserves whole size classes). */
  let liveBytes = 0;
  /** Bytes reserved for a buffer: whole 4-byte words, so that 32-bit fills and poisoning cover 16-bit buffers too. */
  const bytesOf = (size: number, dtype: DType) => Math.ceil((Math.max(1, size) * DTYPE_BYTES[dtype]) / 4) * 4;
  function alloc(size: number, dtype: DType): CudaBuffer {
    let ptr: number;
    const bytes = bytesOf(size, dtype);
    try {
      ptr = allocator.alloc(bytes);
    } catch (e) {
      throw new Error(`cuda: alloc: ${(e as Error).message}`);
    }
    // Poisoned (tests): an output element a kernel fails to write shows NaN instead of stale data
    // (0x7fc0 is a bfloat16 NaN, 0x7e00 a float16 one). Not while a graph is recorded: the fill
    // would be replayed over what an upload put there.
    if (tuning.poison && !capture.recording) addon.memset32(ptr, dtype === 'bfloat16' ? 0x7fc07fc0 : dtype === 'float16' ? 0x7e007e00 : 0x7fc00000, bytes / 4);
    liveBytes += size * DTYPE_BYTES[dtype];
    return new CudaBuffer(ptr, size, dtype);
  }
  function free(b: BackendBuffer): void {
    liveBytes -= b.size * DTYPE_BYTES[b.dtype];
    allocator.release(P(b), bytesOf(b.size, b.dtype));
  }
  function upload(data: StorageArray, dtype: DType): CudaBuffer {
    const b = alloc(data.length, dtype);
    addon.upload(b.ptr, data);
    return b;
  }

  /** A row-wise kernel (softmax, layer norm, row reductions): a warp per row for short rows, else a block. */
  function rowLaunch(op: string, kernel: string, rows: number, n: number, a: Args): void {
    if (n <= WARP_ROW) launch(op, `${kernel}_warp`, [blocksFor(rows, THREADS / 32), 1, 1], THREADS, a);
    else launch(op, `${kernel}_block`, [Math.max(1, Math.min(rows, sms * 8)), 1, 1], THREADS, a);
  }

  const host: CudaHost = {
    addon,
    allocator,
    args,
    sms,
    hopper: props.computeCapability === '9.0',
    tuning: () => tuning,
    launch,
    alloc,
    free,
    upload: (data) => upload(data, 'int32'),
    blocksFor,
    piecesFor: (outputs, n, minPiece) => Math.max(1, Math.min(Math.ceil((sms * 2048) / Math.max(1, outputs)), Math.ceil(n / minPiece))),
    rowLaunch,
    reduceF32: (op, x, outer, n, inner, out) => reduceF32(host, op, x, outer, n, inner, out),
    indexErrors: deviceIndexErrors(addon),
    backend: () => backend,
  };
  const { indexErrors } = host;

  const backend: CudaBackend = {
    name: 'cuda',
    properties: props,
    device: {
      name: 'cuda',
      description: `${props.name} (compute capability ${props.computeCapability}, ${props.multiprocessors} multiprocessors, ${(props.totalMemory / 2 ** 30).toFixed(0)} GiB)`,
    },

    // 16-bit floats are stored natively; dense products take them through cuBLAS, every other
    // kernel through core's float32 fallback (half-fallback.ts) until it has a native one.
    dtypes: ['float32', 'int32', 'bfloat16', 'float16'],
    halfKernels: { bfloat16: [...HALF_KERNELS, ...BF16_KERNELS], float16: HALF_KERNELS },

    alloc,
    upload,
    async read(b, size) {
      let bytes: ArrayBuffer;
      try {
        [bytes] = await Promise.all([addon.read(P(b), size * DTYPE_BYTES[b.dtype]), indexErrors.check()]);
      } catch (e) {
        throw isIndexError(e) ? e : new Error(`cuda: read: ${(e as Error).message}`);
      }
      return b.dtype === 'int32' ? new Int32Array(bytes) : b.dtype === 'float32' ? new Float32Array(bytes) : new Uint16Array(bytes);
    },
    free,
    memory: () => ({ buffers: allocator.liveBlocks, bytes: liveBytes }),

    ...elementwiseKernels(host),
    ...reduceKernels(host),
    ...matmulKernels(host),
    ...blockSparseKernels(host),
    ...indexingKernels(host),
    ...rowKernels(host),
    ...listKernels(host),
    fusedAttention: attentionKernels(host),
    capture,

    synchronize: () => addon.synchronize(),
    timeDevice(fn) {
      const start = addon.recordEvent();
      fn();
      const end = addon.recordEvent();
      addon.synchronize();
      const ms = addon.elapsed(start, end);
      addon.releaseEvents();
      return ms;
    },
    emptyCache: () => allocator.emptyCache(),
    get tuning() {
      return tuning;
    },
    setTuning(changes) {
      const previous = tuning;
      tuning = Object.freeze({ ...previous, ...changes });
      return previous;
    },
  };
  return backend;
}
