import * as sg from '@sparsegrad/core';
import { GPT, AdamW, BlockSparseModelPatcher } from '@sparsegrad/nn';
const sparse = process.argv[2] === 'sparse';
sg.manualSeed(0);
const model = new GPT({ vocabSize: 96, seqLen: 128, dModel: 128, heads: 4, layers: 4 });
if (sparse) await new BlockSparseModelPatcher().addPattern('layers\\.[0-9]+\\.mlp\\.fc[12]', { density: 0.25, blockSize: 32 }).patchModel(model);
const opt = new AdamW(model.parameters(), { lr: 1e-3 });
const data = new Int32Array(16 * 129).map((_, i) => (i * 7 + (i >> 5)) % 96);
const ids = sg.tensor(data, [16, 129], { dtype: 'int32' });
const x = ids.slice(1, 0, 128).contiguous(), y = ids.slice(1, 1, 129).contiguous();
const times: number[] = [];
for (let step = 0; step < 8; step++) {
  const t0 = performance.now();
  const loss = sg.tidy(() => { const l = model.loss(x, y); l.backward(); opt.step(); opt.zeroGrad(); return l; });
  await loss.item(); loss.dispose();
  times.push(performance.now() - t0);
}
console.log(sparse ? 'sparse' : 'dense', times.slice(2).map((t) => t.toFixed(0)).join(' '), 'params', model.parameterCount());
