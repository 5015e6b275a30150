import { BlockSparseMatrix, contiguous, linear, noGrad, opError, rand, tensor, type Tensor } from '@sparsegrad/core';
import { Module, type StateDict } from '../module.ts';

function checkFeatures(op: string, inFeatures: number, outFeatures: number): void {
  for (const [name, v] of [
    ['inFeatures', inFeatures],
    ['outFeatures', outFeatures],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) throw opError(op, `${name} must be a positive integer, got ${v}`);
  }
}

function checkBlockFit(op: string, inFeatures: number, outFeatures: number, blockSize: number): void {
  if (inFeatures % blockSize || outFeatures % blockSize) {
    throw opError(op, `inFeatures (${inFeatures}) and outFeatures (${outFeatures}) must be multiples of blockSize ${blockSize}`);
  }
}

function checkInput(op: string, x: Tensor, inFeatures: number): void {
  if (x.rank < 1 || x.shape[x.rank - 1] !== inFeatures) {
    throw opError(op, `expected input with last dimension ${inFeatures}, got shape [${x.shape.join(', ')}]`);
  }
}

/** PyTorch's default init bound for a layer with fanIn inputs: U(-1/sqrt(fanIn), 1/sqrt(fanIn)). */
function uniformInit(shape: number[], fanIn: number): Tensor {
  const bound = 1 / Math.sqrt(fanIn);
  return rand(shape, { low: -bound, high: bound });
}

/** y = x W^T + b with W [out, in]. */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: { bias?: boolean } = {},
  ) {
    super();
    checkFeatures('Linear', inFeatures, outFeatures);
    this.weight = this.registerParameter('weight', uniformInit([outFeatures, inFeatures], inFeatures));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', uniformInit([outFeatures], inFeatures));
  }

  forward(x: Tensor): Tensor {
    checkInput('Linear', x, this.inFeatures);
    return linear(x, this.weight, this.bias);
  }

  override describe(): string {
    return `Linear(${this.inFeatures} -> ${this.outFeatures}${this.bias ? '' : ', no bias'})`;
  }
}

export interface BlockSparseOptions {
  /**
   * Fraction of weight blocks kept, in (0, 1]. The layer keeps round(density x blocks) blocks and
   * at least one; its `density` getter reports the fraction actually built.
   */
  density: number;
  blockSize?: number;
  bias?: boolean;
}

/**
 * A drop-in replacement for Linear whose weight is block-sparse: only `density` of its
 * blockSize x blockSize blocks are stored and multiplied. The weight parameter is the block
 * data [nnzBlocks, bs, bs]; the block coordinates are a persistent int32 buffer [nnzBlocks, 2],
 * so checkpoints carry the sparsity pattern.
 */
