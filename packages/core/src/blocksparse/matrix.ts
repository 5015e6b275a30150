import type { Backend, BlockLayout } from '../backend.ts';
import { engine, noGrad } from '../engine.ts';
import { fmtShape, opError } from '../errors.ts';
import { eye, randn, tensor, zeros } from '../creation.ts';

import { bsrMatmul } from '../ops/blocksparse.ts';
import { indexSelect } from '../ops/indexing.ts';
import { mul } from '../ops/elementwise.ts';
import { contiguous, permute, reshape, transpose } from '../ops/movement.ts';
import { sum } from '../ops/reduce.ts';
import { Tensor, tidy, keep } from '../tensor.ts';
import { buildLayout, checkBlockGeometry, layoutDensity } from './layout.ts';

export interface BlockCountOptions {
  /** Fraction of blocks kept, in (0, 1]. */
  density?: number;
  /** Exact number of blocks kept (instead of density). */
  blockCount?: number;
  blockSize?: number;
}

function blockCountFor(op: string, total: number, opts: BlockCountOptions): number {
  if (opts.blockCount !== undefined) {
    if (!Number.isInteger(opts.blockCount) || opts.blockCount < 1 || opts.blockCount > total) {
      throw opError(op, `blockCount must be an integer in [1, ${total}], got ${opts.blockCount}`);
    }
    return opts.blockCount;
  }
  const d = opts.density;
  if (typeof d !== 'number' || !(d > 0 && d <= 1)) throw opError(op, `density must be in (0, 1], got ${String(d)}`);
  return Math.max(1, Math.min(total, Math.round(d * total)));
}

/**
 * A [rows, cols] matrix stored as nonzero blockSize x blockSize blocks (block-row-major), with
 * the CSR, CSC and coordinate indexes the three kernels use. `data` [nnzBlocks, bs, bs] is an
 * ordinary tensor, so it can require gradients and be optimised like any parameter.
 */
export class BlockSparseMatrix {
  private constructor(
    readonly layout: BlockLayout,
    readonly data: Tensor,
  ) {}

  get shape(): [number, number] {
    return [this.layout.rows, this.layout.cols];
  }
  get blockSize(): number {
    return this.layout.blockSize;
  }
  get nnzBlocks(): number {
    return this.layout.nnzBlocks;
  }
  /** Fraction of blocks stored. */
  get density(): number {
    return layoutDensity(this.layout);
  }
  /** Block coordinates [blockRow, blockCol] in storage order. */
  get blockCoords(): [number, number][] {
    return [...this.layout.rowIdx].map((r, i) => [r, this.layout.colIdx[i]]);
  }

  /** Wraps existing block data in storage (CSR) order for a layout. */
  static fromBlocks(layout: BlockLayout, data: Tensor): BlockSparseMatrix {
    const bs = layout.blockSize;
    if (!(data instanceof Tensor) || data.rank !== 3 || data.shape[0] !== layout.nnzBlocks || data.shape[1] !== bs || data.shape[2] !== bs) {
      throw opError(
        'BlockSparseMatrix',
        `block data must have shape [${layout.nnzBlocks}, ${bs}, ${bs}], got ${data instanceof Tensor ? fmtShape(data.shape) : typeof data}`,
      );
    }
    return new BlockSparseMatrix(layout, data);
  }

  /** A layout from block coordinates; data in the given coordinate order is reordered to storage order. */
  static fromCoords(
    shape: [number, number],
    blockSize: number,
    coords: readonly (readonly [number, number])[],
    data?: Tensor,
    opts: { backend?: Backend } = {},
  ): BlockSparseMatrix {
    checkBlockGeometry('BlockSparseMatrix', shape[0], shape[1], blockSize);
    const { layout, order } = buildLayout(shape[0], shape[1], blockSize, coords);
    if (!data) return new BlockSparseMatrix(layout, zeros([layout.nnzBlocks, blockSize, blockSize], { backend: opts.backend }));
    const sorted = order.every((o, i) => o === i);
    if (sorted) return BlockSparseMatrix.fromBlocks(layout, data);
    const reordered = noGrad(() => indexSelect(data, 0, tensor(Int32Array.from(order), undefined, { backend: data.backend })));
    return BlockSparseMatrix.fromBlocks(layout, reordered);
  }

