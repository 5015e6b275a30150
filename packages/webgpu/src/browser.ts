/** @sparsegrad/webgpu in a browser: call registerWebGPU(navigator.gpu) before setBackend('webgpu'). */
import { registerBackend } from '@sparsegrad/core/backend';
import { createFromGPU } from './device.ts';

export function registerWebGPU(gpu: GPU): void {
  registerBackend({ name: 'webgpu', priority: 1, create: () => createFromGPU(gpu) });
}
