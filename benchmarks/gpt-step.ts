/**
 * One training step of the small GPT (6 layers, d_model 512, 8 heads, sequence 256, vocabulary
 * 200; forward, backward, gradient clipping, AdamW) on a chosen backend, dense and with the MLP
 * layers patched to block-sparse at the given densities (32x32 blocks). Wall time per step
 * (the step ends with a readback of the loss), median of steps after warm-up. The PyTorch
 * reference is benchmarks/torch_gpt_step.py.
 *
 *   npx tsx benchmarks/gpt-step.ts --backend cuda [--batch 32] [--densities 0.5,0.25,0.1] [--precision highest]
 */
import { parseArgs } from 'node:util';
import { crossEntropy, getBackend, manualSeed, memory, resetPeakMemory, setBackend, setFloat32MatmulPrecision, tensor, tidy, type MatmulPrecision } from '@sparsegrad/core';
import { AdamW, BlockSparseModelPatcher, GPT, clipGradNorm } from '@sparsegrad/nn';
import { median } from './util.ts';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'auto' }, batch: { type: 'string', default: '32' }, steps: { type: 'string', default: '10' },
    densities: { type: 'string', default: '0.5,0.25,0.1' }, precision: { type: 'string', default: 'highest' },
  },
});
const batch = Number(values.batch);
const steps = Number(values.steps);
await setBackend(values.backend!);
setFloat32MatmulPrecision(values.precision as MatmulPrecision);
const [seq, vocab] = [256, 200];
console.log(`${getBackend().device.description}; precision ${values.precision}; GPT 6 layers, d_model 512, 8 heads, batch ${batch} x ${seq}`);
console.log('| variant | ms/step | host ms/step | peak MiB |');
console.log('| --- | --- | --- | --- |');
for (const density of [1, ...values.densities!.split(',').map(Number)]) {
  manualSeed(0);
  const model = new GPT({ vocabSize: vocab, seqLen: seq, dModel: 512, heads: 8, layers: 6 });
  if (density < 1) await new BlockSparseModelPatcher().addPattern(String.raw`layers\.[0-9]+\.mlp\.fc[12]`, { density, blockSize: 32 }).patchModel(model);
  const opt = new AdamW(model.parameters(), { lr: 1e-3 });
  const tokens = Int32Array.from({ length: batch * (seq + 1) }, (_, i) => (i * 7919) % vocab);
  const x = tensor(Int32Array.from({ length: batch * seq }, (_, i) => tokens[Math.floor(i / seq) * (seq + 1) + (i % seq)]), [batch, seq]);
  const y = tensor(Int32Array.from({ length: batch * seq }, (_, i) => tokens[Math.floor(i / seq) * (seq + 1) + (i % seq) + 1]), [batch, seq]);
  const step = async () => {
    const t0 = performance.now();
    const loss = tidy(() => {
      const l = crossEntropy(model.forward(x), y);
      l.backward();
      clipGradNorm(model.parameters(), 1).dispose();
      opt.step();
      opt.zeroGrad();
      return l;
    });
    const host = performance.now() - t0;
    await loss.item();
    loss.dispose();
    return { host, wall: performance.now() - t0 };
  };
  for (let i = 0; i < 3; i++) await step();
  resetPeakMemory();
  const runs = [];
  for (let i = 0; i < steps; i++) runs.push(await step());
  const peak = memory().peakBytes / 2 ** 20;
  console.log(`| ${density < 1 ? `MLPs at density ${density}` : 'dense'} | ${median(runs.map((r) => r.wall)).toFixed(2)} | ${median(runs.map((r) => r.host)).toFixed(2)} | ${peak.toFixed(0)} |`);
  model.dispose();
  x.dispose();
  y.dispose();
}
process.exit(0);
