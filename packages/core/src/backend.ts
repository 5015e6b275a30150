/**
 * The backend contract.
 *
 * A backend owns memory and runs a small set of primitive kernels. It knows nothing about
 * autograd, broadcasting rules, shape checks or op semantics: core validates every input,
 * computes every output shape, expresses broadcasting as zero strides and only then calls a
 * kernel. A kernel may therefore assume its arguments are consistent.
 *
 * Conventions shared by all kernels:
 * - Sizes and strides count elements, never bytes.
 * - Outputs are always fresh contiguous buffers allocated by core through `alloc`,
 *   except `copy`, whose destination is a strided view into an existing buffer.
 * - Inputs described by a `View` may be non-contiguous (transposed, sliced, broadcast with
 *   stride 0); inputs passed as a bare buffer are contiguous and start at element 0.
 * - Kernels are enqueued in program order; only `read` waits for them.
 *
 * Dtypes: a backend lists the dtypes it can hold (`dtypes`; float32 and int32 always). Of a 16-bit
 * dtype (bfloat16, float16) it must implement storage (`alloc`, `upload`, `read`, `free`) and
 * `copy` between it and every other dtype it holds (rounding to nearest even; float -> int32 as
 * below); every other kernel receives 16-bit buffers only if the backend names it in
 * `halfKernels`. Core wraps the rest (half-fallback.ts): 16-bit operands are widened to float32
 * temporaries, the float32 kernel runs, and 16-bit outputs are rounded from its result. That is
 * the rule every backend's 16-bit arithmetic follows: compute in float32, round once at each
 * store. A native kernel may differ only by the order of its float32 accumulation.
 *
 * Edge cases: every backend gives the same answer (the CPU backend is the reference, and the
 * shared test suite checks each rule on every backend):
 * - NaN propagates as in PyTorch: relu(NaN), maximum/minimum with a NaN operand and max/min
 *   reductions over a NaN are NaN; argmax/argmin return the first NaN's index. The identity of
 *   max is -Infinity (of min +Infinity), never the largest finite float.
 * - float32 -> int32 (`copy` between dtypes) is JavaScript's ToInt32, what storing into an
 *   Int32Array does: truncate toward zero, wrap modulo 2^32, NaN and infinities give 0.
 * - int32 arithmetic wraps modulo 2^32 (add, sub, mul, neg, abs; products exactly, not through
 *   doubles). Division truncates toward zero and a zero divisor gives 0 (also 0 / 0); INT_MIN / -1
 *   wraps to INT_MIN. pow is exact and wraps; a negative exponent gives the truncated power: 1 for
 *   a base of 1, +-1 for -1, 0 otherwise (0 for a base of 0, as division by zero).
 * - Index operands (`gather`, `scatterAdd`: embedding ids, cross-entropy targets, indexSelect) out
 *   of [0, n) are an Error naming the op, the index and n. The CPU backend throws at once; a GPU
 *   backend writes 0 for the element, records the first bad index in a device-side flag and
 *   rejects the next `read` with that Error, so no value computed after it reaches the user.
 */

export type DType = 'float32' | 'int32' | 'bfloat16' | 'float16';
/** The 16-bit floating dtypes: stored as 16-bit values, computed in float32. */
export type HalfDType = 'bfloat16' | 'float16';
export const DTYPES: readonly DType[] = ['float32', 'int32', 'bfloat16', 'float16'];
export const isHalf = (d: DType): d is HalfDType => d === 'bfloat16' || d === 'float16';
export const isFloating = (d: DType): boolean => d !== 'int32';
/** Bytes per element of each dtype as stored. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = { float32: 4, int32: 4, bfloat16: 2, float16: 2 };
/** What users read and write: 16-bit floats reach the host converted to float32. */
export type TypedArray = Float32Array | Int32Array;
/** What a backend stores and transfers: 16-bit floats as their bits. */
export type StorageArray = Float32Array | Int32Array | Uint16Array;

/** A backend-owned allocation; opaque to core. */
export interface BackendBuffer {
  /** Capacity in elements. */
  readonly size: number;
  readonly dtype: DType;
}

