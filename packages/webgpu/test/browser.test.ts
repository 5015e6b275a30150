/**
 * The browser entry (`@sparsegrad/webgpu/browser`): bundled for the browser platform by esbuild,
 * then run in a fresh V8 context that holds only what a page has (no `process`, `require`,
 * `Buffer` or Dawn). It must load, register the backend on the `GPU` object it is given, report
 * that object's missing adapter as the reason, and leave the CPU backend working beside it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { build } from 'esbuild';
import vm from 'node:vm';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..', '..');

test('the browser entry bundles without Node or Dawn and runs in a page-like context', async () => {
  const result = await build({
    stdin: {
      contents: "export { registerWebGPU } from '@sparsegrad/webgpu/browser'; export { backends, setBackend, tensor } from '@sparsegrad/core';",
      resolveDir: root,
      loader: 'ts',
    },
    bundle: true,
    platform: 'browser',
    format: 'iife',
    globalName: 'sparsegrad',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const inputs = Object.keys(result.metafile.inputs);
  assert.ok(inputs.some((f) => f.endsWith('packages/webgpu/src/browser.ts')), 'the bundle holds the browser entry');
  assert.not.ok(inputs.some((f) => f.includes('node_modules/webgpu/') || f.endsWith('packages/webgpu/src/index.ts')), `no Dawn in the bundle: ${inputs.join(', ')}`);

  const page = vm.createContext({ console, atob, btoa, TextEncoder, TextDecoder, performance, setTimeout, clearTimeout, queueMicrotask, structuredClone, URL });
  vm.runInContext(result.outputFiles[0].text, page);
  const sg = page.sparsegrad as {
    registerWebGPU(gpu: unknown): void;
    backends(): Promise<{ name: string; available: boolean; reason?: string }[]>;
    setBackend(name: string): Promise<void>;
    tensor(values: number[]): { add(t: unknown): { toArray(): Promise<Float32Array> } };
  };
  let asked = 0;
  sg.registerWebGPU({ requestAdapter: async () => (asked++, null) });
  const webgpu = (await sg.backends()).find((b) => b.name === 'webgpu');
  assert.is(asked, 1, 'the GPU object passed in is the one asked for an adapter');
  assert.is(webgpu?.available, false);
  assert.match(webgpu?.reason ?? '', /no WebGPU adapter/);
  assert.not.match(webgpu?.reason ?? '', /npm run/, 'no Node-only advice in a browser');
  await sg.setBackend('cpu');
  assert.equal([...(await sg.tensor([1, 2, 3]).add(sg.tensor([10, 20, 30])).toArray())], [11, 22, 33]);
});

test.run();