export class BlockSparseLinear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  blockCoords: Tensor;
  private matrix: BlockSparseMatrix;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: BlockSparseOptions,
    from?: { matrix: BlockSparseMatrix; bias: Tensor | null },
  ) {
    super();
    checkFeatures('BlockSparseLinear', inFeatures, outFeatures);
    const blockSize = opts.blockSize ?? 32;
    checkBlockFit('BlockSparseLinear', inFeatures, outFeatures, blockSize);
    const matrix = from?.matrix ?? randomSparseWeight(inFeatures, outFeatures, opts.density, blockSize);
    this.matrix = matrix;
    this.weight = this.registerParameter('weight', matrix.data);
    this.blockCoords = this.registerBuffer('blockCoords', coordsTensor(matrix));
    const hasBias = opts.bias !== false;
    this.bias = hasBias ? this.registerParameter('bias', from?.bias ?? uniformInit([outFeatures], inFeatures)) : null;
  }

  /** Keeps the blocks of largest norm of a dense Linear's weight (and its bias). */
  static async fromLinear(linear: Linear, opts: { density: number; blockSize?: number }): Promise<BlockSparseLinear> {
    if (!(linear instanceof Linear))
      throw opError('BlockSparseLinear.fromLinear', `expected a Linear, got ${(linear as object)?.constructor?.name ?? typeof linear}`);
    const matrix = await BlockSparseMatrix.fromDense(linear.weight.detach(), { density: opts.density, blockSize: opts.blockSize ?? 32 });
    const bias = linear.bias ? linear.bias.detach().contiguous() : null;
    return new BlockSparseLinear(linear.inFeatures, linear.outFeatures, { density: opts.density, blockSize: opts.blockSize, bias: !!bias }, { matrix, bias });
  }

  get density(): number {
    return this.matrix.density;
  }
  get blockSize(): number {
    return this.matrix.blockSize;
  }
  get layout() {
    return this.matrix.layout;
  }

  forward(x: Tensor): Tensor {
    checkInput('BlockSparseLinear', x, this.inFeatures);
    return this.matrix.apply(x, this.bias);
  }

  /** The dense weight [out, in] with zeros outside the stored blocks (for inspection). */
  denseWeight(): Tensor {
    return this.matrix.toDense();
  }

  /**
   * The sparsity pattern comes from the state: coordinates are read first, then the blocks. As in
   * PyTorch, the weight and coordinate tensors keep their identity (their contents are replaced),
   * so an optimizer built before loading still trains them; a different pattern with the same
   * block count rebuilds the layout in place. A state with another block count cannot fit the
   * existing tensors: the weight becomes a new tensor, and an optimizer that still holds the old
   * one throws at its next step instead of silently skipping it.
   */
  protected override async loadOwnState(prefix: string, state: StateDict, used: Set<string>, missing: string[]): Promise<void> {
    const coords = state[`${prefix}blockCoords`];
    const weight = state[`${prefix}weight`];
    if (coords && weight) {
      const bs = this.blockSize;
      if (
        coords.dtype !== 'int32' ||
        coords.rank !== 2 ||
        coords.shape[1] !== 2 ||
        weight.dtype !== 'float32' ||
        weight.rank !== 3 ||
        weight.shape[0] !== coords.shape[0] ||
        weight.shape[1] !== bs ||
        weight.shape[2] !== bs
      ) {
        throw opError(
          'loadStateDict',
          `'${prefix}weight' [${weight.shape.join(', ')}] (${weight.dtype}) and '${prefix}blockCoords' [${coords.shape.join(', ')}] (${coords.dtype}) do not describe ${bs}x${bs} blocks of a block-sparse weight`,
        );
      }
      const flat = await coords.toArray();
      const list = Array.from({ length: coords.shape[0] }, (_, i) => [flat[2 * i], flat[2 * i + 1]] as const);
      const data = tensor(await weight.toArray(), [...weight.shape], { backend: this.weight.backend });
      const loaded = BlockSparseMatrix.fromCoords([this.outFeatures, this.inFeatures], bs, list, data);
      if (loaded.data !== data) data.dispose();
      if (loaded.nnzBlocks === this.matrix.nnzBlocks) {
        this.weight.grad = null;
        this.weight.assign(loaded.data);
        loaded.data.dispose();
        this.matrix = BlockSparseMatrix.fromBlocks(loaded.layout, this.weight);
        const newCoords = coordsTensor(this.matrix);
        this.blockCoords.assign(newCoords);
        newCoords.dispose();
      } else {
        this.matrix = loaded;
        this.replaceParameter('weight', loaded.data);
        this.replaceBuffer('blockCoords', coordsTensor(loaded));
      }
      used.add(`${prefix}weight`);
      used.add(`${prefix}blockCoords`);
      if (this.bias) {
        const b = state[`${prefix}bias`];
        if (!b) missing.push(`${prefix}bias`);
        else {
          used.add(`${prefix}bias`);
          if (b.shape.join() !== this.bias.shape.join())
            throw opError('loadStateDict', `'${prefix}bias' has shape [${b.shape.join(', ')}], expected [${this.bias.shape.join(', ')}]`);
          // A copy the bias owns alone (see Module.loadOwnState).
          const copy = b.backend === this.bias.backend ? noGrad(() => contiguous(b)) : tensor(await b.toArray(), [...b.shape], { backend: this.bias.backend });
          this.bias.assign(copy);
          copy.dispose();
        }
      }
      return;
    }
    return super.loadOwnState(prefix, state, used, missing);
  }

  override describe(): string {
    return `BlockSparseLinear(${this.inFeatures} -> ${this.outFeatures}, density ${this.density.toFixed(3)}, ${this.blockSize}x${this.blockSize} blocks)`;
  }
}

