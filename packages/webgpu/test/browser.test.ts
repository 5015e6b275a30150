/**
 * sparsegrad in a browser: `@sparsegrad/webgpu/browser`, `@sparsegrad/nn` (its "browser"
 * condition: everything but checkpoint files) and core, bundled for the browser platform by
 * esbuild, then run in a fresh V8 context that holds only what a page has (no `process`,
 * `require`, `Buffer` or Dawn). The WebGPU entry must register the backend on the `GPU` object it
 * is given and report that object's missing adapter; the CPU backend must train a block-sparse
 * layer there and carry its state through safetensors bytes into another layer. Where Dawn finds
 * an adapter (a GPU, or Mesa's software driver in CI), the page gets Dawn's `GPU` object as it
 * would get `navigator.gpu`, and the bundled WebGPU backend must compute a block-sparse product.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { build } from 'esbuild';
import vm from 'node:vm';
import { join } from 'node:path';
import { backends } from '@sparsegrad/core';
import { buildLayout } from '@sparsegrad/core/backend';
import '@sparsegrad/webgpu';
import { blockSparseRefs, deviceSuite, randomArray, testSeed } from '../../core/test/helpers.ts';

const root = join(import.meta.dirname, '..', '..', '..');

/** The page's bundle: the browser entries of webgpu and nn, and core, as an IIFE named sparsegrad. */
async function bundle() {
  const result = await build({
    stdin: {
      contents: [
        "export { registerWebGPU } from '@sparsegrad/webgpu/browser';",
        "export { backends, setBackend, tensor, manualSeed, BlockSparseMatrix, bsrMatmul } from '@sparsegrad/core';",
        "export { BlockSparseLinear, SGD, saveToBytes, loadFromBytes } from '@sparsegrad/nn';",
      ].join('\n'),
      resolveDir: root,
      loader: 'ts',
    },
    bundle: true,
    platform: 'browser',
    // The packages' sources (their 'source' condition) under their browser conditions; the
    // repository's tsconfig paths, which send tsx to the Node entries, are left out.
    conditions: ['source'],
    tsconfigRaw: {},
    format: 'iife',
    globalName: 'sparsegrad',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  return { code: result.outputFiles[0].text, inputs: Object.keys(result.metafile.inputs) };
}

/** A fresh V8 context holding what a page has (and `extra`, e.g. the WebGPU constants or a document). */
function pageContext(extra: Record<string, unknown> = {}): vm.Context {
  return vm.createContext({
    console,
    atob,
    btoa,
    TextEncoder,
    TextDecoder,
    performance,
    setTimeout,
    clearTimeout,
    setInterval,
    clearInterval,
    queueMicrotask,
    structuredClone,
    URL,
    Blob,
    ...extra,
  });
}

/** The bundle run in a fresh page context: its exports. */
function page(code: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const context = pageContext(extra);
  vm.runInContext(code, context);
  return context.sparsegrad as Record<string, unknown>;
}

test('the browser entries bundle without Node or Dawn and run in a page-like context', async () => {
  const { code, inputs } = await bundle();
  assert.ok(
    inputs.some((f) => f.endsWith('packages/webgpu/src/browser.ts')),
    'the bundle holds the browser entry',
  );
  assert.not.ok(
    inputs.some((f) => f.includes('node_modules/webgpu/') || f.endsWith('packages/webgpu/src/index.ts')),
    `no Dawn in the bundle: ${inputs.join(', ')}`,
  );
  assert.not.ok(
    inputs.some((f) => f.endsWith('serialize/checkpoint.ts')),
    'no checkpoint files (node:fs) in the bundle',
  );
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
  const sg = page(code) as unknown as {
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
  sg.registerWebGPU({
    requestAdapter: async () => {
      asked++;
      return null;
    },
  });
  const webgpu = (await sg.backends()).find((b) => b.name === 'webgpu');
  assert.is(asked, 1, 'the GPU object passed in is the one asked for an adapter');
  assert.is(webgpu?.available, false);
  assert.match(webgpu?.reason ?? '', /no WebGPU adapter/);
  assert.not.match(webgpu?.reason ?? '', /npm run/, 'no Node-only advice in a browser');
  await sg.setBackend('cpu');
  assert.equal(
    [
      ...(await sg
        .tensor([1, 2, 3])
        .add(sg.tensor([10, 20, 30]))
        .toArray()),
    ],
    [11, 22, 33],
  );

  // A block-sparse layer trains in the page: a few SGD steps lower its loss on a fixed target.
  sg.manualSeed(1);
  const layer = new sg.BlockSparseLinear(32, 32, { density: 0.5, blockSize: 16 });
  const x = sg.tensor(
    Array.from({ length: 4 * 32 }, (_, i) => Math.sin(i)),
    [4, 32],
  );
  const target = sg.tensor(
    Array.from({ length: 4 * 32 }, (_, i) => Math.cos(i)),
    [4, 32],
  );
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

test('examples/browser/main.ts bundles for the browser and trains its model in a page without WebGPU', async () => {
  // An app with top-level await: bundled as a module, run as the body of an async function.
  const result = await build({
    entryPoints: [join(root, 'examples/browser/main.ts')],
    bundle: true,
    platform: 'browser',
    // The packages' sources (their 'source' condition) under their browser conditions; the
    // repository's tsconfig paths, which send tsx to the Node entries, are left out.
    conditions: ['source'],
    tsconfigRaw: {},
    format: 'esm',
    write: false,
    logLevel: 'silent',
  });
  const log = { textContent: '' };
  const link = { href: '', textContent: '' };
  const document = { querySelector: (selector: string) => (selector === '#log' ? log : selector === '#download' ? link : null) };
  await vm.runInContext(`(async () => {\n${result.outputFiles[0].text}\n})()`, pageContext({ document, navigator: {} }));
  const losses = [...log.textContent.matchAll(/step (\d+): loss ([\d.]+)/g)].map((m) => Number(m[2]));
  assert.match(log.textContent, /backend: host CPU/);
  assert.is(losses.length, 4, log.textContent);
  assert.ok(losses[3] < losses[0], `the example's loss fell: ${losses.join(', ')}`);
  assert.match(link.textContent, /model\.safetensors \([\d,]+ bytes\)/);
  assert.match(link.href, /^blob:/);
});

// Node's own WebGPU backend tells whether Dawn has an adapter here; the page test needs one.
const dawnStatus = (await backends()).find((b) => b.name === 'webgpu');
const onGpu = deviceSuite('the WebGPU backend in a page', dawnStatus);
onGpu('the bundled WebGPU backend computes a block-sparse product in the page on the GPU object it is handed', async () => {
  const { code } = await bundle();
  const dawn = await import('webgpu');
  // What a browser page has: navigator.gpu's object and the WebGPU constants.
  const globals = dawn.globals as Record<string, unknown>;
  const sg = page(code, { GPUBufferUsage: globals.GPUBufferUsage, GPUMapMode: globals.GPUMapMode, GPUShaderStage: globals.GPUShaderStage }) as unknown as {
    registerWebGPU(gpu: unknown): void;
    setBackend(name: string): Promise<{ device: { name: string } }>;
    tensor(values: number[], shape: number[]): unknown;
    BlockSparseMatrix: { fromCoords(shape: number[], blockSize: number, coords: number[][], data: unknown): { layout: unknown; data: unknown } };
    bsrMatmul(x: unknown, blocks: unknown, layout: unknown): { toArray(): Promise<Float32Array> };
  };
  sg.registerWebGPU(dawn.create([]));
  const backend = await sg.setBackend('webgpu');
  assert.is(backend.device.name, 'webgpu');
  // Everything the page computes with is made in the page (plain arrays in, as a page would).
  const seed = testSeed();
  const coords: [number, number][] = [
    [0, 1],
    [1, 0],
    [1, 2],
    [2, 2],
  ]; // storage order already
  const [m, w, x] = [37, randomArray(4 * 1024, seed), randomArray(37 * 96, seed + 1)];
  const W = sg.BlockSparseMatrix.fromCoords([96, 96], 32, coords, sg.tensor(Array.from(w), [4, 32, 32]));
  const got = await sg.bsrMatmul(sg.tensor(Array.from(x), [m, 96]), W.data, W.layout).toArray();
  const { layout } = buildLayout(96, 96, 32, coords);
  const { y } = blockSparseRefs(layout, Float32Array.from(w), Float32Array.from(x), new Float64Array(m * 96), m);
  let worst = 0;
  for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(got[i] - y[i]) / (1 + Math.abs(y[i])));
  assert.ok(worst < 1e-4, `WebGPU in the page: error ${worst} (seed ${seed})`);
});

test.run();
onGpu.run();
