/**
 * @sparsegrad/core/backend: what a backend author needs beyond the user API of
 * @sparsegrad/core: the kernel contract and its registration, the block layouts' work tables,
 * stride helpers, the counter-based random numbers every backend reproduces, and the engine.
 * Users need none of it.
 */
export type {
  AdamBuffers,
  AdamStepSpec,
  AttentionOperand,
  AttentionSpec,
  Backend,
  FusedAttention,
  KernelCapture,
  BackendBuffer,
  BinaryOp,
  BlockLayout,
  DType,
  HalfDType,
  KernelName,
  MatmulPrecision,
  MatrixView,
  RandomSpec,
  ReduceOp,
  StorageArray,
  TypedArray,
  UnaryOp,
  View,
} from './backend.ts';
export { DTYPE_BYTES, KERNELS, adamCoefficients, flatView, isHalf, matrixAt } from './backend.ts';
export { type Widened, widened, withHalfFallback } from './half-fallback.ts';
export { CapturePool } from './capture-pool.ts';
export { KernelRecorder, type RecordingBase } from './kernel-recorder.ts';
export { registerBackend, type BackendEntry } from './registry.ts';
export { engine } from './engine.ts';
export {
  blockColumnRuns,
  blockRowRuns,
  buildLayout,
  buildTileItems,
  buildUnionTable,
  layoutDensity,
  linesLongestFirst,
  transposedLayout,
  unionGroupsLongestFirst,
  type LayoutShape,
  type TileLimits,
} from './blocksparse/layout.ts';
export { LayoutDeviceCache } from './blocksparse/device-cache.ts';
export { createCpuBackend } from './cpu/backend.ts';
export { uniformAt, normalAt, randomBits } from './random.ts';
export { opError, fmtShape, indexOutOfRange, deviceIndexError } from './errors.ts';
export { collapse as collapseDims, isTranspose, vectorize } from './cpu/strided.ts';
export { contiguousStrides, sizeOf } from './shape.ts';
export { orderBand, waveSplits } from './waves.ts';
export { parseTuningEntry, type TuningSpec } from './tuning.ts';