/** A strided window onto a buffer. `strides[i]` may be 0 (broadcast). */
export interface View {
  readonly buffer: BackendBuffer;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

/** A batched matrix operand: element (b, i, j) is at offset + b*batchStride + i*rowStride + j*colStride. */
export interface MatrixView {
  readonly buffer: BackendBuffer;
  readonly offset: number;
  readonly batchStride: number;
  readonly rowStride: number;
  readonly colStride: number;
}

/** The first `size` elements of `buffer` (all of it by default) as a one-dimensional View. */
export function flatView(buffer: BackendBuffer, size = buffer.size): View {
  return { buffer, shape: [size], strides: [1], offset: 0 };
}

/** A single matrix at the start of `buffer` as a MatrixView (no batch). */
export function matrixAt(buffer: BackendBuffer, rowStride: number, colStride: number): MatrixView {
  return { buffer, offset: 0, batchStride: 0, rowStride, colStride };
}

export type UnaryOp =
  | 'neg'
  | 'exp'
  | 'log'
  | 'sqrt'
  | 'abs'
  | 'sign'
  | 'tanh'
  | 'sigmoid'
  | 'relu'
  | 'geluTanh'
  | 'geluErf'
  /** Derivatives of the GELU variants with respect to their input. */
  | 'geluTanhGrad'
  | 'geluErfGrad';

export type BinaryOp =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'pow'
  | 'maximum'
  | 'minimum'
  /** Comparisons write 1 or 0 in the output dtype. */
  | 'eq'
  | 'ne'
  | 'lt'
  | 'le'
  | 'gt'
  | 'ge'
  /** b times the derivative of GELU at a: the backward of gelu (a its input, b the output's gradient), float only. */
  | 'geluTanhBackward'
  | 'geluErfBackward';

export type ReduceOp = 'sum' | 'max' | 'min' | 'argmax' | 'argmin';

/**
 * How float32 matrix products may compute (as torch.set_float32_matmul_precision): 'highest'
 * multiplies in fp32; 'high' allows TF32 tensor cores and 'medium' BF16 ones, both accumulating
 * in fp32. A backend without such units computes every product in fp32.
 */
export type MatmulPrecision = 'highest' | 'high' | 'medium';
export const MATMUL_PRECISIONS: readonly MatmulPrecision[] = ['highest', 'high', 'medium'];

/**
 * Where the nonzero blocks of a block-sparse matrix W [rows, cols] sit. Blocks are stored in
 * block-row-major order (CSR order): block b covers W[rowIdx[b]*bs .. +bs, colIdx[b]*bs .. +bs]
 * and its data is blocks[b] = a bs x bs row-major tile. Immutable once built; backends may cache
 * device copies of these arrays keyed by the layout object.
 */
export interface BlockLayout {
  readonly rows: number;
  readonly cols: number;
  readonly blockSize: number;
  readonly nnzBlocks: number;
  /** CSR: blocks of block-row r are rowPtr[r] .. rowPtr[r+1]-1 (for Y = X W^T). */
  readonly rowPtr: Int32Array;
  readonly colIdx: Int32Array;
  /** Coordinate list: block-row of each block (for the SDDMM dW = dY^T X). */
  readonly rowIdx: Int32Array;
  /** CSC: the blocks of block-column c are cscBlock[colPtr[c] .. colPtr[c+1]-1] (for dX = dY W). */
  readonly colPtr: Int32Array;
  readonly cscBlock: Int32Array;
  /**
   * The block row of each CSC position, rowIdx[cscBlock[s]]: kernels walking a block column read
   * it independently of cscBlock[s] instead of after it.
   */
  readonly cscRow: Int32Array;
}

export interface RandomSpec {
  readonly kind: 'uniform' | 'normal' | 'keep';
  /** 32-bit key drawn from core's seeded generator; element i depends only on (key, i). */
  readonly key: number;
  /**
   * uniform: [a, b); normal: mean a, standard deviation b; keep (a dropout mask): b where the
   * uniform [0, 1) draw of element i is >= a (a and b as float32), else 0.
   */
  readonly a: number;
  readonly b: number;
}

/** Hyper-parameters of one Adam step (see Backend.adamStep); bias corrections are for this step. */
export interface AdamStepSpec {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** AdamW: weight decay applied to p directly instead of being added to the gradient. */
  readonly decoupled: boolean;
  /** 1 - beta1^t and 1 - beta2^t. */
  readonly biasCorrection1: number;
  readonly biasCorrection2: number;
}

/** The per-element coefficients of an Adam step, derived once: p' = shrink p - step m' / (...), g' = g + coupled p. */
export function adamCoefficients(s: AdamStepSpec): { coupled: number; shrink: number; step: number } {
  return { coupled: s.decoupled ? 0 : s.weightDecay, shrink: s.decoupled ? 1 - s.lr * s.weightDecay : 1, step: s.lr / s.biasCorrection1 };
}

export interface DeviceInfo {
  readonly name: string;
  readonly description: string;
  /** True for an emulated device (e.g. a software Vulkan driver): 'auto' passes over it. */
  readonly software?: boolean;
}

export interface BackendMemory {
  readonly buffers: number;
  readonly bytes: number;
}

/** The primitive kernels. Every method is required; core checks coverage at registration. */
export interface Backend {
  readonly name: string;
  readonly device: DeviceInfo;
  /** The dtypes this backend can hold (see "Dtypes" above). */
  readonly dtypes: readonly DType[];
  /** Kernels that take 16-bit operands of a dtype directly; the others get float32 (core widens). */
  readonly halfKernels?: Readonly<Partial<Record<HalfDType, readonly KernelName[]>>>;
  /** Optional: fused attention (see FusedAttention); core composes attention from the other kernels without it. */
  readonly fusedAttention?: FusedAttention;
  /** Optional: recording queued kernels once and replaying them (see KernelCapture); core's captureStep runs eagerly without it. */
  readonly capture?: KernelCapture;

