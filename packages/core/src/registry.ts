import { KERNELS, type Backend } from './backend.ts';
import { opError } from './errors.ts';
import { withHalfFallback } from './half-fallback.ts';

/** How a backend is created. `create` throws (with a reason) when the backend cannot run here. */
export interface BackendEntry {
  readonly name: string;
  /** 'auto' tries backends from the highest priority down (cuda 2, webgpu 1, cpu 0). */
  readonly priority: number;
  create(): Backend | Promise<Backend>;
}

export interface BackendStatus {
  readonly name: string;
  readonly available: boolean;
  readonly reason?: string;
  readonly device?: string;
  /** The device is emulated in software ('auto' skips it). */
  readonly software?: boolean;
}

/**
 * GPU backends live in their own packages; core imports them lazily by name so that
 * `setBackend('webgpu')` works without the user importing the package, and a missing package is
 * reported as an unavailable backend instead of a crash.
 */
const OPTIONAL_PACKAGES: Record<string, string> = {
  cuda: '@sparsegrad/cuda',
  webgpu: '@sparsegrad/webgpu',
};

const entries = new Map<string, BackendEntry>();
const instances = new Map<string, Backend>();
const failures = new Map<string, string>();

export function registerBackend(entry: BackendEntry): void {
  if (entries.has(entry.name)) throw opError('registerBackend', `a backend named '${entry.name}' is already registered`);
  entries.set(entry.name, entry);
}

export function knownBackendNames(): string[] {
  return [...new Set([...Object.keys(OPTIONAL_PACKAGES), ...entries.keys()])];
}

async function loadOptionalPackage(name: string): Promise<void> {
  const spec = OPTIONAL_PACKAGES[name];
  if (!spec || entries.has(name)) return;
  try {
    await import(spec);
  } catch (e) {
    failures.set(name, `package ${spec} could not be loaded (${(e as Error).message.split('\n')[0]})`);
  }
}

function checkCoverage(backend: Backend): void {
  const missing = KERNELS.filter((k) => typeof (backend as unknown as Record<string, unknown>)[k] !== 'function');
  if (missing.length) throw new Error(`backend '${backend.name}' does not implement: ${missing.join(', ')}`);
  if (!backend.dtypes?.includes('float32') || !backend.dtypes.includes('int32'))
    throw new Error(`backend '${backend.name}' must hold float32 and int32 (its dtypes: ${String(backend.dtypes)})`);
}

/** Creates (once) and returns the backend, or throws an Error saying why it is unavailable. */
export async function instantiateBackend(name: string): Promise<Backend> {
  const existing = instances.get(name);
  if (existing) return existing;
  if (!knownBackendNames().includes(name)) {
    throw opError('setBackend', `unknown backend '${name}'; expected one of ${[...knownBackendNames(), 'auto'].join(', ')}`);
  }
  await loadOptionalPackage(name);
  const entry = entries.get(name);
  if (!entry) throw opError('setBackend', `backend '${name}' is not available: ${failures.get(name) ?? 'not registered'}`);
  let backend: Backend;
  try {
    backend = withHalfFallback(await entry.create());
    checkCoverage(backend);
  } catch (e) {
    const reason = (e as Error).message;
    failures.set(name, reason);
    throw opError('setBackend', `backend '${name}' is not available: ${reason}`);
  }
  instances.set(name, backend);
  return backend;
}

/** Synchronous access for backends that are already created (the CPU backend always is). */
export function cachedBackend(name: string): Backend | undefined {
  return instances.get(name);
}

export function createSync(name: string): Backend {
  const entry = entries.get(name);
  if (!entry) throw opError('getBackend', `backend '${name}' is not registered`);
  const b = entry.create();
  if (b instanceof Promise) throw opError('getBackend', `backend '${name}' must be created with await setBackend('${name}')`);
  checkCoverage(b);
  const backend = withHalfFallback(b);
  instances.set(name, backend);
  return backend;
}

/**
 * Resolves 'auto' to the first available backend in order of priority (the optional GPU packages
 * are loaded first, so that they register theirs). A backend on an emulated device (a software
 * Vulkan driver) is passed over: the CPU backend is faster than emulation.
 */
export async function resolveAuto(): Promise<{ backend: Backend; tried: BackendStatus[] }> {
  const tried: BackendStatus[] = [];
  for (const name of Object.keys(OPTIONAL_PACKAGES)) await loadOptionalPackage(name);
  const registered = [...entries.values()].sort((a, b) => b.priority - a.priority).map((e) => e.name);
  const unloaded = knownBackendNames().filter((n) => !entries.has(n));
  for (const name of [...unloaded, ...registered]) {
    try {
      const backend = await instantiateBackend(name);
      if (backend.device.software && name !== 'cpu') {
        tried.push({ name, available: true, reason: `only a software device (${backend.device.description}); pick it explicitly to use it` });
        continue;
      }
      return { backend, tried };
    } catch (e) {
      tried.push({ name, available: false, reason: failures.get(name) ?? (e as Error).message });
    }
  }
  throw opError('setBackend', `no backend is available: ${tried.map((t) => `${t.name}: ${t.reason}`).join('; ')}`);
}

/** Lists every known backend with its availability (creating each to find out). */
export async function backends(): Promise<BackendStatus[]> {
  const out: BackendStatus[] = [];
  for (const name of knownBackendNames()) {
    try {
      const b = await instantiateBackend(name);
      out.push({ name, available: true, device: b.device.description, software: !!b.device.software });
    } catch {
      out.push({ name, available: false, reason: failures.get(name) ?? 'unknown' });
    }
  }
  return out;
}
