// sparsegrad in a browser page: WebGPU when the browser offers it (else the CPU backend), a small
// regression model whose hidden layer is block-sparse, trained for 100 steps, and its
// state saved as safetensors bytes for a download link. Bundle it with
//   npm run build:example
// and serve examples/browser/ (e.g. `npx http-server examples/browser`); index.html loads app.js.
import { manualSeed, randn, setBackend, tidy } from '@sparsegrad/core';
import { AdamW, BlockSparseLinear, GELU, Linear, Sequential, saveToBytes } from '@sparsegrad/nn';
import { registerWebGPU } from '@sparsegrad/webgpu/browser';

const out = document.querySelector('#log');
const log = (line: string) => {
  if (out) out.textContent += `${line}\n`;
};

if ('gpu' in navigator && navigator.gpu) registerWebGPU(navigator.gpu);
const backend = await setBackend('auto'); // webgpu where an adapter is found, else cpu
log(`backend: ${backend.device.description}`);

manualSeed(0);
// y = tanh(x W) for a random W: a target the model can learn, 128 features in and out.
const x = randn([128, 128]);
const y = tidy(() => x.matmul(randn([128, 128]).mul(1 / 12)).tanh());
const model = new Sequential(
  new Linear(128, 256),
  new GELU(),
  new BlockSparseLinear(256, 256, { density: 0.25, blockSize: 32 }),
  new GELU(),
  new Linear(256, 128),
);
log(`parameters: ${model.parameterCount().toLocaleString('en-US')} (the 256 x 256 layer keeps a quarter of its blocks)`);

const opt = new AdamW(model.parameters(), { lr: 1e-3 });
const started = performance.now();
for (let step = 1; step <= 100; step++) {
  const loss = tidy(() => {
    const l = model.forward(x).sub(y).pow(2).mean();
    l.backward();
    opt.step();
    opt.zeroGrad();
    return l;
  });
  if (step % 25 === 0) log(`step ${step}: loss ${(await loss.item()).toFixed(4)} (${((performance.now() - started) / step).toFixed(1)} ms/step)`);
  loss.dispose();
}

const bytes = await saveToBytes(model, { example: 'browser' });
const link = document.querySelector<HTMLAnchorElement>('#download');
if (link) {
  link.href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  link.textContent = `model.safetensors (${bytes.length.toLocaleString('en-US')} bytes)`;
}
