/**
 * Without a GPU: every kernel the TypeScript side launches exists in the compiled fatbins, its
 * arguments are packed where the compiled kernel reads its parameters, and the elementwise op
 * codes mean the same op on both sides. A misspelt kernel name would otherwise fail
 * only on a GPU, and only on its route; an argument out of place would compute garbage there
 * without a word. The backend runs over a recording stand-in for the addon
 * (no values are computed) through every op and every block-sparse route: each precision, block
 * size, density and each route the tuning can force.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as sg from '@sparsegrad/core';
import { BlockSparseMatrix, adamSteps, captureStep, keep, manualSeed, setBackend, setFloat32MatmulPrecision, zeros, type Backend } from '@sparsegrad/core';
import { AdamW, GPT } from '@sparsegrad/nn';
import { BINARY_OPS, REDUCE_OPS, UNARY_OPS, createCudaBackend } from '../src/backend.ts';
import { Args } from '../src/args.ts';
import { registerBackend, withHalfFallback } from '@sparsegrad/core/backend';
import type { Addon, DeviceProperties } from '../src/native.ts';
import type { CudaTuning } from '../src/tuning.ts';
import { skippedSuite } from '../../core/test/helpers.ts';

const pkg = join(import.meta.dirname, '..');
const build = join(pkg, 'build');
const fatbins = existsSync(build) ? readdirSync(build).filter((f) => f.endsWith('.fatbin')) : [];
const test = fatbins.length
  ? suite('CUDA kernel names and op codes')
  : skippedSuite('CUDA kernel names and op codes', 'the CUDA addon was not built here (no fatbins)');
if (!fatbins.length) console.log('  skipping CUDA kernel names and op codes: the CUDA addon was not built here (no fatbins in packages/cuda/build)');

/** Kernel names in the fatbins: each cubin has a `.text.<name>` section per kernel. */
function compiledKernels(): Set<string> {
  const names = new Set<string>();
  for (const f of fatbins) for (const m of readFileSync(join(build, f), 'latin1').matchAll(/\.text\.([A-Za-z_][A-Za-z0-9_]*)/g)) names.add(m[1]);
  return names;
}

/**
 * Each kernel's parameters as compiled: (offset, size) in bytes, in order (offsets as the
 * compiler places them, which need not be where Args puts the arguments), from the
 * EIATTR_KPARAM_INFO attributes of its `.nv.info.<name>` section in each ELF image of the fatbins.
 */
function compiledParameters(): Map<string, [number, number][]> {
  const params = new Map<string, [number, number][]>();
  for (const f of fatbins) {
    const buf = readFileSync(join(build, f));
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let elf = buf.indexOf('\x7fELF', 0, 'latin1'); elf >= 0; elf = buf.indexOf('\x7fELF', elf + 4, 'latin1')) {
      if (buf[elf + 4] !== 2) continue; // ELF64 only
      const shoff = Number(dv.getBigUint64(elf + 0x28, true));
      const [shentsize, shnum, shstrndx] = [0x3a, 0x3c, 0x3e].map((o) => dv.getUint16(elf + o, true));
      const section = (i: number) => {
        const h = elf + shoff + i * shentsize;
        return { name: dv.getUint32(h, true), offset: elf + Number(dv.getBigUint64(h + 24, true)), size: Number(dv.getBigUint64(h + 32, true)) };
      };
      const names = section(shstrndx).offset;
      for (let i = 0; i < shnum; i++) {
        const s = section(i);
        const name = buf.toString('latin1', names + s.name, buf.indexOf(0, names + s.name));
        if (!name.startsWith('.nv.info.') || params.has(name.slice(9))) continue;
        const list: [number, number, number][] = [];
        // Attributes: format byte, attribute byte; format 4 carries a u16 size and that many bytes,
        // formats 2 and 3 a 2-byte value. KPARAM_INFO (0x17): u32 index, u16 ordinal, u16 offset,
        // u32 flags whose bits 18-31 are the size.
        for (let p = s.offset; p < s.offset + s.size; ) {
          if (buf[p] === 4) {
            if (buf[p + 1] === 0x17) list.push([dv.getUint16(p + 8, true), dv.getUint16(p + 10, true), (dv.getUint32(p + 12, true) >>> 18) & 0x3fff]);
            p += 4 + dv.getUint16(p + 2, true);
          } else p += buf[p] === 2 || buf[p] === 3 ? 4 : 2;
        }
        params.set(
          name.slice(9),
          list.sort((a, b) => a[0] - b[0]).map(([, offset, size]) => [offset, size]),
        );
      }
    }
  }
  return params;
}

