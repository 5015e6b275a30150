/**
 * The NVIDIA machine code (SASS) of our WGSL kernels, from the pipeline-cache data that
 * `webgpu-shader-stats.ts --cache-dir DIR` keeps on the GPU host: it is the only view of what the
 * driver's compiler made of a kernel (NOTES 45 found ~60 register copies per step this way).
 *
 *   npx tsx benchmarks/webgpu-sass.ts FILE.cache... [--listing]
 *
 * For each file: the per-loop instruction mix (opcodes of every backward-branch loop), and with
 * --listing the whole disassembly. Runs here, not on the GPU host. Needs `zstd` (the cache entry
 * is one zstd frame) and nvdisasm with SM90 (NVDISASM, a path; default `nvdisasm`): Debian's
 * non-free nvidia-cuda-toolkit 11.8 has one (`apt-get download nvidia-cuda-toolkit`, `dpkg-deb -x`).
 *
 * Layout of the data, as read from the 580 driver (not documented): the Vulkan cache header, then
 * a 4-byte unpacked size and a zstd frame; unpacked, "NVDANVVM" and an "NVuc" object whose section
 * table (u32 words 8 + 8 i: type, length, offset) holds the code as section type 1.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const files = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const listing = process.argv.includes('--listing');
const nvdisasm = process.env.NVDISASM ?? 'nvdisasm';
const dir = mkdtempSync(join(tmpdir(), 'sass-'));

for (const file of files) {
  const data = readFileSync(file);
  const frame = data.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
  if (frame < 0) throw new Error(`webgpu-sass: ${file} holds no zstd frame`);
  const unpacked = execFileSync('zstd', ['-d', '-c', '-q'], { input: data.subarray(frame), maxBuffer: 1 << 28 });
  const at = unpacked.indexOf('NVuc');
  if (at < 0) throw new Error(`webgpu-sass: ${file}: no NVuc object in the unpacked cache data`);
  const obj = unpacked.subarray(at);
  const word = (i: number) => obj.readUInt32LE(4 * i);
  let code: Buffer | undefined;
  for (let i = 0; i < (word(2) & 0xffff); i++) if (word(8 + 8 * i) === 1) code = obj.subarray(word(10 + 8 * i), word(10 + 8 * i) + word(9 + 8 * i));
  if (!code) throw new Error(`webgpu-sass: ${file}: no code section`);
  const raw = join(dir, 'code.bin');
  writeFileSync(raw, code);
  const sass = execFileSync(nvdisasm, ['-b', 'SM90', raw], { encoding: 'utf8', maxBuffer: 1 << 28 });
  console.log(`## ${file}`);
  for (const line of loops(sass)) console.log(line);
  if (listing) console.log(sass);
}

/** One line per loop (a backward branch): its size and opcode counts, most frequent first. */
function loops(sass: string): string[] {
  const code = [...sass.matchAll(/\/\*([0-9a-f]{4,})\*\/\s+([^;]*);/g)].map((m) => ({ at: parseInt(m[1], 16), text: m[2].trim() }));
  const opcode = (text: string) => text.replace(/^@!?U?P\w+\s+/, '').split(/\s/)[0];
  const out: string[] = [];
  for (const { at, text } of code) {
    const target = /BRA (0x[0-9a-f]+)/.exec(text);
    if (!target || parseInt(target[1], 16) >= at) continue;
    const body = code.filter((c) => c.at >= parseInt(target[1], 16) && c.at <= at);
    const counts = new Map<string, number>();
    for (const c of body) counts.set(opcode(c.text), (counts.get(opcode(c.text)) ?? 0) + 1);
    const mix = [...counts].sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op} ${n}`);
    out.push(`  loop ${target[1]}-0x${at.toString(16)}: ${body.length} instructions: ${mix.join(', ')}`);
  }
  return out.length ? out : ['  no loop'];
}