  /** Blocks chosen uniformly at random (seeded by manualSeed), values N(0, std^2). */
  static random(shape: [number, number], opts: BlockCountOptions & { std?: number; backend?: Backend } = {}): BlockSparseMatrix {
    const bs = opts.blockSize ?? 32;
    checkBlockGeometry('BlockSparseMatrix.random', shape[0], shape[1], bs);
    const total = (shape[0] / bs) * (shape[1] / bs);
    const count = blockCountFor('BlockSparseMatrix.random', total, opts);
    // Partial Fisher-Yates over the block grid with the seeded host generator.
    const cells = Int32Array.from({ length: total }, (_, i) => i);
    for (let i = 0; i < count; i++) {
      const j = i + Math.floor(engine.nextFloat() * (total - i));
      [cells[i], cells[j]] = [cells[j], cells[i]];
    }
    const C = shape[1] / bs;
    const coords = [...cells.subarray(0, count)].map((cell) => [Math.floor(cell / C), cell % C] as const);
    const { layout } = buildLayout(shape[0], shape[1], bs, coords);
    return new BlockSparseMatrix(layout, randn([count, bs, bs], { std: opts.std ?? 1, backend: opts.backend }));
  }

  /** The blocks of a dense [rows, cols] tensor with the largest Frobenius norms (ties: lower index first). */
  static async fromDense(dense: Tensor, opts: BlockCountOptions = {}): Promise<BlockSparseMatrix> {
    const op = 'BlockSparseMatrix.fromDense';
    if (!(dense instanceof Tensor) || dense.rank !== 2)
      throw opError(op, `expected a 2-D tensor, got ${dense instanceof Tensor ? fmtShape(dense.shape) : typeof dense}`);
    const [rows, cols] = dense.shape;
    const bs = opts.blockSize ?? 32;
    checkBlockGeometry(op, rows, cols, bs);
    const R = rows / bs;
    const C = cols / bs;
    const count = blockCountFor(op, R * C, opts);
    const tiles = noGrad(() => tidy(() => contiguous(permute(reshape(dense, [R, bs, C, bs]), [0, 2, 1, 3])))); // [R, C, bs, bs]
    const norms = await noGrad(() => tidy(() => sum(mul(tiles, tiles), [2, 3]))).toArray();
    const ranked = [...norms.keys()]
      .sort((a, b) => norms[b] - norms[a] || a - b)
      .slice(0, count)
      .sort((a, b) => a - b);
    const { layout } = buildLayout(
      rows,
      cols,
      bs,
      ranked.map((cell) => [Math.floor(cell / C), cell % C] as const),
    );
    const data = noGrad(() =>
      tidy(() => {
        const flat = reshape(tiles, [R * C, bs, bs]);
        return keep(indexSelect(flat, 0, tensor(Int32Array.from(ranked), undefined, { backend: dense.backend })));
      }),
    );
    tiles.dispose();
    return new BlockSparseMatrix(layout, data);
  }

  /** A matrix with a block wherever mask[r][c] is truthy (mask is the [rows/bs][cols/bs] block grid); data zero unless given. */
  static fromMask(mask: readonly (readonly (number | boolean)[])[], blockSize: number, opts: { data?: Tensor; backend?: Backend } = {}): BlockSparseMatrix {
    const op = 'BlockSparseMatrix.fromMask';
    if (!Array.isArray(mask) || mask.length === 0 || !Array.isArray(mask[0])) throw opError(op, 'mask must be a non-empty 2-D array of block flags');
    const C = mask[0].length;
    const coords: [number, number][] = [];
    mask.forEach((row, r) => {
      if (!Array.isArray(row) || row.length !== C) throw opError(op, `mask row ${r} has ${row?.length} entries, expected ${C}`);
      row.forEach((v, c) => v && coords.push([r, c]));
    });
    if (coords.length === 0) throw opError(op, 'mask selects no block; a block-sparse matrix needs at least one');
    return BlockSparseMatrix.fromCoords([mask.length * blockSize, C * blockSize], blockSize, coords, opts.data, opts);
  }

  /** The dense [rows, cols] matrix (differentiable in the block data): computed as (I W^T)^T with the block kernel. */
  toDense(): Tensor {
    const id = eye(this.layout.cols, { backend: this.data.backend });
    const wt = bsrMatmul(id, this.data, this.layout);
    id.dispose();
    return transpose(wt, 0, 1);
  }

  /** The block grid as 0/1 rows, [rows/bs][cols/bs]. */
  blockMask(): number[][] {
    const { rows, cols, blockSize: bs, rowIdx, colIdx } = this.layout;
    const mask = Array.from({ length: rows / bs }, () => new Array<number>(cols / bs).fill(0));
    rowIdx.forEach((r, i) => (mask[r][colIdx[i]] = 1));
    return mask;
  }

  /** y = x W^T (+ bias [rows]) for x [..., cols]. */
  apply(x: Tensor, bias: Tensor | null = null): Tensor {
    return bsrMatmul(x, this.data, this.layout, bias);
  }
}
