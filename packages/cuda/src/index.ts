/**
 * @sparsegrad/cuda: the CUDA backend (a Node-API addon with CUDA kernels and cuBLAS). Until its
 * addon lands, the backend registers itself as unavailable with that reason.
 */
import { registerBackend } from '@sparsegrad/core';

registerBackend({
  name: 'cuda',
  priority: 2,
  create() {
    throw new Error('the CUDA addon is not built yet');
  },
});
