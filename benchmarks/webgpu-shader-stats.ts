/**
 * What the Vulkan driver made of our WGSL matrix-product kernels: registers, spills and the other
 * statistics it reports (VK_KHR_pipeline_executable_properties), per kernel. Vulkan compute has no
 * profiler on the GPU host, and tile shapes that should win have lost by 10-40% (NOTES 14, 16, 33)
 * with occupancy as the unconfirmed guess; this reads the register counts behind it.
 *
 *   npx tsx benchmarks/webgpu-shader-stats.ts [--ops dense-nn,bsr-dx,...] [--variants KEY=a,b | 'KEY=x,y|z'] [--cache-dir DIR]
 *
 * --cache-dir keeps each pipeline's driver cache data (the machine code) as DIR/OP-I[-VALUE].cache,
 * for benchmarks/webgpu-sass.ts to disassemble.
 *
 * For each op (dense-nn = dY W, dense-nt = X W^T, both on the 128 x 128 tile; bsr-forward, bsr-dx,
 * sddmm on the benchmark's 32x32 layouts at density 0.5) and each value of the variant's variable, a
 * child process runs the op once with Dawn's dump_shaders toggle; the SPIR-V Dawn logged for the
 * op's pipelines is assembled with spirv-as and compiled again by benchmarks/tools/vk-shader-stats,
 * which prints the driver's statistics. Needs SPIRV_AS and VK_SHADER_STATS (paths; default
 * .gpu-host/tools/): spirv-as from Debian's spirv-tools, vk-shader-stats built as its header says
 * against the headers of Debian's libvulkan-dev (`apt-get download spirv-tools libvulkan-dev`,
 * `dpkg-deb -x` each; neither needs installing).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setBackend } from '@sparsegrad/core';
import { parseTuning, setDawnOptions, type WebGPUBackend } from '@sparsegrad/webgpu';
import { matrixAt } from '@sparsegrad/core/backend';
import { benchmarkLayout, parseVariants } from './util.ts';

const argValue = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const OPS = ['dense-nn', 'dense-nt', 'bsr-forward', 'bsr-dx', 'sddmm'] as const;
type Op = (typeof OPS)[number];

const child = argValue('--child') as Op | undefined;
if (child) await runOp(child);
else report();

/** Child: runs one op once; everything Dawn dumps after the marker belongs to it. */
async function runOp(op: Op): Promise<void> {
  await import('@sparsegrad/webgpu');
  setDawnOptions({ flags: ['enable-dawn-features=dump_shaders'] });
  const be = await setBackend('webgpu');
  // --tuning KEY=VALUE: one entry of the backend's tuning (a --variants value of the parent).
  const tuning = argValue('--tuning');
  if (tuning) (be as WebGPUBackend).context.setTuning(parseTuning(tuning.slice(0, tuning.indexOf('=')), tuning.slice(tuning.indexOf('=') + 1)));
  const M = 2048;
  const [rows, cols] = [4096, 1024];
  const W = benchmarkLayout(be, rows, cols, 32, 0.5);
  const blocks = W.data.storageFor('stats').buffer;
  const a = be.alloc(M * rows, 'float32');
  const b = be.alloc(rows * cols, 'float32');
  const out = be.alloc(M * rows, 'float32');
  writeSync(1, '\n@@op\n');
  if (op === 'dense-nn') be.matmul(matrixAt(a, rows, 1), matrixAt(b, cols, 1), out, 1, M, cols, rows, 'highest');
  if (op === 'dense-nt') be.matmul(matrixAt(a, cols, 1), matrixAt(b, 1, cols), out, 1, M, rows, cols, 'highest');
  if (op === 'bsr-forward') be.bsrMatmul(a, blocks, W.layout, M, out, 'highest');
  if (op === 'bsr-dx') be.bsrMatmulGradInput(a, blocks, W.layout, M, out, 'highest');
  if (op === 'sddmm') be.bsrSddmm(a, b, W.layout, M, out, 'highest');
  await be.read(out, 1);
  process.exit(0);
}

function report(): void {
  const tools = join(process.cwd(), '.gpu-host/tools');
  const spirvAs = process.env.SPIRV_AS ?? join(tools, 'spirv-as');
  const stats = process.env.VK_SHADER_STATS ?? join(tools, 'vk-shader-stats');
  const ops = (argValue('--ops')?.split(',') ?? OPS) as Op[];
  // --variants as benchmarks/webgpu.ts takes it; each value goes to a child as --tuning KEY=VALUE.
  const variants = parseVariants(argValue('--variants'));
  const name = variants?.name ?? '';
  const values: (string | undefined)[] = variants?.values ?? [undefined];
  const dir = mkdtempSync(join(tmpdir(), 'shader-stats-'));
  // --cache-dir: the driver's pipeline-cache data of each kernel (machine code) is kept there.
  const cacheDir = argValue('--cache-dir');
  for (const value of values) {
    const label = value === undefined ? '' : ` (${name}=${value})`;
    for (const op of ops) {
      // stdbuf: Dawn's native dump must not sit in a pipe buffer past the marker.
      const env = process.env;
      const tuning = value === undefined ? [] : ['--tuning', `${name}=${value}`];
      const run = spawnSync('stdbuf', ['-o0', 'npx', 'tsx', 'benchmarks/webgpu-shader-stats.ts', '--child', op, ...tuning], {
        env,
        encoding: 'utf8',
        maxBuffer: 1 << 28,
      });
      if (run.status !== 0) throw new Error(`shader stats: ${op} failed: ${run.stderr.slice(-2000)}`);
      const after = run.stdout.slice(run.stdout.indexOf('@@op'));
      const sections = after
        .split('/* Dumped SPIRV disassembly */')
        .slice(1)
        .map((s) => s.split(/\ninfo:/)[0]);
      sections.forEach((spirv, i) => {
        const base = join(dir, `${op}-${i}`);
        // Maximal reconvergence (newer than the Debian spirv-as) constrains only subgroup semantics.
        writeFileSync(`${base}.spvasm`, spirv.replace(/^.*(MaximallyReconvergesKHR|SPV_KHR_maximal_reconvergence).*$/gm, ''));
        execFileSync(spirvAs, ['--target-env', 'vulkan1.1spv1.4', '-o', `${base}.spv`, `${base}.spvasm`]);
        const entry = /OpEntryPoint GLCompute %\w+ "(\w+)"/.exec(spirv)?.[1] ?? 'main';
        const cacheEnv = cacheDir
          ? { ...process.env, VK_SHADER_STATS_CACHE: join(cacheDir, `${op}-${i}${value === undefined ? '' : `-${value}`}.cache`) }
          : process.env;
        const out = execFileSync(stats, [`${base}.spv`, entry, bindings(spirv)], { encoding: 'utf8', env: cacheEnv });
        console.log(`## ${op} pipeline ${i}${label}\n${out}`);
      });
    }
  }
}

/** Set 0's bindings of a SPIR-V disassembly as vk-shader-stats takes them (U<n> uniform, S<n> storage). */
function bindings(spirv: string): string {
  const binding = new Map<string, number>();
  for (const m of spirv.matchAll(/OpDecorate (%\w+) Binding (\d+)/g)) binding.set(m[1], Number(m[2]));
  const out: string[] = [];
  for (const m of spirv.matchAll(/(%\w+) = OpVariable %\w+ (Uniform|StorageBuffer)\b/g)) {
    const b = binding.get(m[1]);
    if (b !== undefined) out.push(`${m[2] === 'Uniform' ? 'U' : 'S'}${b}`);
  }
  return out.join(',');
}