/** Random blocks initialised so outputs have a dense Linear's variance (each output sees `density` of the inputs). */
function randomSparseWeight(inFeatures: number, outFeatures: number, density: number, blockSize: number): BlockSparseMatrix {
  const matrix = BlockSparseMatrix.random([outFeatures, inFeatures], { density, blockSize });
  const bound = 1 / Math.sqrt(inFeatures * matrix.density);
  const init = rand([...matrix.data.shape], { low: -bound, high: bound });
  matrix.data.assign(init);
  init.dispose();
  return matrix;
}

function coordsTensor(m: BlockSparseMatrix): Tensor {
  const { rowIdx, colIdx, nnzBlocks } = m.layout;
  const host = new Int32Array(2 * nnzBlocks);
  for (let i = 0; i < nnzBlocks; i++) {
    host[2 * i] = rowIdx[i];
    host[2 * i + 1] = colIdx[i];
  }
  return tensor(host, [nnzBlocks, 2], { dtype: 'int32', backend: m.data.backend });
}

/**
 * A dense Linear whose weight is multiplied by a fixed block mask: the same function as
 * BlockSparseLinear computed the slow way, for debugging and for checking the sparse kernels.
 */
export class PseudoBlockSparseLinear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  mask: Tensor;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: BlockSparseOptions,
    from?: { matrix: BlockSparseMatrix; bias: Tensor | null },
  ) {
    super();
    checkFeatures('PseudoBlockSparseLinear', inFeatures, outFeatures);
    checkBlockFit('PseudoBlockSparseLinear', inFeatures, outFeatures, opts.blockSize ?? 32);
    const matrix = from?.matrix ?? randomSparseWeight(inFeatures, outFeatures, opts.density, opts.blockSize ?? 32);
    const bs = matrix.blockSize;
    const blockMask = matrix.blockMask();
    const m = new Float32Array(outFeatures * inFeatures);
    for (let i = 0; i < outFeatures; i++) for (let j = 0; j < inFeatures; j++) m[i * inFeatures + j] = blockMask[Math.floor(i / bs)][Math.floor(j / bs)];
    this.mask = this.registerBuffer('mask', tensor(m, [outFeatures, inFeatures]));
    const dense = matrix.toDense();
    this.weight = this.registerParameter('weight', dense.contiguous());
    dense.dispose();
    matrix.data.dispose();
    const bias = from ? from.bias : opts.bias === false ? null : uniformInit([outFeatures], inFeatures);
    this.bias = bias ? this.registerParameter('bias', bias) : null;
  }

  static async fromLinear(linear: Linear, opts: { density: number; blockSize?: number }): Promise<PseudoBlockSparseLinear> {
    const matrix = await BlockSparseMatrix.fromDense(linear.weight.detach(), { density: opts.density, blockSize: opts.blockSize ?? 32 });
    const bias = linear.bias ? linear.bias.detach().contiguous() : null;
    return new PseudoBlockSparseLinear(
      linear.inFeatures,
      linear.outFeatures,
      { density: opts.density, blockSize: opts.blockSize, bias: !!bias },
      { matrix, bias },
    );
  }

  forward(x: Tensor): Tensor {
    checkInput('PseudoBlockSparseLinear', x, this.inFeatures);
    return linear(x, this.weight.mul(this.mask), this.bias);
  }

  override describe(): string {
    return `PseudoBlockSparseLinear(${this.inFeatures} -> ${this.outFeatures}, masked dense)`;
  }
}
