/** Fused optimizer updates: one kernel per parameter instead of a chain of elementwise ops. */
import type { AdamStepSpec } from '../backend.ts';
import { noGrad } from '../engine.ts';
import { fmtShape, opError } from '../errors.ts';
import { empty, type Tensor } from '../tensor.ts';
import { asFlat } from './movement.ts';
import { checkFloat, checkTensors } from './util.ts';

/**
 * One Adam(W) step on parameter p with gradient g and moment buffers m, v (all one shape). The
 * new values go into fresh buffers that p, m and v then take over (like assign), so views of the
 * old values held elsewhere are never changed under them.
 */
export function adamStep(p: Tensor, g: Tensor, m: Tensor, v: Tensor, spec: AdamStepSpec): void {
  const op = 'adamStep';
  const backend = checkTensors(op, p, g, m, v);
  for (const t of [p, g, m, v]) {
    checkFloat(op, t);
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      throw opError(op, `parameter, gradient and moments must share one shape, got ${fmtShape(p.shape)} and ${fmtShape(t.shape)}`);
    }
  }
  for (const [k, x] of Object.entries(spec)) {
    if (typeof x === 'number' && !Number.isFinite(x)) throw opError(op, `${k} must be finite, got ${x}`);
  }
  noGrad(() => {
    const flat = [p, g, m, v].map(asFlat);
    const outs = [p, m, v].map(() => empty(p.shape, 'float32', backend));
    backend.adamStep(flat[0].bufferFor(op), flat[1].bufferFor(op), flat[2].bufferFor(op), flat[3].bufferFor(op), p.size, spec,
      outs[0].bufferFor(op), outs[1].bufferFor(op), outs[2].bufferFor(op));
    flat.forEach((f, i) => f !== [p, g, m, v][i] && f.dispose());
    [p, m, v].forEach((t, i) => {
      t.assign(outs[i]);
      outs[i].dispose();
    });
  });
}
