/**
 * Worker threads for the CPU backend's big SIMD kernels. Each worker instantiates the same
 * module over the same shared WebAssembly memory and waits on a small shared control block; the
 * main thread posts a slice of a product to every worker, computes its own slice, then waits
 * until all are done (Atomics.wait blocks the calling thread, which is what a synchronous kernel
 * wants). Only kernels whose slices write disjoint memory are split (row blocks of a product,
 * blocks of an SDDMM).
 */

/** Control block layout (int32): [state, function id, args...]. state: 0 idle, 1 posted, 2 done. */
const CONTROL_INTS = 16;
/** Index of the worker's error flag (arguments use 2 .. ERROR-1). */
const ERROR = CONTROL_INTS - 1;
/** How long an idle worker polls for the next job before it sleeps. */
const SPIN_MS = 5;
const IDLE = 0;
const POSTED = 1;
const DONE = 2;
export const FUNCTIONS = ['bsmm', 'sddmm'] as const;
export type ThreadedFunction = (typeof FUNCTIONS)[number];

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, control, functions } = workerData;
const kernels = new WebAssembly.Instance(module, { env: { memory, abort() { throw new Error('wasm abort'); } } }).exports;
const ctl = new Int32Array(control);
for (;;) {
  // Jobs come in bursts (a training step runs dozens of products): poll for a while before
  // sleeping, because waking a sleeping thread can take a millisecond on virtual machines.
  const until = Date.now() + ${SPIN_MS};
  while (Atomics.load(ctl, 0) !== ${POSTED} && Date.now() < until) {}
  Atomics.wait(ctl, 0, ${IDLE});
  if (Atomics.load(ctl, 0) !== ${POSTED}) continue;
  const fn = ctl[1];
  if (fn < 0) break;
  const args = Array.from(ctl.subarray(2, ${ERROR}));
  try {
    kernels[functions[fn]](...args);
    ctl[${ERROR}] = 0;
  } catch {
    ctl[${ERROR}] = 1;
  }
  Atomics.store(ctl, 0, ${DONE});
  Atomics.notify(ctl, 0);
}
`;

interface NodeWorker {
  unref(): void;
}
type WorkerCtor = new (src: string, opts: { eval: boolean; workerData: unknown }) => NodeWorker;

/** Node's built-in modules, loaded synchronously and without breaking browser bundles. */
export function builtin<T>(name: string): T | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (n: string) => unknown } }).process;
  return proc?.getBuiltinModule?.(name) as T | undefined;
}

/** Threads to use: SPARSEGRAD_CPU_THREADS, else every core; 1 where worker threads are unavailable. */
export function threadCount(): number {
  const os = builtin<{ availableParallelism?: () => number; cpus: () => unknown[] }>('node:os');
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.SPARSEGRAD_CPU_THREADS;
  if (!os || !builtin('node:worker_threads')) return 1;
  const wanted = env !== undefined ? Number(env) : (os.availableParallelism?.() ?? os.cpus().length);
  return Number.isInteger(wanted) && wanted >= 1 ? Math.min(wanted, 64) : 1;
}

export class ThreadPool {
  private readonly controls: Int32Array[] = [];
  private readonly workers: NodeWorker[] = [];

  /** Starts `count` workers (the calling thread is one more). */
  static create(module: WebAssembly.Module, memory: WebAssembly.Memory, count: number): ThreadPool {
    const { Worker } = builtin<{ Worker: WorkerCtor }>('node:worker_threads')!;
    const pool = new ThreadPool();
    for (let i = 0; i < count; i++) {
      const control = new SharedArrayBuffer(CONTROL_INTS * 4);
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module, memory, control, functions: FUNCTIONS } });
      worker.unref(); // never keeps the process alive
      pool.workers.push(worker);
      pool.controls.push(new Int32Array(control));
    }
    return pool;
  }

  /** Threads available for a product, the caller included. */
  get size(): number {
    return this.workers.length + 1;
  }

  /**
   * Runs fn once per argument list: the first on the calling thread, the others on the workers,
   * and returns when all finished.
   */
  run(fn: ThreadedFunction, argLists: number[][], local: (args: number[]) => void): void {
    const id = FUNCTIONS.indexOf(fn);
    for (let i = 1; i < argLists.length; i++) {
      const ctl = this.controls[i - 1];
      ctl[1] = id;
      ctl.set(argLists[i], 2);
      Atomics.store(ctl, 0, POSTED);
      Atomics.notify(ctl, 0);
    }
    // The workers are waited for even when our share throws: they write into the same memory.
    let localError: unknown = null;
    try {
      local(argLists[0]);
    } catch (e) {
      localError = e;
    }
    let failed = false;
    for (let i = 1; i < argLists.length; i++) {
      const ctl = this.controls[i - 1];
      // The worker's share usually ends within microseconds of ours: poll briefly, then sleep.
      for (let spins = 0; spins < 20000 && Atomics.load(ctl, 0) !== DONE; spins++);
      while (Atomics.load(ctl, 0) !== DONE) Atomics.wait(ctl, 0, POSTED);
      failed ||= ctl[ERROR] !== 0;
      Atomics.store(ctl, 0, IDLE);
    }
    if (localError) throw localError;
    if (failed) throw new Error(`cpu backend: the ${fn} kernel failed on a worker thread`);
  }
}