/** Each launched kernel's argument packings: the offsets of its arguments and the bytes in all. */
type Packings = Map<string, Set<string>>;

/** An addon that computes nothing: it hands out addresses and records the kernels asked for and how their arguments were packed. */
function recordingAddon(launched: Set<string>, packings: Packings = new Map()): Addon {
  let next = 0x10000;
  let nodes = 0;
  const ids: string[] = [];
  return {
    init: () => props,
    fn: (name) => {
      launched.add(name);
      return ids.push(name) - 1;
    },
    launch: (id, _gx, _gy, _gz, _bx, _by, _bz, _shared, args, offsets) => {
      const name = ids[id];
      if (!packings.has(name)) packings.set(name, new Set());
      packings.get(name)!.add(JSON.stringify([[...offsets], args.length]));
    },
    setSharedMemory: () => {},
    tensorMap: () => new Uint8Array(128),
    malloc: (bytes) => {
      next += Math.ceil(bytes / 256) * 256 + 256;
      return next;
    },
    free: () => {},
    upload: () => {},
    memset32: () => {},
    copy: () => {},
    read: async (_ptr, bytes) => new ArrayBuffer(bytes),
    // Setup tables (blocksparse.ts readTable): a group size first, as the kernels define it (4: the
    // bf16 union kernel is named by it), then tile sizes, shared memory and step limits large
    // enough that every route stays open.
    readSync: (_ptr, bytes) => {
      const table = new Int32Array(bytes / 4).fill(128);
      table[0] = 4;
      return table.buffer;
    },
    synchronize: () => {},
    memInfo: () => [64 * 2 ** 30, 80 * 2 ** 30],
    recordEvent: () => 0,
    elapsed: () => 0,
    releaseEvents: () => {},
    gemm: () => {},
    uploadSync: () => {},
    captureBegin: () => {},
    captureNode: () => nodes++,
    captureEnd: () => 1,
    captureAbort: () => {},
    graphLaunch: () => {},
    // A span's update launches its kernels again: checked like launches.
    graphSetKernel: (_graph, node, id, _gx, _gy, _gz, _bx, _by, _bz, _shared, args, offsets) => {
      if (node >= nodes) throw new Error(`graphSetKernel: node ${node} was never captured`);
      const name = ids[id];
      if (!packings.has(name)) packings.set(name, new Set());
      packings.get(name)!.add(JSON.stringify([[...offsets], args.length]));
    },
    graphRelease: () => {},
  };
}
const props: DeviceProperties = {
  name: 'recording stand-in',
  computeCapability: '9.0',
  multiprocessors: 132,
  sharedMemoryPerBlock: 232448,
  totalMemory: 80 * 2 ** 30,
  driverVersion: 13000,
};

/**
 * A GPT step recorded by captureStep and replayed (bf16 autocast, so the fused attention with
 * dropout runs; AdamW): every span's update must launch exactly the kernels it recorded, which the
 * stand-in's graphSetKernel checks against the captured nodes, with their arguments' packings.
 */
