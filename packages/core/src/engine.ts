import { MATMUL_PRECISIONS, type Backend, type BackendMemory, type HalfDType, type MatmulPrecision } from './backend.ts';
import type { CaptureSession } from './capture.ts';
import { opError } from './errors.ts';
import { cachedBackend, createSync, instantiateBackend, resolveAuto } from './registry.ts';
import type { Tensor } from './tensor.ts';

/**
 * All mutable global state of the library lives in this one object: the current backend, the
 * stack of tidy scopes, whether gradients are recorded, the random generator and live-tensor
 * counts. Backends stay stateless with respect to it.
 */
class Engine {
  private current: Backend | null = null;
  /** The reason 'auto' gave for its choice, for the CLI to print. */
  lastChoice = '';
  readonly scopes: Set<Tensor>[] = [];
  gradEnabled = true;
  matmulPrecision: MatmulPrecision = 'highest';
  /** The dtype of autocast's products, or null outside autocast (autocast.ts). */
  autocast: HalfDType | null = null;
  /** The autocast region's casts of op outputs to its dtype, by source tensor, with the serial of the storage each was cast from (autocast.ts). */
  autocastCasts: WeakMap<Tensor, { cast: Tensor; from: number }> | null = null;
  /** The step being checked or recorded by captureStep, or null (capture.ts). */
  capture: CaptureSession | null = null;
  /** True while a captured step's spans are re-issued before a replay. */
  updating = false;
  /** Called with the serial of every storage assign() replaces (captured steps watch for theirs). */
  readonly assignWatchers = new Set<(serial: number) => void>();
  /** xorshift128 state of the host generator that hands out 32-bit keys to random kernels. */
  private rng = new Uint32Array(4);
  /** Live tensor handles per backend (keyed like the byte counts, by backend instance). */
  readonly liveTensors = new Map<Backend, number>();
  /** Bytes of tensor storage alive per backend, and the most seen since the last reset. */
  private readonly liveBytes = new Map<Backend, number>();
  private readonly peakBytes = new Map<Backend, number>();

  constructor() {
    this.seed(0x5eed);
  }

  get backend(): Backend {
    if (!this.current) this.current = cachedBackend('cpu') ?? createSync('cpu');
    return this.current;
  }

  async setBackend(name: string): Promise<Backend> {
    if (typeof name !== 'string') throw opError('setBackend', `expected a backend name string, got ${typeof name}`);
    if (name === 'auto') {
      const { backend, tried } = await resolveAuto();
      this.lastChoice = tried.length
        ? `auto chose '${backend.name}' (${tried.map((t) => `${t.name} ${t.available ? 'skipped' : 'unavailable'}: ${t.reason}`).join('; ')})`
        : `auto chose '${backend.name}', the available backend of highest priority`;
      this.current = backend;
    } else {
      this.current = await instantiateBackend(name);
      this.lastChoice = `'${name}' requested explicitly`;
    }
    return this.current;
  }

  seed(seed: number): void {
    if (!Number.isFinite(seed)) throw opError('manualSeed', `seed must be a finite number, got ${seed}`);
    // splitmix32 expands the seed into a non-zero xorshift state.
    let s = (Math.trunc(seed) >>> 0) ^ 0x9e3779b9;
    for (let i = 0; i < 4; i++) {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.rng[i] = (z ^ (z >>> 16)) >>> 0 || 1;
    }
  }

  /** Next 32-bit key for a counter-based random kernel. */
  nextKey(): number {
    const r = this.rng;
    let t = r[3];
    const s = r[0];
    r[3] = r[2];
    r[2] = r[1];
    r[1] = s;
    t ^= t << 11;
    t ^= t >>> 8;
    r[0] = (t ^ s ^ (s >>> 19)) >>> 0;
    return r[0];
  }

  /** Host-side uniform [0, 1) for decisions made on the host (e.g. block selection). */
  nextFloat(): number {
    return this.nextKey() / 4294967296;
  }

  track(t: Tensor): void {
    const scope = this.scopes[this.scopes.length - 1];
    if (scope) scope.add(t);
    this.liveTensors.set(t.backend, (this.liveTensors.get(t.backend) ?? 0) + 1);
  }

  onAlloc(backend: Backend, bytes: number): void {
    const live = (this.liveBytes.get(backend) ?? 0) + bytes;
    this.liveBytes.set(backend, live);
    if (live > (this.peakBytes.get(backend) ?? 0)) this.peakBytes.set(backend, live);
  }

  peak(backend: Backend): number {
    return this.peakBytes.get(backend) ?? 0;
  }

  resetPeak(backend: Backend): void {
    this.peakBytes.set(backend, this.liveBytes.get(backend) ?? 0);
  }

  untrack(t: Tensor): void {
    for (const s of this.scopes) s.delete(t);
  }

  onDispose(t: Tensor): void {
    this.untrack(t);
    this.liveTensors.set(t.backend, (this.liveTensors.get(t.backend) ?? 1) - 1);
  }
}

export const engine = new Engine();

export function getBackend(): Backend {
  return engine.backend;
}

/** Selects the backend for new tensors: 'cpu', 'webgpu', 'cuda' or 'auto' (the available backend of highest priority: cuda, then webgpu, then cpu). */
export function setBackend(name: 'cpu' | 'webgpu' | 'cuda' | 'auto' | (string & {})): Promise<Backend> {
  return engine.setBackend(name);
}

/** Seeds the generator behind rand, randn, dropout and parameter initialisation. */
/** Why the last setBackend chose what it chose ('auto': each backend passed over and why). */
export function lastBackendChoice(): string {
  return engine.lastChoice;
}

export function manualSeed(seed: number): void {
  engine.seed(seed);
}

export interface MemoryInfo extends BackendMemory {
  readonly backend: string;
  /** Tensor handles alive (views share buffers, so this can exceed `buffers`). */
  readonly tensors: number;
  /** Most bytes of tensor storage alive at once since the last resetPeakMemory(). */
  readonly peakBytes: number;
}

export function memory(backend: Backend = engine.backend): MemoryInfo {
  return { backend: backend.name, tensors: engine.liveTensors.get(backend) ?? 0, peakBytes: engine.peak(backend), ...backend.memory() };
}

/** Starts a new peak-memory measurement (peakBytes restarts from the bytes alive now). */
export function resetPeakMemory(backend: Backend = engine.backend): void {
  engine.resetPeak(backend);
}

/**
 * Sets how float32 matrix products (dense and block-sparse) may compute, as PyTorch's
 * torch.set_float32_matmul_precision: 'highest' (fp32, the default), 'high' (TF32 tensor cores)
 * or 'medium' (BF16 tensor cores), both with fp32 accumulation. Backends without tensor cores
 * (cpu, webgpu) always compute in fp32.
 */
export function setFloat32MatmulPrecision(precision: MatmulPrecision): void {
  if (!MATMUL_PRECISIONS.includes(precision)) {
    throw opError('setFloat32MatmulPrecision', `expected one of ${MATMUL_PRECISIONS.map((p) => `'${p}'`).join(', ')}, got ${JSON.stringify(precision)}`);
  }
  engine.matmulPrecision = precision;
}

export function getFloat32MatmulPrecision(): MatmulPrecision {
  return engine.matmulPrecision;
}

/** Runs fn without recording gradients. */
export function noGrad<T>(fn: () => T): T {
  const prev = engine.gradEnabled;
  engine.gradEnabled = false;
  try {
    return fn();
  } finally {
    engine.gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return engine.gradEnabled;
}
