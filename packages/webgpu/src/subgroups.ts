/**
 * Whether the device's subgroups can serve as rows of the short-row kernels (reductions.ts's
 * laneRowKernel): every subgroup of a 1-D workgroup the same size S, made of the consecutive
 * invocations S k .. S k + S - 1 in order. WGSL leaves the mapping of invocations to subgroups to
 * the implementation, so it is measured once per device rather than assumed.
 */
import { type GpuContext, WG } from './context.ts';
import { PARAMS } from './wgsl.ts';

/** Workgroups the probe runs (every one must show the layout). */
const PROBE_GROUPS = 8;

/**
 * The subgroup size S where the layout above holds and S divides the workgroup (4 <= S), else 0
 * (also where the probe itself fails: the kernels then reduce in workgroup memory).
 */
export async function probeRowSubgroups(ctx: GpuContext): Promise<number> {
  if (!ctx.device.features.has('subgroups')) return 0;
  // Errors of the probe's own kernel stay in this scope instead of reaching the next op.
  ctx.device.pushErrorScope('validation');
  let size = 0;
  try {
    size = await probe(ctx);
  } catch {
    size = 0;
  }
  return (await ctx.device.popErrorScope()) ? 0 : size;
}

async function probe(ctx: GpuContext): Promise<number> {
  const kernel = ctx.pipeline(
    'subgroupProbe',
    () => `${PARAMS}
@group(0) @binding(1) var<storage, read_write> Out: array<u32>;
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32,
    @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32) {
  // 1 where this invocation is lane l % S of a full subgroup that starts at invocation l - l % S.
  let first = subgroupBroadcastFirst(l); let count = subgroupAdd(1u);
  let ok = lane == l % size && first == l - l % size && count == size;
  Out[wg.x * ${WG + 1}u + l] = select(0u, 1u, ok);
  if (l == 0u) { Out[wg.x * ${WG + 1}u + ${WG}u] = size; }
}`,
  );
  const words = PROBE_GROUPS * (WG + 1);
  const out = ctx.alloc(words, 'int32');
  try {
    ctx.dispatchGrid('subgroupProbe', kernel, [out], [], [PROBE_GROUPS, 1, 1]);
    const got = await ctx.read(out, words);
    const size = got[WG];
    for (let g = 0; g < PROBE_GROUPS; g++) {
      if (got[g * (WG + 1) + WG] !== size) return 0;
      for (let l = 0; l < WG; l++) if (got[g * (WG + 1) + l] !== 1) return 0;
    }
    return size >= 4 && WG % size === 0 ? size : 0;
  } finally {
    ctx.free(out);
  }
}