  // ---- memory ----
  alloc(size: number, dtype: DType): BackendBuffer;
  /** Uploads host data into a new buffer of `dtype` (a Uint16Array holds 16-bit floats' bits). */
  upload(data: StorageArray, dtype: DType): BackendBuffer;
  /** Resolves with the first `size` elements once all kernels queued before it finished (16-bit floats as bits). */
  read(buffer: BackendBuffer, size: number): Promise<StorageArray>;
  free(buffer: BackendBuffer): void;
  memory(): BackendMemory;

  // ---- fills and copies ----
  fill(out: BackendBuffer, size: number, value: number): void;
  random(out: BackendBuffer, size: number, spec: RandomSpec): void;
  /** dst[idx] = cast(src[idx]) for every index of src.shape (dst.shape equals src.shape). */
  copy(src: View, dst: View): void;

  // ---- elementwise; inputs are already broadcast to the output shape ----
  unary(op: UnaryOp, x: View, out: BackendBuffer): void;
  /** A number operand is a scalar of the other operand's dtype. */
  binary(op: BinaryOp, a: View | number, b: View | number, out: BackendBuffer): void;
  /** out = cond != 0 ? a : b */
  where(cond: View, a: View, b: View, out: BackendBuffer): void;

  // ---- reductions over the middle axis of a contiguous [outer, n, inner] buffer ----
  /** out [outer, inner]; argmax/argmin write int32 indices (first occurrence). */
  reduce(op: ReduceOp, x: BackendBuffer, outer: number, n: number, inner: number, out: BackendBuffer): void;

  // ---- linear algebra ----
  // Every float32 product takes the precision the user set (setFloat32MatmulPrecision); a product of
  // 16-bit operands (a backend naming it in halfKernels) multiplies them as they are and
  // accumulates in float32, whatever the precision, and rounds its output to their dtype.
  /** out[b] (contiguous [batch, m, n]) = a[b] (m x k) @ b[b] (k x n). */
  matmul(a: MatrixView, b: MatrixView, out: BackendBuffer, batch: number, m: number, n: number, k: number, precision: MatmulPrecision): void;

  // ---- block-sparse trio; W = layout + blocks [nnzBlocks, bs, bs] ----
  /** out [m, rows] = x [m, cols] @ W^T */
  bsrMatmul(x: BackendBuffer, blocks: BackendBuffer, layout: BlockLayout, m: number, out: BackendBuffer, precision: MatmulPrecision): void;
  /** out [m, cols] = dy [m, rows] @ W */
  bsrMatmulGradInput(dy: BackendBuffer, blocks: BackendBuffer, layout: BlockLayout, m: number, out: BackendBuffer, precision: MatmulPrecision): void;
  /** out [nnzBlocks, bs, bs] = (dy^T @ x) restricted to W's blocks; dy [m, rows], x [m, cols]. */
  bsrSddmm(dy: BackendBuffer, x: BackendBuffer, layout: BlockLayout, m: number, out: BackendBuffer, precision: MatmulPrecision): void;

