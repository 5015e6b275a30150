import { getBackend, setBackend, tidy, manualSeed, randn, tensor, crossEntropy } from '@sparsegrad/core';
import '@sparsegrad/webgpu';
import { GPT, AdamW, clipGradNorm } from '@sparsegrad/nn';
await setBackend('webgpu');
const ctx = (getBackend() as any).context;
let n = 0; const names = new Map<string, number>();
const orig = ctx.dispatchGrid.bind(ctx);
ctx.dispatchGrid = (op: string, ...rest: any[]) => { n++; names.set(op, (names.get(op) ?? 0) + 1); return orig(op, ...rest); };
manualSeed(0);
let miss = 0; const origCreate = ctx.device.createBindGroup.bind(ctx.device);
ctx.device.createBindGroup = (d: any) => { miss++; return origCreate(d); };
const model = new GPT({ vocabSize: 64, seqLen: 16, dModel: 32, heads: 2, layers: 6 } as any);
const opt = new AdamW(model.parameters(), { lr: 1e-3 });
const x = tensor(Int32Array.from({ length: 32 }, (_, i) => i % 64), [2, 16]);
const y = tensor(Int32Array.from({ length: 32 }, (_, i) => (i + 1) % 64), [2, 16]);
for (let s = 0; s < 25; s++) {
  n = 0; miss = 0; names.clear();
  const t0 = performance.now();
  const loss = tidy(() => { const l = crossEntropy(model.forward(x), y); l.backward(); clipGradNorm(model.parameters(), 1).dispose(); opt.step(); opt.zeroGrad(); return l; });
  const t1 = performance.now();
  await loss.item(); loss.dispose();
  console.log(`step ${s}: ${n} dispatches, ${miss} bind groups made, host ${(t1 - t0).toFixed(1)} ms (${((t1 - t0) / n * 1000).toFixed(1)} us/dispatch), total ${(performance.now() - t0).toFixed(1)} ms`);
}
console.log([...names].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}:${v}`).join(' '));
process.exit(0);
