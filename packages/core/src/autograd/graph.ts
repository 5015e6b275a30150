import { engine } from '../engine.ts';
import { fmtShape, opError } from '../errors.ts';
import { sameShape } from '../shape.ts';
import { Tensor, tidy } from '../tensor.ts';
import { ones } from '../creation.ts';
import { add, castKernel } from '../ops/elementwise.ts';
import { gradRules } from './rules.ts';

/** What an op records so that its gradient rule can run later. */
export interface GradNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /** Op-specific values the rule needs (axes, extra saved tensors, ...). */
  readonly attrs: Record<string, unknown>;
}

/**
 * Marks `out` as produced by `op` from `inputs` when gradients are enabled and any input
 * requires them. Returns `out` for chaining.
 */
export function record(op: string, inputs: readonly Tensor[], out: Tensor, attrs: Record<string, unknown> = {}): Tensor {
  if (!engine.gradEnabled || !inputs.some((t) => t.requiresGrad)) return out;
  if (!gradRules[op]) throw opError(op, 'has no gradient rule (internal error)');
  out.requiresGrad = true;
  out.gradNode = { op, inputs, attrs };
  forEachValueRead(out.gradNode, (t) => readers.set(t, (readers.get(t) ?? 0) + 1));
  return out;
}

/** How many recorded ops still have to read each tensor's values in backward: what release() waits for. */
const readers = new WeakMap<Tensor, number>();
/** Tensors released while recorded ops still had to read them: backward frees them once none does. */
const pending = new WeakSet<Tensor>();

/**
 * Calls fn with each tensor whose values the rule of `node` reads, besides the op's output: its
 * inputs unless the rule reads only their shapes, and the tensors it keeps among its attrs
 * (statistics, masks, indexes). Called for every recorded op and every backward node: no arrays.
 */
function forEachValueRead(node: GradNode, fn: (t: Tensor) => void): void {
  if (gradRules[node.op]?.inputs !== 'shapes') for (const t of node.inputs) fn(t);
  for (const k in node.attrs) {
    const v = node.attrs[k];
    if (v instanceof Tensor && !node.inputs.includes(v)) fn(v);
  }
}

/** Frees a released tensor once no rule has to read it (`ran`: its own op's rule has run). */
function freeIfDone(t: Tensor, ran: boolean): void {
  if (!pending.has(t) || (readers.get(t) ?? 0) > 0 || (!ran && readsOutput(t.gradNode))) return;
  pending.delete(t);
  t.dispose();
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: graphs of deep models overflow the JS stack when walked recursively.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.gradNode?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const child = inputs[i];
      if (child.requiresGrad && !seen.has(child)) {
        seen.add(child);
        stack.push([child, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  return order.reverse();
}

export function backward(root: Tensor, gradient: Tensor | undefined, retainGraph: boolean): void {
  root.storageFor('backward');
  if (!root.requiresGrad) throw opError('backward', 'the tensor does not require gradients (no input of its graph has requiresGrad = true)');
  if (gradient === undefined) {
    if (root.size !== 1) throw opError('backward', `a non-scalar output of shape ${fmtShape(root.shape)} needs an explicit gradient tensor`);
  } else if (!sameShape(gradient.shape, root.shape)) {
    throw opError('backward', `gradient shape ${fmtShape(gradient.shape)} does not match output shape ${fmtShape(root.shape)}`);
  }
  const order = topoOrder(root);
  // A disposed leaf cannot receive its gradient: without this check it would be dropped without a word.
  const gone = order.find((t) => t.isLeaf && t.isDisposed);
  if (gone)
    throw opError(
      'backward',
      `leaf tensor #${gone.id} of shape ${fmtShape(gone.shape)} that requires gradients was disposed before backward(); its gradient would be lost`,
    );
  // Every gradient handle in `grads` is owned by this function and disposed once consumed, so
  // backward leaks nothing even outside a tidy scope. Storage is refcounted, so disposing a
  // handle whose storage a view still uses is safe.
  const grads = new Map<Tensor, Tensor>();
  const prevGrad = engine.gradEnabled;
  engine.gradEnabled = false; // gradients of gradients are not supported
  try {
    grads.set(root, gradient ? gradient.detach() : ones(root.shape, { backend: root.backend, dtype: root.dtype }));
    for (const t of order) {
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t.gradNode;
      if (!node) {
        // A leaf: accumulate into .grad, which takes ownership of the handle.
        if (t.grad) {
          t.grad = add(t.grad, g);
          g.dispose();
        } else {
          t.grad = g;
        }
        continue;
      }
      if (node === FREED) {
        throw opError('backward', 'the graph was already freed by an earlier backward(); pass { retainGraph: true } to call backward twice');
      }
      const inputGrads = tidy(() => gradRules[node.op].grad(g, node, t));
      const used = new Set<Tensor>([g]);
      const converted = new Set<Tensor>();
      node.inputs.forEach((input, i) => {
        let ig = inputGrads[i];
        if (!ig || !input.requiresGrad) return;
        if (!sameShape(ig.shape, input.shape)) {
          throw opError(node.op, `gradient rule produced shape ${fmtShape(ig.shape)} for an input of shape ${fmtShape(input.shape)} (internal error)`);
        }
        if (ig.dtype !== input.dtype) {
          // An op that promoted its operands (bfloat16 + float32): each gradient is converted
          // to its input's dtype, as PyTorch's engine does.
          converted.add(ig);
          ig = castKernel(ig, input.dtype);
        }
        if (used.has(ig)) ig = ig.detach(); // each input gets a handle of its own
        used.add(ig);
        const prev = grads.get(input);
        if (prev) {
          grads.set(input, add(prev, ig));
          prev.dispose();
          ig.dispose();
        } else {
          grads.set(input, ig);
        }
      });
      for (const c of converted) if (!used.has(c)) c.dispose();
      g.dispose();
      if (!retainGraph) {
        forEachValueRead(node, (r) => {
          readers.set(r, (readers.get(r) ?? 1) - 1);
          freeIfDone(r, false);
        });
        freeIfDone(t, true);
      }
    }
  } finally {
    engine.gradEnabled = prevGrad;
    for (const g of grads.values()) g.dispose();
  }
  if (!retainGraph) for (const t of order) if (t.gradNode) t.gradNode = FREED;
}

/**
 * Declares that the caller will not use `t` again. It is freed now if no recorded op's gradient
 * rule reads its values (nor its own op's rule, for ops whose rule reads their output: the rules
 * that declare their third parameter, `out`); otherwise backward frees it as soon as the last of
 * those rules has run. Parameters (leaves that require gradients) are never released.
 */
export function release(t: Tensor): void {
  if (t.isDisposed || (t.isLeaf && t.requiresGrad)) return;
  if ((readers.get(t) ?? 0) > 0 || readsOutput(t.gradNode)) pending.add(t);
  else t.dispose();
}

/** Whether backward reads the output of the op recorded in `node`. */
function readsOutput(node: GradNode | null): boolean {
  return node !== null && node !== FREED && gradRules[node.op].output;
}

/** Marks a non-leaf whose graph was released by backward(). */
export const FREED: GradNode = Object.freeze({ op: '<freed>', inputs: [], attrs: {} });
