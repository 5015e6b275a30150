/**
 * Every gradient rule, in one table keyed by op name. A rule receives the gradient of the op's
 * output, the recorded node and the output itself, and returns one gradient per node input (or
 * null). Rules are written with ops (the fused backward kernels of softmax and layer norm are ops
 * of ops/nn.ts), never with a backend directly, so every backend gets backward for free; they
 * run with recording disabled inside a tidy scope, so temporaries are freed as soon as each rule
 * returns.
 */
import { zeros } from '../creation.ts';
import { add, binaryKernel, castKernel, div, eq, gt, lt, mul, neg, sign, unaryKernel, where } from '../ops/elementwise.ts';
import { bsrKernel, bsrSddmmKernel } from '../ops/blocksparse.ts';
import { indexView, scatterAddKernel } from '../ops/indexing.ts';
import type { AttentionSpec, BlockLayout } from '../backend.ts';
import { flashAttentionBackward } from '../ops/attention.ts';
import { matmul } from '../ops/matmul.ts';
import { copyInto, expand, narrow, permute, reshape, transpose } from '../ops/movement.ts';
import { layerNormBackwardKernel, softmaxBackwardKernel } from '../ops/nn.ts';
import { sum, sumTo } from '../ops/reduce.ts';
import type { Tensor } from '../tensor.ts';
import type { GradNode } from './graph.ts';

type Grads = (Tensor | null)[];
type GradFn = (g: Tensor, node: GradNode, out: Tensor) => Grads;

/**
 * A gradient rule and what it reads besides the incoming gradient, declared (as tfjs's
 * inputsToSave / outputsToSave): release() in graph.ts frees a tensor as soon as no rule that
 * reads its values is left to run.
 */
export interface GradRule {
  /** 'values': the rule reads its inputs' values; 'shapes': only their shapes and the node's attrs. */
  readonly inputs: 'values' | 'shapes';
  /** The rule reads the op's output values. */
  readonly output: boolean;
  readonly grad: GradFn;
}

function rule(inputs: GradRule['inputs'], output: boolean, grad: GradFn): GradRule {
  return { inputs, output, grad };
}

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
  return reshape(
    g,
    inShape.map((d, i) => (axes.includes(i) ? 1 : d)),
  );
}

/** Half the gradient to each side on ties, as PyTorch does for maximum/minimum. */
function extremumBinary(g: Tensor, node: GradNode, wins: typeof gt): Grads {
  const [a, b] = operands(node);
  const tie = () => mul(eq(a, b), 0.5);
  return binaryGrads(
    node,
    () => mul(g, add(wins(a, b), tie())),
    () => mul(g, add(wins(b, a), tie())),
  );
}

