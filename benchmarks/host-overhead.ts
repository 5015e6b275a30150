/**
 * Host-side cost of the framework with the CUDA backend's TypeScript layer over a no-op addon
 * (no GPU needed): every op does its shape checks, autograd bookkeeping, kernel choice and
 * argument packing, but nothing launches. On the GPU host the GPT step with tensor cores is bound
 * by this cost (docs/benchmarks.md), so it can be profiled and cut on any machine:
 *
 *   npx tsx benchmarks/host-overhead.ts [--precision highest|high|medium|bf16|fp16] [--densities 1,0.25] [--model gpt|nanogpt]
 *   node --cpu-prof --import tsx benchmarks/host-overhead.ts
 *
 * With --real (GPU host) the real addon runs underneath, each of its calls timed on the host, so
 * the step's host time splits into the framework's JavaScript and the driver calls (per function,
 * and per kernel for launches). With --real --kernels each queued item is also bracketed by device
 * events, behind ~50 ms of queued copies so that the device never waits for the host and each
 * pair times its kernel alone: the step's device time per kernel (cuBLAS calls by shape).
 */
import { parseArgs } from 'node:util';
import { setBackend, setFloat32MatmulPrecision, type MatmulPrecision } from '@sparsegrad/core';
import { registerBackend } from '@sparsegrad/core/backend';
import { createCudaBackend } from '../packages/cuda/src/backend.ts';
import { loadAddon, type Addon } from '../packages/cuda/src/native.ts';
import { NANOGPT, createGptStep } from './gpt.ts';
import { median, usPerChainedOp, warmUp } from './util.ts';

let next = 4096;
/** Work items the backend queued (kernel launches, cuBLAS calls, memsets, copies): deterministic, unlike the times. */
let queued = 0;
const ids = new Map<string, number>();
/** Launches per kernel id. */
const launches = new Map<number, number>();
const noop: Addon = {
  init: () => ({ name: 'no-op addon', computeCapability: '9.0', multiprocessors: 132, sharedMemoryPerBlock: 232448, totalMemory: 8e10, driverVersion: 13000 }),
  fn: (name) => {
    if (!ids.has(name)) ids.set(name, ids.size);
    return ids.get(name)!;
  },
  launch: (id) => {
    queued++;
    launches.set(id, (launches.get(id) ?? 0) + 1);
  },
  setSharedMemory: () => {},
  tensorMap: () => new Uint8Array(128),
  malloc: (bytes) => (next += Math.ceil(bytes / 256) * 256),
  free: () => {},
  upload: () => {},
  memset32: () => void queued++,
  copy: () => void queued++,
  read: async (_ptr, bytes) => new ArrayBuffer(bytes),
  // Setup tables (tile sizes, group sizes, limits): any positive values do; 512 keeps every path
  // of a compute-capability-9.0 GPU in play (the TMA kernels take up to 512 column blocks).
  readSync: (_ptr, bytes) => new Int32Array(bytes / 4).fill(512).buffer,
  synchronize: () => {},
  memInfo: () => [1e10, 8e10],
  recordEvent: () => 0,
  elapsed: () => 0,
  releaseEvents: () => {},
  gemm: () => void queued++,
  uploadSync: () => {},
  captureBegin: () => {},
  captureNode: () => 0,
  captureEnd: () => 0,
  captureAbort: () => {},
  graphLaunch: () => void queued++,
  graphSetKernel: () => {},
  graphRelease: () => {},
};
const { values } = parseArgs({
  options: {
    precision: { type: 'string', default: 'highest' },
    real: { type: 'boolean', default: false },
    kernels: { type: 'boolean', default: false },
    densities: { type: 'string', default: '1,0.25' },
    // gpt: benchmarks/gpt.ts's step (batch 32); nanogpt: issue 26's nanoGPT model (batch 64).
    model: { type: 'string', default: 'gpt' },
  },
});
/** Device time per queued item (--kernels): event pairs of the current step, by label. */
let bracket: { label: string; start: number; end: number }[] | undefined;
/** Host milliseconds spent in each addon function ('launch <kernel>' for launches) and its calls. */
const inAddon = new Map<string, { ms: number; calls: number }>();
/** The real addon, each call timed and counted like the no-op one's. */
function timed(real: Addon): Addon {
  const names = new Map<number, string>();
  const wrapped = { ...real } as Record<string, unknown>;
  for (const [key, f] of Object.entries(real) as [string, (...a: unknown[]) => unknown][]) {
    wrapped[key] = (...args: unknown[]) => {
      const label = key === 'launch' ? `launch ${names.get(args[0] as number)}` : key === 'gemm' ? `gemm ${args.slice(2, 5).join('x')} batch ${args[14]}` : key;
      const queues = key === 'launch' || key === 'gemm' || key === 'memset32' || key === 'copy';
      const start = bracket && queues ? real.recordEvent() : -1;
      const t0 = performance.now();
      const out = f(...args);
      if (start >= 0) bracket!.push({ label, start, end: real.recordEvent() });
      const e = inAddon.get(label) ?? { ms: 0, calls: 0 };
      e.ms += performance.now() - t0;
      e.calls++;
      inAddon.set(label, e);
      if (queues) queued++;
      if (key === 'launch') launches.set(args[0] as number, (launches.get(args[0] as number) ?? 0) + 1);
      if (key === 'fn') {
        names.set(out as number, args[0] as string);
        ids.set(args[0] as string, out as number);
      }
      return out;
    };
  }
  return wrapped as unknown as Addon;
}
const addon = values.real ? timed(loadAddon()) : noop;
registerBackend({ name: 'cuda-timed', priority: -1, create: () => createCudaBackend(addon, addon.init()) });
await setBackend('cuda-timed');
const lowPrecision = values.precision === 'bf16' ? 'bfloat16' : values.precision === 'fp16' ? 'float16' : false;
if (!lowPrecision) setFloat32MatmulPrecision(values.precision as MatmulPrecision);

