/**
 * Compiled kernels and their bind groups, both cached: a kernel once per key, a bind group once
 * per kernel and set of buffers (creating one costs ~20 us in Dawn).
 */
import type { BufferPool, GpuBuffer } from './pool.ts';

/** A compiled kernel: its pipeline and the explicit bind-group layout parsed from its WGSL. */
export interface Kernel {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  readonly id: number;
}

/** Bind groups kept before the cache is cleared (distinct buffer sets; a training step reuses its own). */
const BIND_GROUP_CACHE = 16384;

export class Pipelines {
  private readonly kernels = new Map<string, Kernel>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();

  /** Bind groups put `uniforms` (`stride` bytes of it, at a dynamic offset) at binding 0. */
  constructor(
    private readonly device: GPUDevice,
    private readonly pool: BufferPool,
    private readonly uniforms: GPUBuffer,
    private readonly stride: number,
  ) {}

  /**
   * Compiles (once per key) a kernel whose bindings are declared in its WGSL: @binding(0) is the
   * uniform parameter block, bound with a dynamic offset into the per-batch arena so that bind
   * groups depend only on the buffers and can be cached.
   */
  kernel(key: string, code: () => string): Kernel {
    let k = this.kernels.get(key);
    if (!k) {
      // Subgroup builtins need the extension enabled at the top of the module.
      const source = code();
      const module_ = /\bsubgroup(?:Add|Max|Min|BroadcastFirst|_size|_invocation_id)\b/.test(source) ? `enable subgroups;\n${source}` : source;
      const entries: GPUBindGroupLayoutEntry[] = [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } }];
      for (const m of source.matchAll(/@binding\((\d+)\)\s*var<storage(?:,\s*(read_write|read))?>/g)) {
        entries.push({ binding: Number(m[1]), visibility: GPUShaderStage.COMPUTE, buffer: { type: m[2] === 'read_write' ? 'storage' : 'read-only-storage' } });
      }
      const layout = this.device.createBindGroupLayout({ entries, label: key });
      const module = this.device.createShaderModule({ code: module_, label: key });
      const pipeline = this.device.createComputePipeline({
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: 'main' },
        label: key,
      });
      k = { pipeline, layout, id: this.kernels.size + 1 };
      this.kernels.set(key, k);
    }
    return k;
  }

  /** The bind group of a kernel over whole buffers (kernels index within their tensors themselves). */
  bindGroup(kernel: Kernel, buffers: GpuBuffer[]): GPUBindGroup {
    let key = String(kernel.id);
    for (const b of buffers) key += `,${this.pool.id(b.buffer)}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.uniforms, offset: 0, size: this.stride } }];
      buffers.forEach((b, i) => entries.push({ binding: i + 1, resource: { buffer: b.buffer } }));
      group = this.device.createBindGroup({ layout: kernel.layout, entries });
      if (this.bindGroups.size >= BIND_GROUP_CACHE) this.bindGroups.clear();
      this.bindGroups.set(key, group);
    }
    return group;
  }
}
