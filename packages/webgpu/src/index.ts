/**
 * @sparsegrad/webgpu in Node: registers the 'webgpu' backend, backed by Dawn through the `webgpu`
 * npm package. This file is the only Node-specific part; in a browser use `browser.ts`
 * (registerWebGPU(navigator.gpu)).
 */
import { registerBackend } from '@sparsegrad/core/backend';
import { createFromGPU } from './device.ts';

/** Dawn instance options: set before the backend is first created (benchmarks, debugging). */
export interface DawnOptions {
  /** Dawn instance flags, e.g. 'disable-dawn-features=timestamp_quantization' (device timing) or 'enable-dawn-features=dump_shaders'. */
  flags?: string[];
  /**
   * Keep Dawn's robustness transform, which clamps every array index in every kernel (~10% of the
   * dense matmul's speed on an H100). sparsegrad runs only its own kernels, each of which
   * bounds-checks its accesses, so Node turns the clamps off unless this is set or SPARSEGRAD_DEBUG
   * is (debugging a kernel). Browsers always keep them.
   */
  robustness?: boolean;
}
let dawnOptions: DawnOptions = {};

/** Sets the Dawn instance options for the backend's creation (a backend already created keeps its own). */
export function setDawnOptions(options: DawnOptions): void {
  dawnOptions = { ...options };
}

registerBackend({
  name: 'webgpu',
  priority: 1,
  async create() {
    // Without a Vulkan loader Dawn finds no adapter on Linux and prints a native warning (with its
    // source paths) that JavaScript cannot silence: say why without loading it.
    const missing = process.platform === 'linux' ? missingLibrary('libvulkan.so.1') : null;
    if (missing)
      throw new Error(
        `no Vulkan loader (${missing}); install libvulkan1 and a Vulkan driver (on a machine without a GPU, npm run setup:vulkan-sw installs a software one)`,
      );
    let gpu: GPU;
    try {
      // Quiet the Vulkan loader's warning about a missing runtime directory (headless machines).
      process.env.XDG_RUNTIME_DIR ??= '/tmp';
      const dawn = await import('webgpu');
      Object.assign(globalThis, dawn.globals);
      const flags = dawnOptions.flags ?? [];
      const enable = flags.filter((f) => f.startsWith('enable-dawn-features=')).flatMap((f) => f.slice(21).split(','));
      const robust = dawnOptions.robustness ?? !!process.env.SPARSEGRAD_DEBUG;
      if (!robust) enable.push('disable_robustness');
      gpu = dawn.create([...flags.filter((f) => !f.startsWith('enable-dawn-features=')), `enable-dawn-features=${enable.join(',')}`]);
    } catch (e) {
      throw new Error(`Dawn (npm package webgpu) could not be loaded: ${(e as Error).message.split('\n')[0]}`);
    }
    return createFromGPU(gpu, ' (on a machine without a GPU, run npm run setup:vulkan-sw for a software one)');
  },
});
export type { WebGPUBackend } from './backend.ts';
export { DEFAULT_WEBGPU_TUNING, parseTuning, type WebGPUTuning } from './tuning.ts';

/**
 * The dynamic loader's message when `name` cannot be found, else null. process.dlopen loads it the
 * way Dawn will (same search path) and then fails only because it is not a Node module.
 */
function missingLibrary(name: string): string | null {
  try {
    process.dlopen({ exports: {} }, name);
  } catch (e) {
    const message = (e as Error).message;
    if (/cannot open shared object file/.test(message)) return message;
  }
  return null;
}