  // ---- indexing; x/src/out contiguous, idx a view of shape [outer, count, inner] ----
  /** out[o, j, i] = x[o, idx[o, j, i], i]; x [outer, n, inner], out [outer, count, inner]. */
  gather(x: BackendBuffer, idx: View, outer: number, n: number, inner: number, count: number, out: BackendBuffer): void;
  /** out (zeroed by the kernel) [outer, n, inner]; out[o, idx[o, j, i], i] += src[o, j, i]. */
  scatterAdd(src: BackendBuffer, idx: View, outer: number, n: number, inner: number, count: number, out: BackendBuffer): void;

  // ---- fused row kernels over contiguous [rows, n] ----
  /**
   * Row softmax or log-softmax. causal (never with log): the rows are those of square [n, n]
   * matrices, row i (of its matrix) keeps columns 0..i and the rest of it is written as 0 (their
   * gradient through softmaxBackward is then 0 too).
   */
  softmax(x: BackendBuffer, rows: number, n: number, log: boolean, causal: boolean, out: BackendBuffer): void;
  /** y is the forward output (softmax or logSoftmax); out = dL/dx. */
  softmaxBackward(y: BackendBuffer, dy: BackendBuffer, rows: number, n: number, log: boolean, out: BackendBuffer): void;
  /** Writes out, and per-row mean and rstd [rows] for the backward pass. gamma/beta may be null. */
  layerNorm(
    x: BackendBuffer,
    gamma: BackendBuffer | null,
    beta: BackendBuffer | null,
    rows: number,
    n: number,
    eps: number,
    out: BackendBuffer,
    mean: BackendBuffer,
    rstd: BackendBuffer,
  ): void;
  /** dgamma/dbeta are null when gamma/beta were. */
  layerNormBackward(
    x: BackendBuffer,
    gamma: BackendBuffer | null,
    mean: BackendBuffer,
    rstd: BackendBuffer,
    dy: BackendBuffer,
    rows: number,
    n: number,
    dx: BackendBuffer,
    dgamma: BackendBuffer | null,
    dbeta: BackendBuffer | null,
  ): void;