let recordings = 0;
async function capturedSteps(be: Backend): Promise<void> {
  const name = `cuda-recording-${recordings++}`;
  registerBackend({ name, priority: -1, create: () => be });
  await setBackend(name);
  try {
    const model = new GPT({ vocabSize: 20, seqLen: 16, dModel: 64, heads: 2, layers: 1, dropout: 0.1 });
    const opt = new AdamW(model.parameters(), { lr: 1e-3 });
    const ids = sg.tensor(
      Int32Array.from({ length: 32 }, (_, i) => i % 20),
      [2, 16],
      { dtype: 'int32' },
    );
    const step = captureStep((x: sg.Tensor, y: sg.Tensor) =>
      sg.tidy(() => {
        const l = sg.autocast('bfloat16', () => sg.crossEntropy(model.forward(x), y));
        l.backward();
        opt.step();
        opt.zeroGrad();
        return l;
      }),
    );
    for (let i = 0; i < 5; i++) step.run(ids, ids).dispose();
    assert.ok(step.captured, `the step was recorded (${step.reason})`);
    step.dispose();
    opt.dispose();
    model.dispose();
  } finally {
    await setBackend('cpu');
  }
}

/** The ops with native 16-bit kernels (and a few through core's fallback), in each 16-bit dtype. */
function everyHalfOp(be: Backend): void {
  for (const dtype of ['bfloat16', 'float16'] as const) {
    const f = (shape: number[]) => zeros(shape, { backend: be, dtype });
    for (const x of [f([64, 256]), f([64, 256]).transpose(0, 1), f([33, 7])]) {
      x.exp();
      x.gelu('tanh');
      x.add(x);
      x.mul(2);
      x.gt(x);
      x.cast('float32').cast(dtype);
      x.cast('int32').cast(dtype);
      sg.where(x.gt(0), x, x);
      for (const axis of [0, 1]) for (const op of ['sum', 'max', 'argmax'] as const) x[op](axis);
    }
    for (const n of [100, 5000, 300000]) {
      const x = f([4, n]).requiresGrad_();
      x.sum(1);
      tidyBackward(() => x.softmax(-1).mul(x).sum());
    }
    tidyBackward(() => sg.linear(f([8, 16]).requiresGrad_(), f([32, 16]).requiresGrad_(), f([32]).requiresGrad_()).sum());
    tidyBackward(() =>
      f([2, 8, 16])
        .requiresGrad_()
        .matmul(f([2, 16, 4]).requiresGrad_())
        .sum(),
    );
  }
}

/** Every op of core once or in each of its kernel forms (vectorized, strided, warp/block rows, columns, ints). */
async function everyOp(be: Backend): Promise<void> {
  const f = (shape: number[]) => zeros(shape, { backend: be });
  const i = (shape: number[]) => zeros(shape, { backend: be, dtype: 'int32' });
  for (const x of [f([64, 256]), f([64, 256]).transpose(0, 1), f([33, 7])]) {
    for (const op of ['neg', 'exp', 'log', 'sqrt', 'abs', 'tanh', 'sigmoid', 'relu'] as const) x[op]();
    sg.sign(x);
    x.gelu('tanh');
    x.gelu('none');
    for (const op of ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const) {
      x[op](x);
      x[op](2);
    }
    x.cast('int32');
    x.contiguous();
    sg.where(x.gt(0), x, x);
    for (const axis of [0, 1]) for (const op of ['sum', 'max', 'min', 'argmax', 'argmin'] as const) x[op](axis);
  }
  for (const x of [i([8, 5]), i([8, 5]).transpose(0, 1)]) {
    x.neg();
    x.abs();
    for (const op of ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'lt'] as const) x[op](x);
    x.cast('float32');
    sg.where(x, x, x);
    sg.where(x, x.cast('float32'), x.cast('float32'));
    sg.where(x.cast('float32'), x, x);
    x.sum(0);
    x.max(1);
  }
  for (const n of [100, 5000, 300000]) {
    const x = f([4, n]).requiresGrad_();
    x.sum(1);
    x.max(1);
    x.min(1);
    x.sum();
    tidyBackward(() => x.softmax(-1).mul(x).sum());
    tidyBackward(() => x.logSoftmax(-1).sum());
    const g = f([n]).requiresGrad_();
    tidyBackward(() => sg.layerNorm(x, [n], g, g).sum());
  }
  tidyBackward(() => sg.causalSoftmax(f([2, 64, 64]).requiresGrad_()).sum());
  sg.randn([1000], { backend: be });
  sg.rand([1000], { backend: be });
  const table = f([50, 16]).requiresGrad_();
  const ids = i([4, 8]);
  tidyBackward(() => table.indexSelect(0, ids.flatten()).sum());
  tidyBackward(() => table.gather(1, i([50, 3])).sum());
  tidyBackward(() => sg.crossEntropy(f([8, 50]).requiresGrad_(), i([8])));
  const w = f([32, 16]).requiresGrad_();
  tidyBackward(() => sg.linear(f([8, 16]), w, null).sum());
  const p = keep(f([1000]));
  const g = keep(f([1000]));
  const m = keep(f([1000]));
  const v = keep(f([1000]));
  adamSteps([{ p, g, m, v }], {
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.1,
    decoupled: true,
    biasCorrection1: 0.1,
    biasCorrection2: 0.001,
  });
  sg.sumOfSquares([p, g]);
  sg.scaleEach([p, g], f([1]));
  sg.scaleEachInPlace([p, g], f([1]));
}

