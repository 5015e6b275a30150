/**
 * Shared test helpers. Suites are written once as functions of a backend and registered for every
 * backend in SPARSEGRAD_TEST_BACKENDS (comma-separated, default "cpu"). A backend that cannot run
 * here still registers its tests, as skipped with the reason, so the closing line's count is true.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { backends, setBackend, type Tensor, tensor, tidy, noGrad, type Backend, type BlockLayout, type BackendStatus } from '@sparsegrad/core';

export type Test = ReturnType<typeof suite>;

/**
 * A uvu test function for tests that cannot run here: each test it registers counts as skipped
 * (uvu's test.skip), hooks never run, and the suite's title carries the reason in short.
 */
export function skippedSuite(title: string, reason: string): Test {
  const s = suite(`${title} (skipped: ${reason.split(/[:;(]/)[0].trim()})`);
  const skip = () => s.skip();
  const noop = Object.assign(() => {}, { each: () => {} });
  return Object.assign(skip, { before: noop, after: noop, only: skip, skip, run: () => s.run() }) as unknown as Test;
}

/** A suite of tests that need `name`'s backend: real when it is available, otherwise skipped with the reason. */
export function deviceSuite(title: string, status: BackendStatus | undefined): Test {
  if (status?.available) return suite(title);
  console.log(`  skipping ${title}: ${status?.reason ?? 'backend not registered'}`);
  return skippedSuite(title, status?.reason ?? 'backend not registered');
}

/** Stands in for a backend that is not available: its tests are skipped, so nothing but its name may be read. */
function unavailableBackend(name: string): Backend {
  return new Proxy({} as Backend, {
    get(_, key) {
      if (key === 'name') return name;
      throw new Error(`test setup touched the unavailable backend '${name}' (${String(key)}) outside a test body`);
    },
  });
}

/** One suite per backend under test, titled `title [name]`; unavailable backends get skipped suites. */
export async function backendSuites(title: string): Promise<{ backend: Backend; test: Test }[]> {
  const out: { backend: Backend; test: Test }[] = [];
  for (const name of testBackendNames()) {
    try {
      const backend = await setBackend(name);
      poisonIfAsked(backend);
      out.push({ backend, test: suite(`${title} [${name}]`) });
    } catch (e) {
      const status = (await backends()).find((b) => b.name === name);
      const reason = status?.reason ?? (e as Error).message;
      console.log(`  skipping ${title} [${name}]: ${reason}`);
      out.push({ backend: unavailableBackend(name), test: skippedSuite(`${title} [${name}]`, reason) });
    }
  }
  return out;
}

/**
 * SPARSEGRAD_TEST_POISON=1 (tests only, e.g. scripts/gpu-host-cuda.sh) has a backend that can
 * fill new buffers with NaN do so, so that an output element a kernel fails to write fails a test.
 */
function poisonIfAsked(backend: Backend): void {
  const tunable = backend as Backend & { setTuning?: (t: { poison: boolean }) => unknown };
  if (process.env.SPARSEGRAD_TEST_POISON === '1' && typeof tunable.setTuning === 'function' && backend.name === 'cuda') tunable.setTuning({ poison: true });
}

function testBackendNames(): string[] {
  return (process.env.SPARSEGRAD_TEST_BACKENDS ?? 'cpu')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * The seed of a randomized test: SPARSEGRAD_TEST_SEED when set (to reproduce a failure), else
 * fresh from the clock. Tests put it in every failure message.
 */
export function testSeed(): number {
  const fixed = process.env.SPARSEGRAD_TEST_SEED;
  if (fixed === undefined || fixed === '') return Date.now() % 1e9;
  const seed = Number(fixed);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`SPARSEGRAD_TEST_SEED must be a non-negative integer, got '${fixed}'`);
  return seed;
}

