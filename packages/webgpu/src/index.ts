/**
 * @sparsegrad/webgpu: the WebGPU backend (WGSL kernels through Dawn's Node bindings, or
 * navigator.gpu in a browser). The kernels are the subject of the WebGPU issue; until they land
 * the backend registers itself as unavailable with that reason, so `backends()` and 'auto'
 * report it honestly instead of failing.
 */
import { registerBackend } from '@sparsegrad/core';

registerBackend({
  name: 'webgpu',
  priority: 1,
  create() {
    throw new Error('the WebGPU kernels are not implemented yet');
  },
});
