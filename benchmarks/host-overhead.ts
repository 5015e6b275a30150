/**
 * Host-side cost of the framework with the CUDA backend's TypeScript layer over a no-op addon
 * (no GPU needed): every op does its shape checks, autograd bookkeeping, kernel choice and
 * argument packing, but nothing launches. On the GPU host the GPT step with tensor cores is bound
 * by this cost (docs/benchmarks.md), so it can be profiled and cut on any machine:
 *
 *   npx tsx benchmarks/host-overhead.ts [--precision highest|high|medium]
 *   node --cpu-prof --import tsx benchmarks/host-overhead.ts
 */
import { parseArgs } from 'node:util';
import { registerBackend, setBackend, setFloat32MatmulPrecision, type MatmulPrecision } from '@sparsegrad/core';
import { createCudaBackend } from '../packages/cuda/src/backend.ts';
import type { Addon } from '../packages/cuda/src/native.ts';
import { createGptStep } from './gpt.ts';
import { median, usPerChainedOp, warmUp } from './util.ts';

let next = 4096;
/** Work items the backend queued (kernel launches, cuBLAS calls, memsets, copies): deterministic, unlike the times. */
let queued = 0;
const ids = new Map<string, number>();
/** Launches per kernel id. */
const launches = new Map<number, number>();
const noop: Addon = {
  init: () => ({ name: 'no-op addon', computeCapability: '9.0', multiprocessors: 132, sharedMemoryPerBlock: 232448, totalMemory: 8e10, driverVersion: 13000 }),
  fn: (name) => ids.get(name) ?? (ids.set(name, ids.size), ids.size - 1),
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
};
registerBackend({ name: 'cuda-noop', priority: -1, create: () => createCudaBackend(noop, noop.init()) });
await setBackend('cuda-noop');
const { values } = parseArgs({ options: { precision: { type: 'string', default: 'highest' } } });
setFloat32MatmulPrecision(values.precision as MatmulPrecision);

console.log(`chain of 1000 small adds: ${(await usPerChainedOp(5)).toFixed(2)} us per op`);
for (const density of [1, 0.25]) {
  const gpt = await createGptStep(32, density);
  await warmUp(() => gpt.run());
  const host: number[] = [];
  const before = queued;
  launches.clear();
  for (let i = 0; i < 10; i++) host.push((await gpt.run()).host);
  console.log(`GPT step (6 layers, d512, batch 32 x 256), ${density < 1 ? `MLPs at density ${density}` : 'dense'}: ${median(host).toFixed(2)} ms of host time, ${(queued - before) / 10} launches`);
  const names = new Map([...ids].map(([name, id]) => [id, name]));
  const top = [...launches].sort((a, b) => b[1] - a[1]).slice(0, 6);
  console.log(`  most launched per step: ${top.map(([id, n]) => `${names.get(id)} ${n / 10}`).join(', ')}`);
  gpt.dispose();
}
process.exit(0);
