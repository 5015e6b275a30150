/**
 * sparsegrad in a browser: `@sparsegrad/webgpu/browser`, `@sparsegrad/nn` (its "browser"
 * condition: everything but checkpoint files) and core, bundled for the browser platform by
 * esbuild, then run in a fresh V8 context that holds only what a page has (no `process`,
 * `require`, `Buffer` or Dawn). The WebGPU entry must register the backend on the `GPU` object it
 * is given and report that object's missing adapter; the CPU backend must train a block-sparse
 * layer there and carry its state through safetensors bytes into another layer.
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
      contents: [
        "export { registerWebGPU } from '@sparsegrad/webgpu/browser';",
        "export { backends, setBackend, tensor, manualSeed } from '@sparsegrad/core';",
        "export { BlockSparseLinear, SGD, saveToBytes, loadFromBytes } from '@sparsegrad/nn';",
      ].join('\n'),
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
  assert.not.ok(inputs.some((f) => f.endsWith('serialize/checkpoint.ts')), 'no checkpoint files (node:fs) in the bundle');

  const page = vm.createContext({ console, atob, btoa, TextEncoder, TextDecoder, performance, setTimeout, clearTimeout, queueMicrotask, structuredClone, URL });
  vm.runInContext(result.outputFiles[0].text, page);
  // The page's module, typed as far as the test uses it (the bundle's own types live in its realm).
  interface PageTensor {
    add(t: PageTensor): PageTensor;
    sub(t: PageTensor): PageTensor;
    pow(e: number): PageTensor;
    mean(): PageTensor;
    backward(): void;
    toArray(): Promise<Float32Array>;
  }
  interface PageLayer {
    forward(x: PageTensor): PageTensor;
    parameters(): unknown[];
  }
  const sg = page.sparsegrad as {
    registerWebGPU(gpu: unknown): void;
    backends(): Promise<{ name: string; available: boolean; reason?: string }[]>;
    setBackend(name: string): Promise<void>;
    manualSeed(seed: number): void;
    tensor(values: number[], shape?: number[]): PageTensor;
    BlockSparseLinear: new (inFeatures: number, outFeatures: number, opts: { density: number; blockSize: number }) => PageLayer;
    SGD: new (params: unknown[], opts: { lr: number }) => { step(): unknown; zeroGrad(): void };
    saveToBytes(model: PageLayer): Promise<Uint8Array>;
    loadFromBytes(model: PageLayer, bytes: Uint8Array): Promise<unknown>;
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

  // A block-sparse layer trains in the page: a few SGD steps lower its loss on a fixed target.
  sg.manualSeed(1);
  const layer = new sg.BlockSparseLinear(32, 32, { density: 0.5, blockSize: 16 });
  const x = sg.tensor(Array.from({ length: 4 * 32 }, (_, i) => Math.sin(i)), [4, 32]);
  const target = sg.tensor(Array.from({ length: 4 * 32 }, (_, i) => Math.cos(i)), [4, 32]);
  const opt = new sg.SGD(layer.parameters(), { lr: 0.1 });
  const losses: number[] = [];
  for (let step = 0; step < 5; step++) {
    const loss = layer.forward(x).sub(target).pow(2).mean();
    losses.push((await loss.toArray())[0]);
    opt.zeroGrad();
    loss.backward();
    await opt.step();
  }
  assert.ok(losses[4] < losses[0], `loss fell in the page: ${losses.join(', ')}`);
  // Its state (blocks and their coordinates) through safetensors bytes into a layer of another pattern.
  const copy = new sg.BlockSparseLinear(32, 32, { density: 0.5, blockSize: 16 });
  await sg.loadFromBytes(copy, await sg.saveToBytes(layer));
  assert.equal([...(await copy.forward(x).toArray())], [...(await layer.forward(x).toArray())]);
});

test.run();
