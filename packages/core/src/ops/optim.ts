/**
 * Fused optimizer updates and gradient-clipping reductions over lists of tensors: one backend
 * call for a whole list (a GPU backend launches one kernel per list, not one per tensor, as
 * PyTorch's foreach/fused optimizers do).
 */
import type { AdamStepSpec, Backend } from '../backend.ts';
import { noGrad } from '../engine.ts';
import { fmtShape, opError } from '../errors.ts';
import { empty, type Tensor } from '../tensor.ts';
import { asFlat } from './movement.ts';
import { checkFloat, checkTensors } from './util.ts';

/** A parameter with its gradient and Adam moments (all one shape). */
export interface AdamSlot {
  p: Tensor;
  g: Tensor;
  m: Tensor;
  v: Tensor;
}

/**
 * Where a list update writes fresh buffers that the tensors then take over (as assign() does, so
 * views of the old values held elsewhere never change under them), it runs in chunks of at most
 * this many floats, so that it needs that much memory beyond its tensors, not a copy of them all:
 * a GPT step's Adam update allocated 3x the parameters at once, on top of the activations the step
 * still held.
 */
const CHUNK_FLOATS = 2 ** 22;

/** Consecutive runs of `items` of at most CHUNK_FLOATS floats each (an item larger than that alone). */
function chunks<T>(items: readonly T[], size: (t: T) => number): T[][] {
  const out: T[][] = [];
  let cur: T[] = [];
  let floats = 0;
  for (const it of items) {
    if (cur.length > 0 && floats + size(it) > CHUNK_FLOATS) {
      out.push(cur);
      cur = [];
      floats = 0;
    }
    cur.push(it);
    floats += size(it);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * One Adam(W) step on every parameter of the list, in place where it can be (see adamChunk), in
 * chunks (see CHUNK_FLOATS). Returns a function that queues the same update on the same buffers
 * with another spec (a captured step's next replay, capture.ts); null where the update was not
 * in place.
 */
export function adamSteps(slots: readonly AdamSlot[], spec: AdamStepSpec): ((spec: AdamStepSpec) => void) | null {
  const op = 'adamStep';
  if (slots.length === 0) return () => {};
  const backend = checkTensors(op, ...slots.flatMap((s) => [s.p, s.g, s.m, s.v]));
  for (const { p, g, m, v } of slots) {
    for (const t of [p, g, m, v]) {
      checkFloat(op, t);
      if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
        throw opError(op, `parameter, gradient and moments must share one shape, got ${fmtShape(p.shape)} and ${fmtShape(t.shape)}`);
      }
    }
  }
  for (const [k, x] of Object.entries(spec)) {
    if (typeof x === 'number' && !Number.isFinite(x)) throw opError(op, `${k} must be finite, got ${x}`);
  }
  return noGrad(() => {
    const again = chunks(slots, (s) => s.p.size).map((chunk) => adamChunk(chunk, spec, backend));
    return again.every((f) => f !== null) ? (next: AdamStepSpec) => again.forEach((f) => f!(next)) : null;
  });
}

/**
 * A parameter whose value and moments own their buffers alone is updated in place (its buffers
 * stay the same from step to step, so a GPU backend's bind groups and a training step's memory stay
 * put); the others get fresh buffers that they take over.
 */
function adamChunk(slots: readonly AdamSlot[], spec: AdamStepSpec, backend: Backend): ((spec: AdamStepSpec) => void) | null {
  const op = 'adamStep';
  const work = slots.map((s) => {
    const ins = [s.p, s.g, s.m, s.v];
    const flat = ins.map(asFlat);
    const inPlace = s.p.ownsBuffer && s.m.ownsBuffer && s.v.ownsBuffer;
    const outs = inPlace ? [s.p, s.m, s.v] : [s.p, s.m, s.v].map((t) => empty(t.shape, t.dtype, backend));
    return { ins, flat, outs, inPlace };
  });
  const buffers = work.map(({ flat, outs }) => ({
    p: flat[0].bufferFor(op),
    g: flat[1].bufferFor(op),
    m: flat[2].bufferFor(op),
    v: flat[3].bufferFor(op),
    size: flat[0].size,
    pOut: outs[0].bufferFor(op),
    mOut: outs[1].bufferFor(op),
    vOut: outs[2].bufferFor(op),
  }));
  backend.adamStep(buffers, spec);
  for (const { ins, flat, outs, inPlace } of work) {
    flat.forEach((f, i) => f !== ins[i] && f.dispose());
    if (inPlace) continue;
    [ins[0], ins[2], ins[3]].forEach((t, i) => {
      t.assign(outs[i]);
      outs[i].dispose();
    });
  }
  return work.every((w) => w.inPlace) ? (next) => backend.adamStep(buffers, next) : null;
}

/** One Adam(W) step on parameter p with gradient g and moment buffers m, v (see adamSteps). */
export function adamStep(p: Tensor, g: Tensor, m: Tensor, v: Tensor, spec: AdamStepSpec): void {
  adamSteps([{ p, g, m, v }], spec);
}

/** The sum of the squares of every element of every tensor, as a scalar float32 tensor (no sync). */
export function sumOfSquares(tensors: readonly Tensor[]): Tensor {
  const op = 'sumOfSquares';
  if (tensors.length === 0) throw opError(op, 'expected at least one tensor');
  const backend = checkTensors(op, ...tensors);
  tensors.forEach((t) => checkFloat(op, t));
  return noGrad(() => {
    const flat = tensors.map(asFlat);
    const out = empty([], 'float32', backend);
    backend.sumOfSquares(
      flat.map((f) => f.bufferFor(op)),
      flat.map((f) => f.size),
      out.bufferFor(op),
    );
    flat.forEach((f, i) => f !== tensors[i] && f.dispose());
    return out;
  });
}

/**
 * Multiplies each tensor by a scalar tensor (read on the device, never synced); each takes over
 * its scaled values as assign() does, chunk by chunk (see CHUNK_FLOATS).
 */
export function scaleEachInPlace(tensors: readonly Tensor[], factor: Tensor): void {
  for (const chunk of chunks(tensors, (t) => t.size)) {
    scaleEach(chunk, factor).forEach((scaled, i) => {
      chunk[i].assign(scaled);
      scaled.dispose();
    });
  }
}

/** Each tensor times a scalar tensor (read on the device, never synced), as new tensors. */
export function scaleEach(tensors: readonly Tensor[], factor: Tensor): Tensor[] {
  const op = 'scaleEach';
  const backend = checkTensors(op, factor, ...tensors);
  if (factor.size !== 1) throw opError(op, `factor must hold one element, got shape ${fmtShape(factor.shape)}`);
  [factor, ...tensors].forEach((t) => checkFloat(op, t));
  return noGrad(() => {
    const flat = tensors.map(asFlat);
    const f = asFlat(factor);
    const outs = tensors.map((t) => empty(t.shape, t.dtype, backend));
    backend.scaleBuffers(
      flat.map((x) => x.bufferFor(op)),
      flat.map((x) => x.size),
      f.bufferFor(op),
      outs.map((o) => o.bufferFor(op)),
    );
    flat.forEach((x, i) => x !== tensors[i] && x.dispose());
    if (f !== factor) f.dispose();
    return outs;
  });
}
