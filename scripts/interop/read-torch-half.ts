/**
 * Reads the BF16 / F16 safetensors file that check_safetensors.py wrote with PyTorch and checks the
 * dtypes and values against what PyTorch printed (torch_half.json).
 *
 *   npx tsx scripts/interop/read-torch-half.ts DIR
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeSafetensors } from '@sparsegrad/nn';

const dir = process.argv[2] ?? '.interop';
const { tensors } = decodeSafetensors(readFileSync(join(dir, 'torch_half.safetensors')), 'torch_half.safetensors');
const want = JSON.parse(readFileSync(join(dir, 'torch_half.json'), 'utf8')) as Record<string, number[]>;
for (const [key, dtype] of [
  ['b', 'bfloat16'],
  ['h', 'float16'],
] as const) {
  const t = tensors[key];
  if (t.dtype !== dtype) throw new Error(`${key}: dtype ${t.dtype}, expected ${dtype}`);
  const got = Array.from(await t.toArray());
  if (got.join() !== want[key].join()) throw new Error(`${key}: ${got} differs from torch's ${want[key]}`);
}
console.log('torch_half.safetensors: PyTorch bf16 / fp16 tensors read with their dtypes and exact values');