  // ---- optimizer and gradient clipping: lists of buffers (a GPU may take a list in one launch) ----
  /**
   * One Adam(W) step over every parameter of the list, each `size` contiguous floats, in one pass
   * (instead of a dozen elementwise ops), writing the new p, m and v to pOut, mOut, vOut: with
   * d = weightDecay,
   *   g' = g + d p (unless decoupled);  p' = p (1 - lr d) (if decoupled, else p);
   *   m' = b1 m + (1 - b1) g';  v' = b2 v + (1 - b2) g'^2;
   *   pOut = p' - (lr / bc1) m' / (sqrt(v' / bc2) + eps).
   * pOut, mOut and vOut are either three fresh buffers or p, m and v themselves (an in-place
   * update, which core asks for where the tensors own their buffers alone); backends support both.
   */
  adamStep(params: readonly AdamBuffers[], spec: AdamStepSpec): void;
  /** out[0] = the sum of x^2 over every element of every buffer (xs[i] holds sizes[i] floats). */
  sumOfSquares(xs: readonly BackendBuffer[], sizes: readonly number[], out: BackendBuffer): void;
  /** outs[i] = xs[i] * factor[0] elementwise (factor: a one-float buffer, so no value is read back). */
  scaleBuffers(xs: readonly BackendBuffer[], sizes: readonly number[], factor: BackendBuffer, outs: readonly BackendBuffer[]): void;
}

/**
 * One fused attention problem: `batch` independent heads (`heads` of them per sample: batch is a
 * multiple of heads), each q [tq, d], k [tk, d], v [tk, dv] where their AttentionOperands say;
 * scores scale * q k^T; causal: query i keeps keys 0..i (tq == tk). Dropout p > 0 drops the weight of (head b, query i, key j) where
 * uniformAt(key, (b tq + i) tk + j) < p and multiplies the others by keepScale, exactly the mask
 * and scale that dropout() of the [batch, tq, tk] weights draws with that key.
 */
export interface AttentionSpec {
  readonly batch: number;
  readonly heads: number;
  readonly tq: number;
  readonly tk: number;
  readonly d: number;
  readonly dv: number;
  readonly scale: number;
  readonly causal: boolean;
  readonly dropout: number;
  readonly key: number;
  /** 1 / (1 - dropout) as dropout() applies it: rounded to float32, then to the operands' dtype. */
  readonly keepScale: number;
}

/**
 * Where one operand of a fused attention lies in its buffer, in elements: row i of head b (of
 * spec.batch) starts at offset + floor(b / spec.heads) batchStride + (b % spec.heads) headStride +
 * i rowStride, and its elements are consecutive. Core passes the layout of the tensor the user has
 * (heads split out of a [B, T, H, d] projection are [B, H, T, d] views with rowStride H d), so
 * nothing is copied; every field is a multiple of 8 (core copies an operand that is not).
 */
export interface AttentionOperand {
  readonly buffer: BackendBuffer;
  readonly offset: number;
  readonly batchStride: number;
  readonly headStride: number;
  readonly rowStride: number;
}

/**
 * Attention without the [tq, tk] scores in memory (FlashAttention): an optional pair of kernels.
 * Core's scaledDotProductAttention takes them where `supports` says so (no mask, q, k and v of one
 * dtype; dropout with the mask dropout() would draw) and composes attention from the other kernels
 * elsewhere; both give softmax(scale q k^T) v up to float32 rounding (the composed form is the
 * reference).
 */
export interface FusedAttention {
  /** Whether the kernels take this problem in this dtype (head sizes, dtypes). */
  supports(spec: AttentionSpec, dtype: DType): boolean;
  /**
   * out [batch, tq, dv] (q's dtype) = softmax(scale q k^T) v; lse [batch, tq] (float32) = each
   * row's log-sum-exp of the scaled scores, which the backward pass reads.
   */
  forward(q: AttentionOperand, k: AttentionOperand, v: AttentionOperand, spec: AttentionSpec, out: AttentionOperand, lse: BackendBuffer): void;
  /** dq, dk, dv (q's dtype) from dout and the forward's out and lse. */
  backward(
    q: AttentionOperand,
    k: AttentionOperand,
    v: AttentionOperand,
    out: AttentionOperand,
    dout: AttentionOperand,
    lse: BackendBuffer,
    spec: AttentionSpec,
    dq: AttentionOperand,
    dk: AttentionOperand,
    dv: AttentionOperand,
  ): void;
}

/**
 * Recording the kernels a training step queues and replaying them (CUDA graphs; the CPU backend
 * records closures), for core's captureStep (capture.ts). Between begin() and end() kernels are
 * recorded, not run, and allocations come from a pool private to the recording: a block it hands
 * out, or one freed while recording, stays reserved for the recording (reused only within it) until
 * release(), since every replay writes and reads it again; a free of such a block after end() only
 * marks it unused. Uploads while recording write at once into blocks that nothing else in the
 * recording reuses (constants such as position ids). A read while recording is an Error.
 *
 * Spans: kernels queued between beginSpan() and endSpan() have host arguments that change from
 * replay to replay (an optimizer's step count and learning rate, a random key); before a replay,
 * updateSpan() runs `issue`, which queues the same kernels (same allocations, in order, which get
 * the recorded blocks) with this replay's arguments, replacing the recorded ones.
 */
export interface KernelCapture {
  begin(): void;
  end(): number;
  /** Ends a recording that failed, discarding it (allocations return to the backend). */
  abort(): void;
  beginSpan(): void;
  endSpan(): number;
  updateSpan(recording: number, span: number, issue: () => void): void;
  replay(recording: number): void;
  release(recording: number): void;
}

/** One parameter of Backend.adamStep: its buffers in, their updated values out, `size` floats each. */
export interface AdamBuffers {
  readonly p: BackendBuffer;
  readonly g: BackendBuffer;
  readonly m: BackendBuffer;
  readonly v: BackendBuffer;
  readonly size: number;
  readonly pOut: BackendBuffer;
  readonly mOut: BackendBuffer;
  readonly vOut: BackendBuffer;
}

/** The kernel names a backend must implement; checked when it registers. */
export const KERNELS = [
  'alloc',
  'upload',
  'read',
  'free',
  'memory',
  'fill',
  'random',
  'copy',
  'unary',
  'binary',
  'where',
  'reduce',
  'matmul',
  'bsrMatmul',
  'bsrMatmulGradInput',
  'bsrSddmm',
  'gather',
  'scatterAdd',
  'softmax',
  'softmaxBackward',
  'layerNorm',
  'layerNormBackward',
  'adamStep',
  'sumOfSquares',
  'scaleBuffers',
] as const satisfies readonly (keyof Backend)[];
export type KernelName = (typeof KERNELS)[number];
