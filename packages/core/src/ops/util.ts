import type { Backend } from '../backend.ts';
import { opError } from '../errors.ts';
import { Tensor } from '../tensor.ts';

/** Checks that every argument is a live Tensor and all live on one backend; returns that backend. */
export function checkTensors(op: string, ...ts: Tensor[]): Backend {
  let backend: Backend | null = null;
  for (const t of ts) {
    if (!(t instanceof Tensor)) throw opError(op, `expected a Tensor, got ${t === null ? 'null' : typeof t}`);
    t.storageFor(op);
    if (backend && t.backend !== backend) {
      throw opError(op, `tensors live on different backends (${backend.name} and ${t.backend.name}); move them to one backend first`);
    }
    backend = t.backend;
  }
  return backend!;
}

export function checkFloat(op: string, t: Tensor): void {
  if (t.dtype !== 'float32') throw opError(op, `expected a float32 tensor, got ${t.dtype}`);
}

export function checkNumber(op: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw opError(op, `${name} must be a number, got ${String(v)}`);
  return v;
}
