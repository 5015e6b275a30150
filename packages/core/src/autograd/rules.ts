/**
 * Every gradient rule, in one table keyed by op name. A rule receives the gradient of the op's
 * output, the recorded node and the output itself, and returns one gradient per node input (or
 * null). Rules are written with public ops only, so every backend gets backward for free; they
 * run with recording disabled inside a tidy scope, so temporaries are freed as soon as each rule
 * returns.
 */
import type { UnaryOp } from '../backend.ts';
import { zeros } from '../creation.ts';
import { add, binaryKernel, div, eq, gt, lt, mul, neg, sign, unaryKernel, where } from '../ops/elementwise.ts';
import { bsrKernel, bsrSddmmKernel } from '../ops/blocksparse.ts';
import { indexView, scatterAddKernel } from '../ops/indexing.ts';
import type { BlockLayout } from '../backend.ts';
import { matmul } from '../ops/matmul.ts';
import { asFlat, copyInto, expand, narrow, permute, reshape, transpose } from '../ops/movement.ts';
import { sum, sumTo } from '../ops/reduce.ts';
import { empty, type Tensor } from '../tensor.ts';
import type { GradNode } from './graph.ts';

type Grads = (Tensor | null)[];
export type GradRule = (g: Tensor, node: GradNode, out: Tensor) => Grads;

/** For binary ops: maps [da, db] onto the tensor operands actually recorded. */
function binaryGrads(node: GradNode, da: () => Tensor, db: () => Tensor): Grads {
  const { aIsTensor, bIsTensor } = node.attrs as { aIsTensor: boolean; bIsTensor: boolean };
  const grads: Grads = [];
  const [a, b] = operands(node);
  if (aIsTensor) grads.push((a as Tensor).requiresGrad ? sumTo(da(), (a as Tensor).shape) : null);
  if (bIsTensor) grads.push((b as Tensor).requiresGrad ? sumTo(db(), (b as Tensor).shape) : null);
  return grads;
}

function operands(node: GradNode): [Tensor | number, Tensor | number] {
  return [node.attrs.a as Tensor | number, node.attrs.b as Tensor | number];
}

/** Re-inserts reduced axes as size-1 dims so the gradient broadcasts over the input. */
function keepDims(g: Tensor, inShape: readonly number[], axes: readonly number[], keepdim: boolean): Tensor {
  if (keepdim) return g;
  return reshape(g, inShape.map((d, i) => (axes.includes(i) ? 1 : d)));
}

function unaryDerivative(op: UnaryOp) {
  return (g: Tensor, node: GradNode): Grads => [mul(g, unaryKernel(op, node.inputs[0]))];
}

/** Half the gradient to each side on ties, as PyTorch does for maximum/minimum. */
function extremumBinary(g: Tensor, node: GradNode, wins: typeof gt): Grads {
  const [a, b] = operands(node);
  const tie = () => mul(eq(a, b), 0.5);
  return binaryGrads(node, () => mul(g, add(wins(a, b), tie())), () => mul(g, add(wins(b, a), tie())));
}

/**
 * Ops whose rules read only the shapes and attrs of their inputs, never their values: a tensor
 * consumed only by these can be freed before backward (see release() in graph.ts). A test pins
 * the list.
 */
export const shapeOnlyRules: ReadonlySet<string> = new Set([
  'add', 'sub', 'neg', 'where', 'sum', 'mean', 'reshape', 'contiguous', 'permute', 'expand', 'slice', 'cat', 'indexSelect', 'gather',
]);

