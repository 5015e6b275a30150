/**
 * One training step of the small GPT (6 layers, d_model 512, 8 heads, sequence 256, vocabulary
 * 200; forward, backward, gradient clipping, AdamW) on a chosen backend, dense and with the MLP
 * layers patched to block-sparse at the given densities (32x32 blocks). Wall time per step
 * (the step ends with a readback of the loss), median of steps after warm-up. The PyTorch
 * reference is benchmarks/torch_gpt_step.py.
 *
 *   npx tsx benchmarks/gpt-step.ts --backend cuda [--batch 32] [--densities 0.5,0.25,0.1] [--precision highest|high|medium|bf16|fp16] [--capture]
 *
 * bf16 / fp16: the forward and loss under autocast (float32 parameters and optimizer). --capture:
 * the step recorded once and replayed (captureStep: CUDA graphs).
 */
import { parseArgs } from 'node:util';
import { getBackend, MATMUL_PRECISIONS, memory, resetPeakMemory, setBackend, setFloat32MatmulPrecision, type MatmulPrecision } from '@sparsegrad/core';
import { GPT_SEQ, createGptStep } from './gpt.ts';
import { median, warmUp } from './util.ts';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'auto' },
    batch: { type: 'string', default: '32' },
    steps: { type: 'string', default: '10' },
    densities: { type: 'string', default: '0.5,0.25,0.1' },
    precision: { type: 'string', default: 'highest' },
    capture: { type: 'boolean', default: false },
  },
});
const batch = Number(values.batch);
const steps = Number(values.steps);
await setBackend(values.backend!);
const lowPrecision = values.precision === 'bf16' ? 'bfloat16' : values.precision === 'fp16' ? 'float16' : false;
if (!lowPrecision && !MATMUL_PRECISIONS.includes(values.precision as MatmulPrecision)) throw new Error(`unknown --precision ${values.precision}`);
if (!lowPrecision) setFloat32MatmulPrecision(values.precision as MatmulPrecision);
const seq = GPT_SEQ;
console.log(
  `${getBackend().device.description}; precision ${values.precision}${values.capture ? ', captured' : ''}; GPT 6 layers, d_model 512, 8 heads, batch ${batch} x ${seq}`,
);
console.log('| variant | ms/step | host ms/step | peak MiB |');
console.log('| --- | --- | --- | --- |');
for (const density of [1, ...values.densities!.split(',').map(Number)]) {
  const gpt = await createGptStep(batch, density, lowPrecision, values.capture);
  const step = () => gpt.run();
  // A replay makes no tensors (its memory is the recording's): a captured step's peak is that of
  // the calls that made them, the warm-up and the recording.
  if (values.capture) resetPeakMemory();
  await warmUp(step);
  if (!values.capture) resetPeakMemory();
  const runs = [];
  for (let i = 0; i < steps; i++) runs.push(await step());
  const peak = memory().peakBytes / 2 ** 20;
  console.log(
    `| ${density < 1 ? `MLPs at density ${density}` : 'dense'} | ${median(runs.map((r) => r.wall)).toFixed(2)} | ${median(runs.map((r) => r.host)).toFixed(2)} | ${peak.toFixed(0)} |`,
  );
  gpt.dispose();
}
process.exit(0);
