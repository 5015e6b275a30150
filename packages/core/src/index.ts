/**
 * @sparsegrad/core: tensors, reverse-mode autograd, the ops, block-sparse matrices and the choice
 * of backend. Backend authors import the kernel contract from @sparsegrad/core/backend.
 */
import './cpu/backend.ts'; // registers 'cpu'

export type { AdamStepSpec, MatmulPrecision, Backend, BlockLayout, DType, HalfDType, TypedArray } from './backend.ts';
export { DTYPES, MATMUL_PRECISIONS, isFloating, isHalf } from './backend.ts';
export { backends, type BackendStatus } from './registry.ts';
export {
  getBackend,
  setBackend,
  lastBackendChoice,
  manualSeed,
  memory,
  resetPeakMemory,
  noGrad,
  isGradEnabled,
  setFloat32MatmulPrecision,
  getFloat32MatmulPrecision,
  type MemoryInfo,
} from './engine.ts';
export { Tensor, tidy, releasing, keep, type NestedArray } from './tensor.ts';
export { release } from './autograd/graph.ts';
export { autocast, autocastDtype } from './autocast.ts';
export { captureStep, notReplayable, varying, CapturedStep, type CaptureOptions } from './capture.ts';
export { tensor, zeros, ones, full, zerosLike, onesLike, randn, rand, arange, eye, fromNdarray, toNdarray, type CreateOptions } from './creation.ts';
export {
  add,
  sub,
  mul,
  div,
  pow,
  maximum,
  minimum,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,
  neg,
  exp,
  log,
  sqrt,
  abs,
  tanh,
  sigmoid,
  relu,
  gelu,
  clamp,
  where,
  cast,
  to,
  promoteTypes,
  sign,
} from './ops/elementwise.ts';
export { sum, mean, max, min, argmax, argmin, sumTo } from './ops/reduce.ts';
export { linear, matmul } from './ops/matmul.ts';
export {
  attentionWeights,
  scaledDotProductAttention,
  type AttentionWeightsOptions,
  type ScaledDotProductAttentionOptions,
} from './ops/attention.ts';
export { reshape, view, flatten, permute, transpose, expand, squeeze, unsqueeze, slice, narrow, contiguous, cat, stack, broadcastTo } from './ops/movement.ts';
export { gather, indexSelect } from './ops/indexing.ts';
export { softmax, logSoftmax, causalSoftmax, layerNorm, dropout, crossEntropy, mseLoss, type CrossEntropyOptions, type Reduction } from './ops/nn.ts';
export { bsrMatmul } from './ops/blocksparse.ts';
export { adamStep, adamSteps, scaleEach, scaleEachInPlace, sumOfSquares, type AdamSlot } from './ops/optim.ts';
export { BlockSparseMatrix, type BlockCountOptions } from './blocksparse/matrix.ts';
export { BLOCK_SIZES } from './blocksparse/layout.ts';
export { opError, fmtShape } from './errors.ts';
export { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16, roundTo } from './half.ts';
