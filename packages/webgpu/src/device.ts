import type { Backend } from '@sparsegrad/core';
import { createWebGPUBackend } from './backend.ts';
import { GpuContext } from './context.ts';
import { probeRowSubgroups } from './subgroups.ts';

/**
 * Requests an adapter and a device with the adapter's largest buffer limits; throws with a reason
 * when there is none (`noAdapterHint` adds what the caller's platform can do about it).
 */
export async function createFromGPU(gpu: GPU, noAdapterHint = ''): Promise<Backend> {
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error(`no WebGPU adapter found${noAdapterHint}`);
  const limits = adapter.limits;
  // Timestamps let benchmarks time kernels on the device; subgroups speed up reductions.
  const requiredFeatures = (['timestamp-query', 'subgroups'] as GPUFeatureName[]).filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxStorageBuffersPerShaderStage: Math.min(limits.maxStorageBuffersPerShaderStage, 10),
      // Tiled products stage their operands (double-buffered) in workgroup memory.
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
    },
  });
  const info = adapter.info;
  const description = `${info.vendor || 'unknown vendor'} ${info.architecture || ''} ${info.description || info.device || ''}`.replace(/\s+/g, ' ').trim();
  // Dawn reports lavapipe/SwiftShader as CPU adapters; newer implementations flag fallback adapters.
  const software = /llvmpipe|lavapipe|swiftshader/i.test(description) || !!(info as { isFallbackAdapter?: boolean }).isFallbackAdapter;
  const ctx = new GpuContext(device, `WebGPU: ${description}${software ? ' (software)' : ''}`);
  // Dawn's Node bindings destroy the native instance when the GPU object is garbage collected,
  // taking the device down with it at a random later moment: keep both alive with the context.
  ctx.owners.push(gpu, adapter);
  // Whether short-row kernels can give each row one subgroup (measured on the device).
  return createWebGPUBackend(ctx, software, await probeRowSubgroups(ctx));
}
