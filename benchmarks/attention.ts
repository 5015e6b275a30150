/**
 * Attention forward + backward on the CUDA backend: the fused kernels (with dQ gathered by atomics,
 * and with dQ from a kernel of its own: the tuning's attentionDq) against attention composed from
 * the other kernels (the tuning's fusedAttention off), in the same run; device time per forward +
 * backward, median of repeats after warm-up. The PyTorch reference is
 * benchmarks/torch_attention.py (F.scaled_dot_product_attention, flash backend).
 *
 *   npx tsx benchmarks/attention.ts [--batch 32] [--heads 8] [--seqs 256,1024] [--d 64] [--dtype bfloat16] [--causal 1]
 */
import { parseArgs } from 'node:util';
import { noGrad, randn, scaledDotProductAttention, setBackend, tidy, type HalfDType } from '@sparsegrad/core';
import type { CudaBackend } from '@sparsegrad/cuda';
import { median } from './util.ts';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '32' },
    heads: { type: 'string', default: '8' },
    seqs: { type: 'string', default: '256,1024' },
    d: { type: 'string', default: '64' },
    dtype: { type: 'string', default: 'bfloat16' },
    causal: { type: 'string', default: '1' },
    repeats: { type: 'string', default: '20' },
  },
});
const be = (await setBackend('cuda')) as CudaBackend;
const [batch, heads, d, repeats] = [values.batch, values.heads, values.d, values.repeats].map(Number);
const dtype = values.dtype as HalfDType;
const causal = values.causal === '1';
console.log(`${be.device.description}; ${dtype}, B ${batch}, ${heads} heads, d ${d}${causal ? ', causal' : ''}; ms per forward + backward`);
console.log('| T | fused | fused, dQ separate | fused forward | composed | composed forward | composed / fused |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const t of values.seqs!.split(',').map(Number)) {
  const make = () => randn([batch, heads, t, d], { dtype }).requiresGrad_();
  const [q, k, v] = [make(), make(), make()];
  const dout = randn([batch, heads, t, d], { dtype });
  /** Device ms of forward + backward (or the forward alone, without gradients). */
  const time = (fused: boolean, backward = true, attentionDq: 'atomic' | 'separate' = 'atomic') => {
    const previous = be.setTuning({ fusedAttention: fused, attentionDq });
    const run = () =>
      tidy(() => {
        if (!backward) return void noGrad(() => scaledDotProductAttention(q, k, v, { causal }));
        scaledDotProductAttention(q, k, v, { causal }).backward(dout);
        for (const x of [q, k, v]) x.grad = null;
      });
    for (let i = 0; i < 3; i++) run();
    const ms = median(Array.from({ length: repeats }, () => be.timeDevice(run)));
    be.setTuning(previous);
    return ms;
  };
  const [fused, separate, fusedForward, composed, composedForward] = [
    time(true),
    time(true, true, 'separate'),
    time(true, false),
    time(false),
    time(false, false),
  ];
  console.log(
    `| ${t} | ${fused.toFixed(3)} | ${separate.toFixed(3)} | ${fusedForward.toFixed(3)} | ${composed.toFixed(3)} | ${composedForward.toFixed(3)} | ${(composed / fused).toFixed(2)} |`,
  );
  for (const x of [q, k, v, dout]) x.dispose();
}
process.exit(0);
