/**
 * What the WebGPU kernel families share: the host each family is built from, the WGSL head and
 * entry point of per-element kernels, and column reductions.
 */
import type { Backend } from '@sparsegrad/core';
import { type GpuBuffer, type GpuContext, INDEX_WGSL, MAX_GROUPS_X, WG, type Kernel } from '../context.ts';
import { COLUMN_MIN_ROWS, COLUMN_TARGET_GROUPS, COLUMN_TILE, COLUMN_WORDS } from '../reductions.ts';
import { COUNT_WORD } from '../uniforms.ts';
import { PARAMS } from '../wgsl.ts';

/**
 * A kernel family's view of the backend: the context (buffers, pipelines, dispatch), what the
 * device offers, and the backend itself for the primitives one family asks of another (a fill,
 * a sum of partial results).
 */
export interface KernelHost {
  readonly ctx: GpuContext;
  /** ctx.pipeline, bound. */
  readonly pipe: GpuContext['pipeline'];
  /** The device has subgroup operations (reductions use them). */
  readonly subgroups: boolean;
  /** The subgroup size probeRowSubgroups found usable for a row per subgroup, or 0. */
  readonly rowSubgroups: number;
  /** Storage buffers one bind group may hold. */
  readonly storageBuffers: number;
  readonly backend: () => Backend;
}

export function kernelHost(ctx: GpuContext, rowSubgroups: number, backend: () => Backend): KernelHost {
  return {
    ctx,
    pipe: ctx.pipeline.bind(ctx),
    subgroups: ctx.device.features.has('subgroups'),
    rowSubgroups,
    storageBuffers: ctx.device.limits.maxStorageBuffersPerShaderStage,
    backend,
  };
}

export const HEAD = (bindings: string) => `${PARAMS}\n${INDEX_WGSL}\n${bindings}`;
export const MAIN =
  '@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {\n  let i = flatIndex(gid, nwg);';

export const PER_THREAD = 4;
export const perElementThreads = (n: number) => Math.ceil(n / PER_THREAD);

/**
 * The entry point of an elementwise kernel: `body` runs for element `i` (< the count in word
 * COUNT_WORD), PER_THREAD
 * elements per thread so several loads are in flight; full chunks skip the bounds checks.
 */
export function perElement(body: string): string {
  const chunk = WG * PER_THREAD;
  return `@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let first = (wg.x + wg.y * nwg.x) * ${chunk}u + lid;
  let count = p(${COUNT_WORD}u);
  if (first + ${chunk - WG}u < count) {
    for (var j = 0u; j < ${PER_THREAD}u; j++) { let i = first + j * ${WG}u; ${body} }
  } else {
    for (var j = 0u; j < ${PER_THREAD}u; j++) { let i = first + j * ${WG}u; if (i < count) { ${body} } }
  }
}`;
}

/**
 * Runs a columnKernel over x [outer, n, inner]: one dispatch when the rows fit one split per
 * workgroup column, else partial results [splits, outer, inner] per output and `finish` to fold them.
 */
export function columnReduce(
  ctx: GpuContext,
  op: string,
  kernel: Kernel,
  inputs: GpuBuffer[],
  outs: GpuBuffer[],
  outer: number,
  n: number,
  inner: number,
  finish: (partials: GpuBuffer[], splits: number) => void,
): void {
  if (outer * inner === 0) return;
  const xg = Math.ceil(inner / COLUMN_TILE);
  const wanted = Math.ceil(COLUMN_TARGET_GROUPS / (xg * outer));
  let splits = Math.max(1, Math.min(wanted, Math.ceil(n / COLUMN_MIN_ROWS)));
  const chunk = Math.max(1, Math.ceil(n / splits));
  splits = Math.max(1, Math.ceil(n / chunk));
  const targets = splits === 1 ? outs : outs.map(() => ctx.alloc(splits * outer * inner, 'float32'));
  const pairs = xg * outer;
  const gx = Math.min(pairs, MAX_GROUPS_X);
  ctx.dispatchGrid(op, kernel, [...inputs, ...targets], COLUMN_WORDS.pack({ outer, n, inner, chunk, tiles: xg }), [gx, Math.ceil(pairs / gx), splits]);
  if (splits > 1) {
    finish(targets, splits);
    for (const b of targets) ctx.free(b); // reuse is ordered after these dispatches on the queue
  }
}