function tidyBackward(f: () => sg.Tensor): void {
  sg.tidy(() => f().backward());
}

/** The block-sparse trio (forward, dX, dW) on every route: block sizes, densities, token counts, precisions and bfloat16 tensors. */
function everyBlockSparseRoute(be: Backend, blockSizes: readonly number[]): void {
  for (const precision of ['highest', 'high', 'medium', 'bfloat16'] as const) {
    const dtype = precision === 'bfloat16' ? 'bfloat16' : 'float32';
    if (precision !== 'bfloat16') setFloat32MatmulPrecision(precision);
    for (const blockSize of blockSizes) {
      for (const density of [0.05, 0.25, 0.5, 0.9]) {
        for (const [rows, cols] of [
          [1024, 256],
          [256, 1024],
          [512, 512],
        ]) {
          for (const m of [48, 4096]) {
            sg.tidy(() => {
              const w = BlockSparseMatrix.random([rows, cols], { density, blockSize, backend: be });
              const blocks = w.data.cast(dtype).requiresGrad_();
              const x = zeros([m, cols], { backend: be, dtype }).requiresGrad_();
              sg.bsrMatmul(x, blocks, w.layout, zeros([rows], { backend: be, dtype }))
                .sum()
                .backward();
              w.data.dispose();
            });
          }
        }
      }
    }
  }
  setFloat32MatmulPrecision('highest');
}

/** Route choices the tuning can force (each a variant the defaults may not reach). */
const VARIANTS: Partial<CudaTuning>[] = [
  {},
  { union: 'on' },
  { union: 'off' },
  { bf16Union: 'on' },
  { bf16Union: 'off' },
  { tma: false },
  { unionCluster: false },
  { sddmmTile: false },
  { sddmmFill: false },
  { sddmmTranspose: 'on' },
  { sddmmTranspose: 'off' },
  { bandTiles: 0 },
  { bandTiles: 4 },
  { denseRoute: 'off' },
  { denseRoute: 'on' },
  { attentionDq: 'separate' },
];

