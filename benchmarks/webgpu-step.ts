/**
 * Where a training step of the small GPT spends its time on the WebGPU backend: wall time per
 * step (forward, backward, gradient clipping, AdamW), then one profiled step with each kernel in a
 * timed pass of its own, summed per op. Dense against MLPs at a given density (32x32 blocks).
 *
 *   npx tsx benchmarks/webgpu-step.ts [--batch 32] [--density 0.25]
 */
import { parseArgs } from 'node:util';
import { getBackend, setBackend } from '@sparsegrad/core';
import { setDawnOptions, type WebGPUBackend } from '@sparsegrad/webgpu';
import { GPT_SEQ, createGptStep } from './gpt.ts';
import { median, warmUp } from './util.ts';

const { values } = parseArgs({
  options: { batch: { type: 'string', default: '32' }, density: { type: 'string', default: '0.25' }, steps: { type: 'string', default: '8' } },
});
const batch = Number(values.batch);
const steps = Number(values.steps);
// Dawn rounds timestamps to 65.5 us unless told otherwise; benchmarks want them exact.
// Device timestamps unquantized (Dawn rounds them to 100 us by default).
setDawnOptions({ flags: ['disable-dawn-features=timestamp_quantization'] });
await setBackend('webgpu');
const ctx = (getBackend() as WebGPUBackend).context;
const seq = GPT_SEQ;
console.log(`device: ${getBackend().device.description}; GPT 6 layers, d_model 512, 8 heads, batch ${batch} x ${seq}`);

for (const density of [1, Number(values.density)]) {
  const gpt = await createGptStep(batch, density);
  const step = () => gpt.run();
  await warmUp(step);
  const runs = [];
  for (let i = 0; i < steps; i++) runs.push(await step());
  const wall = median(runs.map((r) => r.wall));
  const host = median(runs.map((r) => r.host));
  ctx.startProfile();
  await step();
  const times = await ctx.stopProfile();
  const total = [...times.values()].reduce((a, t) => a + t.ms, 0);
  const dispatches = [...times.values()].reduce((a, t) => a + t.count, 0);
  console.log(
    `\n${density < 1 ? `MLPs at density ${density}` : 'dense'}: ${wall.toFixed(1)} ms/step (host encoding ${host.toFixed(1)} ms), ${dispatches} dispatches, kernels ${total.toFixed(1)} ms when timed one by one`,
  );
  console.log('| op | ms per step | share | dispatches |');
  console.log('| --- | --- | --- | --- |');
  for (const [op, t] of [...times].sort((a, b) => b[1].ms - a[1].ms).slice(0, 24)) {
    console.log(`| ${op} | ${t.ms.toFixed(2)} | ${((t.ms / total) * 100).toFixed(0)}% | ${t.count} |`);
  }
  gpt.dispose();
}
process.exit(0);