/** A deterministic pseudo-random float64 array (independent of the library's generator). */
export function randomArray(n: number, seed: number, scale = 1): Float64Array {
  let s = seed >>> 0 || 1;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** Rounds float64 data through float32 so that references see exactly the tensor's inputs. */
export function f32(data: ArrayLike<number>): Float64Array {
  return Float64Array.from(Float32Array.from(data as ArrayLike<number>));
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-5, what = ''): void {
  assert.is(actual.length, expected.length, `${what} length`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (a === e) continue;
    const err = Math.abs(a - e) / (1 + Math.abs(e));
    if (Number.isNaN(err) || err > worst) {
      worst = Number.isNaN(err) ? Infinity : err;
      at = i;
    }
  }
  if (!(worst <= tol)) {
    assert.unreachable(`${what} mismatch at ${at}: got ${actual[at]}, expected ${expected[at]} (relative error ${worst}, tolerance ${tol})`);
  }
}

export async function assertTensorClose(t: Tensor, expected: ArrayLike<number>, tol = 1e-5, what = ''): Promise<void> {
  assertClose(await t.toArray(), expected, tol, what);
}

/** Row-major strides/indices helpers for references. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}
export const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Finite-difference gradient check: compares the autograd gradient of L = sum(f(inputs) * r)
 * (r random, fixed) with central differences of L in float32 on the backend under test.
 */
export async function gradCheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: { data: ArrayLike<number>; shape: number[] }[],
  opts: { eps?: number; tol?: number; backend?: Backend; check?: boolean[] } = {},
): Promise<void> {
  const eps = opts.eps ?? 1e-2;
  const tol = opts.tol ?? 2e-2;
  const mk = (d: ArrayLike<number>, shape: number[], grad: boolean) =>
    tensor(Float32Array.from(d as ArrayLike<number>), shape, { backend: opts.backend, requiresGrad: grad });
  const ts = inputs.map((x, i) => mk(x.data, x.shape, opts.check?.[i] ?? true));
  const out0 = noGrad(() => f(...ts));
  const r = tensor(Float32Array.from(randomArray(out0.size, 99)), [...out0.shape], { backend: opts.backend });
  out0.dispose();
  tidy(() =>
    f(...ts)
      .mul(r)
      .sum()
      .backward(),
  );
  const lossAt = async (xs: Tensor[]) => {
    const l = noGrad(() =>
      tidy(() =>
        f(...xs)
          .mul(r)
          .sum(),
      ),
    );
    const v = await l.item();
    l.dispose();
    return v;
  };
  for (let k = 0; k < inputs.length; k++) {
    if (!(opts.check?.[k] ?? true)) continue;
    const analytic = await ts[k].grad!.toArray();
    const base = Float32Array.from(inputs[k].data as ArrayLike<number>);
    const numeric = new Float64Array(base.length);
    for (let i = 0; i < base.length; i++) {
      const shifted = (delta: number) => {
        const d = base.slice();
        d[i] += delta;
        return ts.map((t, j) => (j === k ? mk(d, inputs[k].shape, false) : t));
      };
      const plus = shifted(eps);
      const minus = shifted(-eps);
      numeric[i] = ((await lossAt(plus)) - (await lossAt(minus))) / (2 * eps);
      plus[k].dispose();
      minus[k].dispose();
    }
    assertClose(analytic, numeric, tol, `gradient of input ${k}`);
  }
  for (const t of [...ts, r]) t.dispose();
}

export function assertThrows(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof Error, 'throws an Error');
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected an error matching ${pattern}`);
}

export async function assertRejects(fn: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof Error, 'rejects with an Error');
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a rejection matching ${pattern}`);
}

/** ||got - ref|| / ||ref|| over all elements: the error measure of the reduced-precision products. */
export function relativeError(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let j = 0; j < ref.length; j++) {
    num += (got[j] - ref[j]) ** 2;
    den += ref[j] ** 2;
  }
  return Math.sqrt(num / den);
}

/**
 * float64 references of the block-sparse trio from a layout's block list: Y = X W^T [m, rows],
 * dX = dY W [m, cols] and dW = dY^T X on the stored blocks (block b at b * bs * bs).
 */
export function blockSparseRefs(
  L: BlockLayout,
  w: ArrayLike<number>,
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  m: number,
): { y: Float64Array; dx: Float64Array; dw: Float64Array } {
  const { rows, cols, blockSize: bs } = L;
  const y = new Float64Array(m * rows);
  const dx = new Float64Array(m * cols);
  const dw = new Float64Array(L.nnzBlocks * bs * bs);
  for (let b = 0; b < L.nnzBlocks; b++) {
    const [r0, c0] = [L.rowIdx[b] * bs, L.colIdx[b] * bs];
    for (let t = 0; t < m; t++)
      for (let r = 0; r < bs; r++)
        for (let c = 0; c < bs; c++) {
          const wv = w[(b * bs + r) * bs + c];
          y[t * rows + r0 + r] += x[t * cols + c0 + c] * wv;
          dx[t * cols + c0 + c] += dy[t * rows + r0 + r] * wv;
          dw[(b * bs + r) * bs + c] += dy[t * rows + r0 + r] * x[t * cols + c0 + c];
        }
  }
  return { y, dx, dw };
}