test('every kernel the backend launches is in the fatbins', async () => {
  const compiled = compiledKernels();
  assert.ok(compiled.has('unary_f32') && compiled.has('gather_f32'), `the fatbins' kernel names were found (${compiled.size})`);
  const launched = new Set<string>();
  const packings: Packings = new Map();
  manualSeed(1);
  for (const tuning of VARIANTS) {
    const be = createCudaBackend(recordingAddon(launched, packings), props);
    be.setTuning(tuning);
    if (Object.keys(tuning).length === 0) {
      await everyOp(be);
      everyHalfOp(withHalfFallback(be));
      await capturedSteps(be);
    }
    if (tuning.attentionDq) await capturedSteps(be); // the attention backward's other kernels
    // 128x128 blocks have no kernels yet: with the dense route off they are an Error (routes.test.ts).
    everyBlockSparseRoute(be, tuning.denseRoute === 'off' ? [16, 32, 64] : [16, 32, 64, 128]);
  }
  const missing = [...launched].filter((n) => !compiled.has(n)).sort();
  assert.equal(missing, [], `kernels launched by src/ but absent from native/ (of ${launched.size} launched)`);
  // Every launch passed as many arguments as the compiled kernel has parameters, each of its size:
  // the driver copies each parameter's compiled size from its argument. Packing the compiled sizes
  // the way Args packs (pointers 8 bytes, scalars 4, tensor maps 128 at 64, structs at 4) must give
  // the launch's own offsets and length.
  const compiledParams = compiledParameters();
  for (const [name, seen] of packings) {
    const params = compiledParams.get(name);
    assert.ok(params, `${name}: parameter info in the fatbins`);
    const a = new Args();
    for (const [, size] of params) {
      if (size === 8) a.ptr(0);
      else if (size === 4) a.u32(0);
      else a.raw(new Uint8Array(size), size === 128 ? 64 : 4);
    }
    const expected = JSON.stringify([[...a.offsets], a.data.length]);
    const sizes = params.map(([, size]) => size).join(', ');
    for (const got of seen)
      assert.is(got, expected, `${name}: arguments packed as [offsets, bytes] ${got}; its parameters (${sizes} bytes) pack as ${expected}`);
  }
  // The walk reached the kernel families it is meant to cover.
  for (const family of [
    'bsr_tma_',
    'bsr_union_',
    'bsr_sddmm_tile_',
    'bsr_forward_tc_',
    'bsr_grad_input_',
    'softmax_',
    'layer_norm_',
    'scatter_add_',
    'adam_step_list',
    'attn_bwd_dq_',
    'attn_bwd_kv_',
  ]) {
    assert.ok(
      [...launched].some((n) => n.startsWith(family)),
      `no ${family}* kernel was launched: the walk misses a route`,
    );
  }
});

test('op codes: the position of each op in src/backend.ts is its case in native/kernels/elementwise.cu', () => {
  const source = readFileSync(join(pkg, 'native', 'kernels', 'elementwise.cu'), 'utf8');
  /** `case N: ... // name` lines of the switch in the function whose signature starts with `signature`. */
  const cases = (signature: string) => {
    const start = source.indexOf(signature);
    assert.ok(start >= 0, `${signature} in elementwise.cu`);
    const body = source.slice(start, source.indexOf('\n}\n', start));
    return [...body.matchAll(/case (\d+):.*\/\/ (\w+)/g)].map((m) => [Number(m[1]), m[2]] as const);
  };
  const check = (signature: string, ops: readonly string[], all: boolean) => {
    const found = cases(signature);
    if (all)
      assert.equal(
        found.map(([c]) => c),
        ops.map((_, i) => i),
        `${signature}: one case per op, in order`,
      );
    for (const [code, name] of found) assert.is(ops[code], name, `${signature}: case ${code}`);
  };
  check('__device__ float unaryF(', UNARY_OPS, true);
  check('__device__ int32_t unaryI(', UNARY_OPS, false);
  check('__device__ float binaryF(', BINARY_OPS, true);
  check('__device__ double binaryI(', BINARY_OPS, true);
  const rows = readFileSync(join(pkg, 'native', 'kernels', 'rows.cu'), 'utf8');
  assert.ok(rows.includes(`op: ${REDUCE_OPS.map((o, i) => `${i} ${o}`).join(', ')}.`), 'rows.cu documents the reduce op codes of REDUCE_OPS');
});

test.run();
