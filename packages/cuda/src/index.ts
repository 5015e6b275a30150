/**
 * @sparsegrad/cuda: the CUDA backend, a Node-API addon (native/) with our own CUDA kernels and
 * cuBLAS for dense products. Where the addon was not built (no CUDA toolkit at install time) or
 * no NVIDIA driver/GPU is present, the backend reports itself unavailable with the reason and
 * 'auto' moves on.
 */
import { registerBackend } from '@sparsegrad/core/backend';
import { createCudaBackend } from './backend.ts';
import { loadAddon } from './native.ts';

registerBackend({
  name: 'cuda',
  priority: 2,
  create() {
    const addon = loadAddon();
    const device = Number(process.env.SPARSEGRAD_CUDA_DEVICE ?? 0);
    return createCudaBackend(addon, addon.init(device));
  },
});
export type { CudaBackend } from './backend.ts';
export { DEFAULT_CUDA_TUNING, parseTuning, type CudaTuning } from './tuning.ts';
export { takesDenseRoute, type BsrProduct } from './dense-route.ts';
