/**
 * Writes a checkpoint and an expected-output file for the PyTorch interop check
 * (check_safetensors.py): a GPT whose MLPs are block-sparse, plus one BlockSparseLinear with an
 * input and the output sparsegrad computed for it.
 *
 *   npx tsx scripts/interop/write-checkpoint.ts OUT_DIR
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { manualSeed, randn, tensor } from '@sparsegrad/core';
import { BlockSparseLinear, BlockSparseModelPatcher, GPT, encodeSafetensors, save } from '@sparsegrad/nn';

const out = process.argv[2] ?? '.interop';
mkdirSync(out, { recursive: true });
manualSeed(7);
const gpt = new GPT({ vocabSize: 50, seqLen: 16, dModel: 64, heads: 4, layers: 2 });
await new BlockSparseModelPatcher().addPattern(String.raw`layers\.[0-9]+\.mlp\.fc[12]`, { density: 0.5, blockSize: 16 }).patchModel(gpt);
await save(gpt, join(out, 'gpt.safetensors'), { config: JSON.stringify(gpt.config) });

// 16-bit tensors in their own dtypes (values rounded to nearest even on creation).
const halfValues = [1, -2, 1 / 3, 65504, 1e-6, 2.71, -0.1];
const halves = {
  b: tensor(halfValues, undefined, { dtype: 'bfloat16' }),
  h: tensor(halfValues, undefined, { dtype: 'float16' }),
};
writeFileSync(join(out, 'half.safetensors'), await encodeSafetensors(halves));
const halfRead = { b: Array.from(await halves.b.toArray()), h: Array.from(await halves.h.toArray()) };

const layer = new BlockSparseLinear(64, 96, { density: 0.5, blockSize: 16 });
await save(layer, join(out, 'layer.safetensors'));
const x = randn([5, 64]);
const y = layer.forward(x);
const sums: Record<string, number> = {};
for (const [k, t] of Object.entries(gpt.stateDict())) sums[k] = Array.from(await t.toArray()).reduce((a, b) => a + b, 0);
writeFileSync(
  join(out, 'expected.json'),
  JSON.stringify({
    x: Array.from(await x.toArray()),
    y: Array.from(await y.toArray()),
    halfValues,
    halfRead,
    shapes: Object.fromEntries(Object.entries(gpt.stateDict()).map(([k, t]) => [k, t.shape])),
    sums,
  }),
);
console.log(`wrote ${out}/gpt.safetensors, layer.safetensors, expected.json`);