export const gradRules: Record<string, GradRule> = {
  add: rule('shapes', false, (g, node) =>
    binaryGrads(
      node,
      () => g,
      () => g,
    ),
  ),
  sub: rule('shapes', false, (g, node) =>
    binaryGrads(
      node,
      () => g,
      () => neg(g),
    ),
  ),
  mul: rule('values', false, (g, node) => {
    const [a, b] = operands(node);
    return binaryGrads(
      node,
      () => mul(g, b),
      () => mul(g, a),
    );
  }),
  div: rule('values', true, (g, node, out) => {
    const [, b] = operands(node);
    return binaryGrads(
      node,
      () => div(g, b),
      () => neg(div(mul(g, out), b)),
    );
  }),
  pow: rule('values', true, (g, node, out) => {
    const [a, b] = operands(node);
    // d/da a^b = b a^(b-1); d/db a^b = a^b log(a)
    return binaryGrads(
      node,
      () => mul(g, mul(b, binaryKernel('pow', a, typeof b === 'number' ? b - 1 : binaryKernel('sub', b, 1)))),
      () => mul(g, mul(out, unaryKernel('log', a as Tensor))),
    );
  }),
  maximum: rule('values', false, (g, node) => extremumBinary(g, node, gt)),
  minimum: rule('values', false, (g, node) => extremumBinary(g, node, lt)),
  neg: rule('shapes', false, (g) => [neg(g)]),
  abs: rule('values', false, (g, node) => [mul(g, sign(node.inputs[0]))]),
  exp: rule('values', true, (g, _node, out) => [mul(g, out)]),
  log: rule('values', false, (g, node) => [div(g, node.inputs[0])]),
  sqrt: rule('values', true, (g, _node, out) => [div(mul(g, 0.5), out)]),
  tanh: rule('values', true, (g, _node, out) => [mul(g, binaryKernel('sub', 1, mul(out, out)))]),
  sigmoid: rule('values', true, (g, _node, out) => [mul(g, mul(out, binaryKernel('sub', 1, out)))]),
  relu: rule('values', false, (g, node) => [mul(g, gt(node.inputs[0], 0))]),
  // One kernel each (g times the derivative), not the derivative and a product.
  geluTanh: rule('values', false, (g, node) => [binaryKernel('geluTanhBackward', node.inputs[0], g)]),
  geluErf: rule('values', false, (g, node) => [binaryKernel('geluErfBackward', node.inputs[0], g)]),
  clamp: rule('values', false, (g, node) => {
    const x = node.inputs[0];
    const { min, max } = node.attrs as { min?: number; max?: number };
    let pass = g;
    if (min !== undefined) pass = mul(pass, binaryKernel('ge', x, min));
    if (max !== undefined) pass = mul(pass, binaryKernel('le', x, max));
    return [pass];
  }),
  where: rule('shapes', false, (g, node) => {
    const { cond, aIsTensor, bIsTensor } = node.attrs as { cond: Tensor; aIsTensor: boolean; bIsTensor: boolean };
    const grads: Grads = [];
    let i = 0;
    if (aIsTensor) grads.push(sumTo(where(cond, g, 0), node.inputs[i++].shape));
    if (bIsTensor) grads.push(sumTo(where(cond, 0, g), node.inputs[i++].shape));
    return grads;
  }),
  sum: rule('shapes', false, (g, node) => {
    const x = node.inputs[0];
    const { axes, keepdim } = node.attrs as { axes: number[]; keepdim: boolean };
    return [expand(keepDims(g, x.shape, axes, keepdim), [...x.shape])];
  }),
  mean: rule('shapes', false, (g, node) => {
    const x = node.inputs[0];
    const { axes, keepdim, n } = node.attrs as { axes: number[]; keepdim: boolean; n: number };
    return [expand(keepDims(div(g, n), x.shape, axes, keepdim), [...x.shape])];
  }),
  max: rule('values', true, (g, node, out) => extremumReduce(g, node, out)),
  min: rule('values', true, (g, node, out) => extremumReduce(g, node, out)),
  matmul: rule('values', false, (g, node) => {
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
  }),
  linear: rule('values', false, (g, node) => {
    const [x, w, b] = node.inputs;
    const [outF, inF] = w.shape;
    // Batch dims folded into the reduction axis: dW = G^T X is one [out, in] product, contiguous.
    const g2 = reshape(g, [-1, outF]);
    return [
      x.requiresGrad ? matmul(g, w) : null,
      w.requiresGrad ? matmul(transpose(g2, 0, 1), reshape(x, [-1, inF])) : null,
      b?.requiresGrad ? sum(g2, 0) : null,
    ];
  }),
  reshape: rule('shapes', false, (g, node) => [reshape(g, node.attrs.inShape as number[])]),
  contiguous: rule('shapes', false, (g) => [g]),
  permute: rule('shapes', false, (g, node) => {
    const axes = node.attrs.axes as number[];
    const inverse = new Array<number>(axes.length);
    axes.forEach((a, i) => (inverse[a] = i));
    return [permute(g, inverse)];
  }),
  cast: rule('shapes', false, (g, node) => [castKernel(g, node.inputs[0].dtype)]),
  expand: rule('shapes', false, (g, node) => [sumTo(g, node.attrs.inShape as number[])]),
  slice: rule('shapes', false, (g, node) => {
    const x = node.inputs[0];
    const z = zeros(x.shape, { backend: x.backend, dtype: g.dtype });
    copyInto(z, g, node.attrs.axis as number, node.attrs.start as number);
    return [z];
  }),
  cat: rule('shapes', false, (g, node) => {
    const { axis, starts } = node.attrs as { axis: number; starts: number[] };
    return node.inputs.map((t, i) => (t.requiresGrad ? narrow(g, axis, starts[i], t.shape[axis]) : null));
  }),
  indexSelect: rule('shapes', false, (g, node) => {
    const x = node.inputs[0];
    const { axis, index } = node.attrs as { axis: number; index: Tensor };
    return [scatterAddKernel('indexSelect', g, axis, indexView('indexSelect', index, axis, true), x.shape[axis])];
  }),
  gather: rule('shapes', false, (g, node) => {
    const x = node.inputs[0];
    const { axis, index } = node.attrs as { axis: number; index: Tensor };
    const c = index.isContiguous ? index : index.contiguous();
    return [scatterAddKernel('gather', g, axis, indexView('gather', c, axis, false), x.shape[axis])];
  }),
  bsrMatmul: rule('values', false, (g, node) => {
    const [x, blocks, bias] = node.inputs;
    const layout = node.attrs.layout as BlockLayout;
    return [
      x.requiresGrad ? bsrKernel('gradInput', g, blocks, layout) : null,
      blocks.requiresGrad ? bsrSddmmKernel(g, x, layout) : null,
      bias?.requiresGrad ? sum(g, 0) : null,
    ];
  }),
  attentionWeights: rule('values', true, (g, node, out) => {
    // W = softmax(S), S = scale q k^T: dS = softmax backward; dq = scale dS k, dk = scale dS^T q
    // (scaled after the products: [.., T, d] passes instead of one over the [.., T, T] dS).
    const [q, k] = node.inputs;
    const scale = node.attrs.scale as number;
    const ds = softmaxBackwardKernel(g, out, false);
    return [
      q.requiresGrad ? sumTo(mul(matmul(ds, k), scale), q.shape) : null,
      k.requiresGrad ? sumTo(mul(matmul(transpose(ds, -2, -1), q), scale), k.shape) : null,
    ];
  }),
  flashAttention: rule('values', true, (g, node, out) => {
    const [q, k, v] = node.inputs;
    const { spec, lse } = node.attrs as { spec: AttentionSpec; lse: Tensor };
    const grads = flashAttentionBackward(g, q, k, v, out, lse, spec);
    return grads.map((t, i) => (node.inputs[i].requiresGrad ? t : null));
  }),
  softmax: rule('values', true, (g, _node, out) => [softmaxBackwardKernel(g, out, false)]),
  logSoftmax: rule('values', true, (g, _node, out) => [softmaxBackwardKernel(g, out, true)]),
  layerNorm: rule('values', false, (g, node) => {
    const { mean, rstd, n, rows, hasWeight, hasBias } = node.attrs as {
      mean: Tensor;
      rstd: Tensor;
      n: number;
      rows: number;
      hasWeight: boolean;
      hasBias: boolean;
    };
    const [x, ...params] = node.inputs;
    const weight = hasWeight ? params[0] : null;
    const { dx, dw, db } = layerNormBackwardKernel(g, x, weight, mean, rstd, rows, n, hasBias);
    const grads: Grads = [dx];
    if (dw) grads.push(reshape(dw, params[0].shape));
    if (db) grads.push(reshape(db, params[hasWeight ? 1 : 0].shape));
    return grads;
  }),
};

function extremumReduce(g: Tensor, node: GradNode, out: Tensor): Grads {
  const x = node.inputs[0];
  const { axes, keepdim } = node.attrs as { axes: number[]; keepdim: boolean };
  const mask = eq(x, keepDims(out, x.shape, axes, keepdim));
  const count = sum(mask, axes, true);
  return [mul(div(mask, count), keepDims(g, x.shape, axes, keepdim))];
}
