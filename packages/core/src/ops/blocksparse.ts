import type { BlockLayout } from '../backend.ts';
import { record } from '../autograd/graph.ts';
import { fmtShape, opError } from '../errors.ts';
import { lowPrecision } from '../autocast.ts';
import { engine } from '../engine.ts';
import { empty, type Tensor } from '../tensor.ts';
import { addFreeing } from './elementwise.ts';
import { asFlat, reshape } from './movement.ts';
import { checkFloat, checkTensors, inCommonDtype } from './util.ts';

/** Runs one of the block-sparse kernels on contiguous operands; no gradient recording. */
export function bsrKernel(kind: 'forward' | 'gradInput', x0: Tensor, blocks0: Tensor, layout: BlockLayout): Tensor {
  const op = kind === 'forward' ? 'bsrMatmul' : 'bsrMatmulGradInput';
  const m = x0.shape[0];
  const outCols = kind === 'forward' ? layout.rows : layout.cols;
  const temps: Tensor[] = [];
  const [x2d, blocks] = inCommonDtype([x0, blocks0], temps);
  const out = empty([m, outCols], x2d.dtype, x2d.backend);
  if (out.size > 0) {
    const x = asFlat(x2d);
    const b = asFlat(blocks);
    if (kind === 'forward') x.backend.bsrMatmul(x.bufferFor(op), b.bufferFor(op), layout, m, out.bufferFor(op), engine.matmulPrecision);
    else x.backend.bsrMatmulGradInput(x.bufferFor(op), b.bufferFor(op), layout, m, out.bufferFor(op), engine.matmulPrecision);
    if (x !== x2d) x.dispose();
    if (b !== blocks) b.dispose();
  }
  for (const t of temps) t.dispose();
  return out;
}

/** dW restricted to the layout's blocks: [nnz, bs, bs] = (dy^T x) on W's blocks. */
export function bsrSddmmKernel(dy0: Tensor, x0: Tensor, layout: BlockLayout): Tensor {
  const bs = layout.blockSize;
  const temps: Tensor[] = [];
  const [dy2d, x2d] = inCommonDtype([dy0, x0], temps);
  const out = empty([layout.nnzBlocks, bs, bs], x2d.dtype, x2d.backend);
  if (out.size > 0 && dy2d.shape[0] === 0) out.backend.fill(out.bufferFor('bsrSddmm'), out.size, 0);
  else if (out.size > 0) {
    const dy = asFlat(dy2d);
    const x = asFlat(x2d);
    x.backend.bsrSddmm(dy.bufferFor('bsrSddmm'), x.bufferFor('bsrSddmm'), layout, x.shape[0], out.bufferFor('bsrSddmm'), engine.matmulPrecision);
    if (dy !== dy2d) dy.dispose();
    if (x !== x2d) x.dispose();
  }
  for (const t of temps) t.dispose();
  return out;
}

/**
 * y = x W^T (+ bias [rows]) for a block-sparse W [rows, cols] given as its layout and block data
 * [nnz, bs, bs]; x is [..., cols], y is [..., rows]. Differentiable in x, the block data and bias.
 */
export function bsrMatmul(x0: Tensor, blocks0: Tensor, layout: BlockLayout, bias0: Tensor | null = null): Tensor {
  const op = 'bsrMatmul';
  checkTensors(op, x0, blocks0, ...(bias0 ? [bias0] : []));
  checkFloat(op, x0);
  checkFloat(op, blocks0);
  const [x, blocks, bias] = lowPrecision(x0, blocks0, bias0);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== layout.rows)) throw opError(op, `bias must have shape [${layout.rows}], got ${fmtShape(bias.shape)}`);
  const bs = layout.blockSize;
  if (blocks.rank !== 3 || blocks.shape[0] !== layout.nnzBlocks || blocks.shape[1] !== bs || blocks.shape[2] !== bs) {
    throw opError(op, `block data must have shape [${layout.nnzBlocks}, ${bs}, ${bs}], got ${fmtShape(blocks.shape)}`);
  }
  if (x.rank < 1 || x.shape[x.rank - 1] !== layout.cols) {
    throw opError(op, `input of shape ${fmtShape(x.shape)} must end in ${layout.cols} features (the matrix is [${layout.rows}, ${layout.cols}])`);
  }
  const lead = x.shape.slice(0, -1);
  const x2d = reshape(x, [-1, layout.cols]);
  const product = bsrKernel('forward', x2d, blocks, layout);
  // The bias in the same op: the product before it is freed at once (see linear()).
  const y = bias ? addFreeing(product, bias) : product;
  const out = record(op, bias ? [x2d, blocks, bias] : [x2d, blocks], y, { layout });
  return reshape(out, [...lead, layout.rows]);
}