/** One step with every queued item timed on the device; prints the device time per label. */
async function deviceTimes(gpt: { run(): Promise<unknown> }): Promise<void> {
  const real = addon;
  const bytes = 512 * 2 ** 20;
  const [a, b] = [real.malloc(bytes), real.malloc(bytes)];
  for (let i = 0; i < 150; i++) real.copy(a, b, bytes);
  bracket = [];
  await gpt.run();
  const byLabel = new Map<string, { ms: number; n: number }>();
  for (const { label, start, end } of bracket) {
    const e = byLabel.get(label) ?? { ms: 0, n: 0 };
    e.ms += real.elapsed(start, end);
    e.n++;
    byLabel.set(label, e);
  }
  bracket = undefined;
  real.releaseEvents();
  real.free(a);
  real.free(b);
  const rows = [...byLabel].sort((x, y) => y[1].ms - x[1].ms);
  console.log(`  device time of the queued items: ${rows.reduce((s, [, e]) => s + e.ms, 0).toFixed(2)} ms per step`);
  console.log('| item | ms | count |\n| --- | --- | --- |');
  for (const [label, e] of rows.slice(0, 45)) console.log(`| ${label} | ${e.ms.toFixed(3)} | ${e.n} |`);
}

console.log(`chain of 1000 small adds: ${(await usPerChainedOp(5)).toFixed(2)} us per op`);
for (const density of values.densities.split(',').map(Number)) {
  const gpt = values.model === 'nanogpt' ? await createGptStep(64, density, lowPrecision, false, NANOGPT) : await createGptStep(32, density, lowPrecision);
  await warmUp(() => gpt.run());
  const host: number[] = [];
  const before = queued;
  launches.clear();
  const wall: number[] = [];
  inAddon.clear();
  for (let i = 0; i < 10; i++) {
    const r = await gpt.run();
    host.push(r.host);
    wall.push(r.wall);
  }
  console.log(
    `${values.model === 'nanogpt' ? 'nanoGPT step (6 layers, d384, batch 64 x 256)' : 'GPT step (6 layers, d512, batch 32 x 256)'}, ${density < 1 ? `MLPs at density ${density}` : 'dense'}: ${median(host).toFixed(2)} ms of host time${values.real ? ` (wall ${median(wall).toFixed(2)} ms)` : ''}, ${(queued - before) / 10} launches`,
  );
  if (values.real) {
    const rows = [...inAddon].sort((a, b) => b[1].ms - a[1].ms);
    const total = rows.reduce((s, [, e]) => s + e.ms, 0) / 10;
    console.log(
      `  in addon calls: ${total.toFixed(2)} ms per step; most: ${rows
        .slice(0, 12)
        .map(([k, e]) => `${k} ${(e.ms / 10).toFixed(2)} ms (${((1000 * e.ms) / e.calls).toFixed(1)} us x ${e.calls / 10})`)
        .join(', ')}`,
    );
  }
  if (values.kernels) await deviceTimes(gpt);
  const names = new Map([...ids].map(([name, id]) => [id, name]));
  const top = [...launches].sort((a, b) => b[1] - a[1]).slice(0, 6);
  console.log(`  most launched per step: ${top.map(([id, n]) => `${names.get(id)} ${n / 10}`).join(', ')}`);
  gpt.dispose();
}
process.exit(0);