export const gradRules: Record<string, GradRule> = {
  add: (g, node) => binaryGrads(node, () => g, () => g),
  sub: (g, node) => binaryGrads(node, () => g, () => neg(g)),
  mul: (g, node) => {
    const [a, b] = operands(node);
    return binaryGrads(node, () => mul(g, b), () => mul(g, a));
  },
  div: (g, node, out) => {
    const [, b] = operands(node);
    return binaryGrads(node, () => div(g, b), () => neg(div(mul(g, out), b)));
  },
  pow: (g, node, out) => {
    const [a, b] = operands(node);
    // d/da a^b = b a^(b-1); d/db a^b = a^b log(a)
    return binaryGrads(
      node,
      () => mul(g, mul(b, binaryKernel('pow', a, typeof b === 'number' ? b - 1 : binaryKernel('sub', b, 1)))),
      () => mul(g, mul(out, unaryKernel('log', a as Tensor))),
    );
  },
  maximum: (g, node) => extremumBinary(g, node, gt),
  minimum: (g, node) => extremumBinary(g, node, lt),

  neg: (g) => [neg(g)],
  abs: (g, node) => [mul(g, sign(node.inputs[0]))],
  exp: (g, _node, out) => [mul(g, out)],
  log: (g, node) => [div(g, node.inputs[0])],
  sqrt: (g, _node, out) => [div(mul(g, 0.5), out)],
  tanh: (g, _node, out) => [mul(g, binaryKernel('sub', 1, mul(out, out)))],
  sigmoid: (g, _node, out) => [mul(g, mul(out, binaryKernel('sub', 1, out)))],
  relu: (g, node) => [mul(g, gt(node.inputs[0], 0))],
  geluTanh: unaryDerivative('geluTanhGrad'),
  geluErf: unaryDerivative('geluErfGrad'),
  clamp: (g, node) => {
    const x = node.inputs[0];
    const { min, max } = node.attrs as { min?: number; max?: number };
    let pass = g;
    if (min !== undefined) pass = mul(pass, binaryKernel('ge', x, min));
    if (max !== undefined) pass = mul(pass, binaryKernel('le', x, max));
    return [pass];
  },
  where: (g, node) => {
    const { cond, aIsTensor, bIsTensor } = node.attrs as { cond: Tensor; aIsTensor: boolean; bIsTensor: boolean };
    const grads: Grads = [];
    let i = 0;
    if (aIsTensor) grads.push(sumTo(where(cond, g, 0), node.inputs[i++].shape));
    if (bIsTensor) grads.push(sumTo(where(cond, 0, g), node.inputs[i++].shape));
    return grads;
  },

  sum: (g, node) => {
    const x = node.inputs[0];
    const { axes, keepdim } = node.attrs as { axes: number[]; keepdim: boolean };
    return [expand(keepDims(g, x.shape, axes, keepdim), [...x.shape])];
  },
  mean: (g, node) => {
    const x = node.inputs[0];
    const { axes, keepdim, n } = node.attrs as { axes: number[]; keepdim: boolean; n: number };
    return [expand(keepDims(div(g, n), x.shape, axes, keepdim), [...x.shape])];
  },
  max: (g, node, out) => extremumReduce(g, node, out),
  min: (g, node, out) => extremumReduce(g, node, out),

  matmul: (g, node) => {
    const [a, b] = node.inputs;
    let db: Tensor | null = null;
    if (b.requiresGrad) {
      // A 2-D right operand shared by every batch (a Linear weight): fold the batch into the
      // reduction axis, one product [k, batch*m] @ [batch*m, n] instead of a product per batch
      // followed by a sum.
      if (b.rank === 2) {
        const a2 = a.rank > 2 ? reshape(a, [-1, a.shape[a.rank - 1]]) : a;
        const g2 = g.rank > 2 ? reshape(g, [-1, g.shape[g.rank - 1]]) : g;
        // A transposed right operand (x @ W.T in Linear) gets its gradient in its own layout, the
        // transpose of a contiguous (G^T A): W's gradient then comes out contiguous, and the
        // optimizer and gradient clipping read it without a copy.
        const transposed = b.shape[0] > 1 && b.strides[0] === 1 && b.strides[1] === b.shape[0];
        db = transposed ? transpose(matmul(transpose(g2, 0, 1), a2), 0, 1) : matmul(transpose(a2, 0, 1), g2);
      } else {
        db = sumTo(matmul(transpose(a, -2, -1), g), b.shape);
      }
    }
    return [a.requiresGrad ? sumTo(matmul(g, transpose(b, -2, -1)), a.shape) : null, db];
  },

  linear: (g, node) => {
    const [x, w, b] = node.inputs;
    const [outF, inF] = w.shape;
    // Batch dims folded into the reduction axis: dW = G^T X is one [out, in] product, contiguous.
    const g2 = reshape(g, [-1, outF]);
    return [
      x.requiresGrad ? matmul(g, w) : null,
      w.requiresGrad ? matmul(transpose(g2, 0, 1), reshape(x, [-1, inF])) : null,
      b?.requiresGrad ? sum(g2, 0) : null,
    ];
  },

  reshape: (g, node) => [reshape(g, node.attrs.inShape as number[])],
  contiguous: (g) => [g],
  permute: (g, node) => {
    const axes = node.attrs.axes as number[];
    const inverse = new Array<number>(axes.length);
    axes.forEach((a, i) => (inverse[a] = i));
    return [permute(g, inverse)];
  },
  expand: (g, node) => [sumTo(g, node.attrs.inShape as number[])],
  slice: (g, node) => {
    const x = node.inputs[0];
    const z = zeros(x.shape, { backend: x.backend });
    copyInto(z, g, node.attrs.axis as number, node.attrs.start as number);
    return [z];
  },
  cat: (g, node) => {
    const { axis, starts } = node.attrs as { axis: number; starts: number[] };
    return node.inputs.map((t, i) => (t.requiresGrad ? narrow(g, axis, starts[i], t.shape[axis]) : null));
  },
  indexSelect: (g, node) => {
    const x = node.inputs[0];
    const { axis, index } = node.attrs as { axis: number; index: Tensor };
    return [scatterAddKernel('indexSelect', g, axis, indexView('indexSelect', index, axis, true), x.shape[axis])];
  },
  gather: (g, node) => {
    const x = node.inputs[0];
    const { axis, index } = node.attrs as { axis: number; index: Tensor };
    const c = index.isContiguous ? index : index.contiguous();
    return [scatterAddKernel('gather', g, axis, indexView('gather', c, axis, false), x.shape[axis])];
  },

  bsrMatmul: (g, node) => {
    const [x, blocks, bias] = node.inputs;
    const layout = node.attrs.layout as BlockLayout;
    return [
      x.requiresGrad ? bsrKernel('gradInput', g, blocks, layout) : null,
      blocks.requiresGrad ? bsrSddmmKernel(g, x, layout) : null,
      bias?.requiresGrad ? sum(g, 0) : null,
    ];
  },
  attentionWeights: (g, node, out) => {
    // W = softmax(S), S = scale q k^T: dS = softmax backward; dq = scale dS k, dk = scale dS^T q
    // (scaled after the products: [.., T, d] passes instead of one over the [.., T, T] dS).
    const [q, k] = node.inputs;
    const scale = node.attrs.scale as number;
    const ds = softmaxGrad(g, out, false);
    return [
      q.requiresGrad ? sumTo(mul(matmul(ds, k), scale), q.shape) : null,
      k.requiresGrad ? sumTo(mul(matmul(transpose(ds, -2, -1), q), scale), k.shape) : null,
    ];
  },
  softmax: (g, _node, out) => [softmaxGrad(g, out, false)],
  logSoftmax: (g, _node, out) => [softmaxGrad(g, out, true)],
  layerNorm: (g, node) => {
    const x = node.inputs[0];
    const { mean, rstd, n, rows, hasWeight, hasBias } = node.attrs as {
      mean: Tensor; rstd: Tensor; n: number; rows: number; hasWeight: boolean; hasBias: boolean;
    };
    const weight = hasWeight ? node.inputs[1] : null;
    const gc = asFlat(g);
    const xc = asFlat(x);
    const wc = weight && asFlat(weight);
    const dx = empty(x.shape, 'float32', x.backend);
    const dw = hasWeight ? empty([n], 'float32', x.backend) : null;
    const db = hasBias ? empty([n], 'float32', x.backend) : null;
    if (dx.size > 0) {
      x.backend.layerNormBackward(xc.bufferFor('layerNorm'), wc?.bufferFor('layerNorm') ?? null, mean.bufferFor('layerNorm'),
        rstd.bufferFor('layerNorm'), gc.bufferFor('layerNorm'), rows, n, dx.bufferFor('layerNorm'),
        dw?.bufferFor('layerNorm') ?? null, db?.bufferFor('layerNorm') ?? null);
    } else {
      for (const t of [dw, db]) if (t) x.backend.fill(t.bufferFor('layerNorm'), n, 0);
    }
    const grads: Grads = [dx];
    if (dw) grads.push(reshape(dw, node.inputs[1].shape));
    if (db) grads.push(reshape(db, node.inputs[hasWeight ? 2 : 1].shape));
    return grads;
  },
};

function extremumReduce(g: Tensor, node: GradNode, out: Tensor): Grads {
  const x = node.inputs[0];
  const { axes, keepdim } = node.attrs as { axes: number[]; keepdim: boolean };
  const mask = eq(x, keepDims(out, x.shape, axes, keepdim));
  const count = sum(mask, axes, true);
  return [mul(div(mask, count), keepDims(g, x.shape, axes, keepdim))];
}

function softmaxGrad(g: Tensor, out: Tensor, log: boolean): Tensor {
  const n = out.shape[out.rank - 1];
  const gc = asFlat(g);
  const oc = asFlat(out);
  const dx = empty(out.shape, 'float32', out.backend);
  if (dx.size > 0) out.backend.softmaxBackward(oc.bufferFor('softmax'), gc.bufferFor('softmax'), dx.size / n, n, log, dx.bufferFor('softmax'));
  return dx;
}

