// Builds the CUDA addon (build/Release/sparsegrad_cuda.node) where a CUDA toolkit is found:
// nvcc compiles native/kernels/*.cu into fatbins (sm_80, sm_90a and compute_90 PTX for newer
// GPUs), which are embedded in the addon; g++ compiles the Node-API code against Node's own
// headers (or the node-api-headers package) and cuda.h. No GPU, driver or cuBLAS is needed to
// build: libcuda and libcublas are opened at run time.
//
// Without a toolkit, or if the build fails, this prints why, records it in build/status.json
// (the backend reports it as the reason it is unavailable) and exits 0, so `npm install` still
// succeeds. `--require` makes a missing or failed build an error (CI, where nvcc exists).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const pkg = join(import.meta.dirname, '..');
const build = join(pkg, 'build');
const require = createRequire(import.meta.url);
const strict = process.argv.includes('--require');
mkdirSync(join(build, 'Release'), { recursive: true });

function finish(built, reason) {
  writeFileSync(join(build, 'status.json'), JSON.stringify({ built, reason }, null, 1));
  if (built) console.log('sparsegrad cuda: addon built');
  else console.log(`sparsegrad cuda: addon not built: ${reason}`);
  process.exit(!built && strict ? 1 : 0);
}

const cuda = process.env.CUDA_HOME ?? '/usr/local/cuda';
const nvcc = join(cuda, 'bin', 'nvcc');
if (!existsSync(nvcc) || !existsSync(join(cuda, 'include', 'cuda.h'))) {
  finish(false, `no CUDA toolkit found (looked for nvcc and cuda.h under ${cuda}; set CUDA_HOME)`);
}

// Node's headers ship with Node (prefix/include/node); node-api-headers is the fallback.
let nodeInclude = join(dirname(process.execPath), '..', 'include', 'node');
if (!existsSync(join(nodeInclude, 'node_api.h'))) {
  try {
    nodeInclude = require('node-api-headers').include_dir;
  } catch {
    finish(false, `Node-API headers not found (${nodeInclude} nor the node-api-headers package)`);
  }
}
const addonApi = require('node-addon-api').include_dir;

const kernels = join(pkg, 'native', 'kernels');
const sources = readdirSync(kernels).filter((f) => f.endsWith('.cu')).sort();
const arches = ['-gencode=arch=compute_80,code=sm_80', '-gencode=arch=compute_90a,code=sm_90a', '-gencode=arch=compute_90,code=compute_90'];
try {
  await Promise.all(sources.map((f) =>
    run(nvcc, ['-fatbin', '-O3', '-std=c++17', ...arches, '-o', join(build, f.replace(/\.cu$/, '.fatbin')), join(kernels, f)], { maxBuffer: 1 << 24 })));
  // The fatbins go into the addon's read-only data (aligned: the driver reads them in place).
  const asm = [
    ...sources.map((f, i) => `.section .rodata\n.balign 64\nsg_fatbin_${i}:\n.incbin "${join(build, f.replace(/\.cu$/, '.fatbin'))}"`),
    '.section .data.rel.ro,"aw"\n.balign 8\n.globl sparsegradFatbins\nsparsegradFatbins:',
    ...sources.map((_, i) => `.quad sg_fatbin_${i}`),
    `.section .rodata\n.balign 4\n.globl sparsegradFatbinCount\nsparsegradFatbinCount:\n.long ${sources.length}`,
    '.section .note.GNU-stack,"",@progbits',
  ].join('\n');
  writeFileSync(join(build, 'fatbins.S'), `${asm}\n`);
  const native = join(pkg, 'native');
  await run(process.env.CXX ?? 'g++', [
    '-O2', '-std=c++17', '-shared', '-fPIC', '-fvisibility=hidden', '-DNAPI_VERSION=8', '-DNAPI_CPP_EXCEPTIONS',
    `-I${nodeInclude}`, `-I${addonApi}`, `-I${join(cuda, 'include')}`,
    join(native, 'addon.cpp'), join(native, 'driver.cpp'), join(native, 'gemm_lt.cpp'), join(build, 'fatbins.S'),
    '-ldl', '-o', join(build, 'Release', 'sparsegrad_cuda.node'),
  ], { maxBuffer: 1 << 24 });
} catch (e) {
  finish(false, `the build failed: ${(e.stderr || e.message).toString().trim().split('\n').slice(0, 20).join('\n')}`);
}
finish(true);
