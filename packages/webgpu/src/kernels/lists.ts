/**
 * The optimizer's list kernels: Adam(W) in place packs small parameters several to a dispatch
 * (a bind group holds a fixed set of buffers), sum of squares (partials, then one sum) and
 * scaling for gradient clipping.
 */
import type { Backend } from '@sparsegrad/core';
import { adamCoefficients } from '@sparsegrad/core/backend';
import { G, MAX_GROUPS_X, WG, u, type Param } from '../context.ts';
import { COUNT_WORD } from '../uniforms.ts';
import { PARAMS } from '../wgsl.ts';
import { HEAD, PER_THREAD, perElement, perElementThreads, type KernelHost } from './common.ts';

/** Buffers up to this many floats are packed several to a dispatch by the list kernels. */
const PACK_MAX_FLOATS = 1 << 20;
/** Elements per workgroup of the sum-of-squares partials. */
const SUMSQ_CHUNK = 8192;

export function listKernels(h: KernelHost): Pick<Backend, 'adamStep' | 'sumOfSquares' | 'scaleBuffers'> {
  const { ctx, pipe, storageBuffers } = h;
  /** A kernel over `count` buffers of a list (see packs()), cached per count. */
  const packedKernel = (name: string, count: number, wgsl: (count: number) => string) => pipe(`${name}|${count}`, () => wgsl(count));
  return {
    adamStep(list, spec) {
      // A bind group holds a fixed set of buffers, so a list cannot go to one dispatch as it does
      // on CUDA: in place (outputs = inputs, what core asks for in training), parameters of up to
      // PACK_MAX_FLOATS go as many to a dispatch as the bind group holds (4 buffers each: two with
      // 10 bindings), larger ones alone; otherwise one dispatch per parameter (7 buffers). In place
      // needs its own kernel: a buffer may not be bound twice where one binding is writable.
      const { coupled, shrink, step } = adamCoefficients(spec);
      const values: Record<AdamCoefficient, number> = { coupled, shrink, beta1: spec.beta1, beta2: spec.beta2, step, bc2: spec.biasCorrection2, eps: spec.eps };
      const coefficients: Param[] = ADAM_COEFFICIENTS.map((name) => ({ f32: values[name] }));
      const live = list.filter((t) => t.size > 0);
      const inPlace = live.filter((t) => t.pOut === t.p && t.mOut === t.m && t.vOut === t.v);
      const chunk = WG * PER_THREAD;
      for (const pack of packs(inPlace, (t) => t.size, Math.floor(storageBuffers / 4))) {
        const firsts = prefix(pack.map((t) => Math.ceil(t.size / chunk)));
        const groups = firsts[pack.length];
        const params = [
          ...packWords(
            0,
            pack.map((t) => t.size),
            firsts,
          ),
          ...coefficients,
        ];
        ctx.dispatchGrid(
          'adamStep',
          packedKernel('adamStepInPlace', pack.length, adamInPlaceWgsl),
          pack.flatMap((t) => [t.p, t.g, t.m, t.v].map(G)),
          params,
          [Math.min(groups, MAX_GROUPS_X), Math.ceil(groups / MAX_GROUPS_X), 1],
        );
      }
      const pipeline = pipe(
        'adamStep',
        () =>
          `${HEAD(`@group(0) @binding(1) var<storage, read> Pin: array<f32>;
@group(0) @binding(2) var<storage, read> Gr: array<f32>;
@group(0) @binding(3) var<storage, read> Min: array<f32>;
@group(0) @binding(4) var<storage, read> Vin: array<f32>;
@group(0) @binding(5) var<storage, read_write> Po: array<f32>;
@group(0) @binding(6) var<storage, read_write> Mo: array<f32>;
@group(0) @binding(7) var<storage, read_write> Vo: array<f32>;`)}\n${ADAM_WGSL}\n${perElement(`
    let r = adam(Pin[i], Gr[i], Min[i], Vin[i], ${COUNT_WORD + 1}u); // the coefficients follow the count
    Po[i] = r.x; Mo[i] = r.y; Vo[i] = r.z;`)}`,
      );
      const packed = new Set(inPlace);
      for (const t of live) {
        if (packed.has(t)) continue;
        const { p, g, m, v, size, pOut, mOut, vOut } = t;
        ctx.dispatch('adamStep', pipeline, [p, g, m, v, pOut, mOut, vOut].map(G), [u(size), ...coefficients], perElementThreads(size)); // COUNT_WORD, then the coefficients
      }
    },
    sumOfSquares(xs, sizes, out) {
      // Partial sums per chunk of SUMSQ_CHUNK elements into one list, then one sum over it. Small
      // buffers go several to a dispatch (as many as a bind group may hold), large ones alone.
      const items = xs.map((x, i) => ({ x: G(x), n: sizes[i], parts: Math.ceil(sizes[i] / SUMSQ_CHUNK) })).filter((t) => t.n > 0);
      const total = items.reduce((a, t) => a + t.parts, 0);
      if (total === 0) return h.backend().fill(out, 1, 0);
      const partial = ctx.alloc(total, 'float32');
      let at = 0;
      for (const pack of packs(items, (t) => t.n, storageBuffers - 1)) {
        const firsts = prefix(pack.map((t) => t.parts));
        const groups = firsts[pack.length];
        const params = packWords(
          at,
          pack.map((t) => t.n),
          firsts,
        );
        ctx.dispatchGrid('sumOfSquares', packedKernel('sumOfSquares', pack.length, sumOfSquaresWgsl), [...pack.map((t) => t.x), partial], params, [
          Math.min(groups, MAX_GROUPS_X),
          Math.ceil(groups / MAX_GROUPS_X),
          1,
        ]);
        at += groups;
      }
      h.backend().reduce('sum', partial, 1, total, 1, out);
      ctx.free(partial); // reuse is ordered after these dispatches on the queue
    },
    scaleBuffers(xs, sizes, factor, outs) {
      const chunk = WG * PER_THREAD;
      const items = xs.map((x, i) => ({ x: G(x), y: G(outs[i]), n: sizes[i], parts: Math.ceil(sizes[i] / chunk) })).filter((t) => t.n > 0);
      // Inputs and outputs of a pack plus the factor share the bind group's storage buffers.
      for (const pack of packs(items, (t) => t.n, Math.floor((storageBuffers - 1) / 2))) {
        const firsts = prefix(pack.map((t) => t.parts));
        const groups = firsts[pack.length];
        const params = packWords(
          0,
          pack.map((t) => t.n),
          firsts,
        );
        ctx.dispatchGrid(
          'scaleBuffers',
          packedKernel('scaleBuffers', pack.length, scaleBuffersWgsl),
          [G(factor), ...pack.map((t) => t.x), ...pack.map((t) => t.y)],
          params,
          [Math.min(groups, MAX_GROUPS_X), Math.ceil(groups / MAX_GROUPS_X), 1],
        );
      }
    },
  };
}

/**
 * A list's buffers in dispatches: up to `per` buffers of at most PACK_MAX_FLOATS floats share one
 * (a bind group holds a fixed number of buffers, so a whole list cannot go to one dispatch as it
 * does on CUDA); larger ones go alone.
 */
function packs<T>(items: readonly T[], size: (t: T) => number, per: number): T[][] {
  const out: T[][] = [];
  let open: T[] = [];
  for (const t of items) {
    if (size(t) > PACK_MAX_FLOATS) {
      out.push([t]);
      continue;
    }
    open.push(t);
    if (open.length === per) {
      out.push(open);
      open = [];
    }
  }
  if (open.length) out.push(open);
  return out;
}

/** [0, a, a + b, ...]: the first workgroup of each buffer of a pack, and the total last. */
function prefix(counts: readonly number[]): number[] {
  const out = [0];
  for (const c of counts) out.push(out[out.length - 1] + c);
  return out;
}

/**
 * A pack's uniform words: `base` (where sumOfSquares writes its partials), per buffer i its length
 * and first workgroup, the workgroups of all of them, then the kernel's own words (Adam's
 * coefficients) from `after`.
 */
const PACK = {
  base: 0,
  size: (i: number) => 1 + 2 * i,
  first: (i: number) => 2 + 2 * i,
  groups: (count: number) => 1 + 2 * count,
  after: (count: number) => 2 + 2 * count,
} as const;

/** A pack's words for buffers of `sizes` whose workgroups start at `firsts` (prefix: the total last). */
function packWords(base: number, sizes: readonly number[], firsts: readonly number[]): Param[] {
  const words: Param[] = [];
  words[PACK.base] = u(base);
  sizes.forEach((n, i) => {
    words[PACK.size(i)] = u(n);
    words[PACK.first(i)] = u(firsts[i]);
  });
  words[PACK.groups(sizes.length)] = u(firsts[sizes.length]);
  return words;
}

/**
 * The buffer `i` (of `count`) that workgroup `w` works on and its first element, from the PACK
 * words; the grid may be 2-D, its last row partly idle.
 */
function packedHead(count: number, chunk: number): string {
  return `let w = wg.x + wg.y * ${MAX_GROUPS_X}u;
  if (w >= p(${PACK.groups(count)}u)) { return; }
  var i = 0u;
  for (var j = 1u; j < ${count}u; j++) { if (w >= p(${PACK.first(0)}u + 2u * j)) { i = j; } }
  let n = p(${PACK.size(0)}u + 2u * i);
  let start = (w - p(${PACK.first(0)}u + 2u * i)) * ${chunk}u;`;
}

/** Sum of squares of one SUMSQ_CHUNK of buffer X<i> into Part[base + workgroup]. */
function sumOfSquaresWgsl(count: number): string {
  const cases = Array.from(
    { length: count },
    (_, k) => `case ${k}u: { for (var j = start + l; j < end; j += ${WG}u) { let v = X${k}[j]; acc += v * v; } }`,
  ).join('\n    ');
  return `${PARAMS}
${Array.from({ length: count }, (_, k) => `@group(0) @binding(${k + 1}) var<storage, read> X${k}: array<f32>;`).join('\n')}
@group(0) @binding(${count + 1}) var<storage, read_write> Part: array<f32>;
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  ${packedHead(count, SUMSQ_CHUNK)}
  let end = min(n, start + ${SUMSQ_CHUNK}u);
  var acc = 0.0;
  switch i {
    ${cases}
    default: {}
  }
  red[l] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) { if (l < s) { red[l] += red[l + s]; } workgroupBarrier(); }
  if (l == 0u) { Part[p(${PACK.base}u) + w] = red[0]; }
}`;
}

/** Adam's coefficients in their order among the uniform words (core's adamCoefficients; bc2 = 1 - beta2^t). */
const ADAM_COEFFICIENTS = ['coupled', 'shrink', 'beta1', 'beta2', 'step', 'bc2', 'eps'] as const;
type AdamCoefficient = (typeof ADAM_COEFFICIENTS)[number];
/** Coefficient `name` of the block starting at word `c` (a WGSL u32 expression). */
const coefficient = (name: AdamCoefficient) => `pf(c + ${ADAM_COEFFICIENTS.indexOf(name)}u)`;

/** One Adam(W) update of an element: p, g, m, v in, (p', m', v') out; its coefficients from word c. */
const ADAM_WGSL = /* wgsl */ `
fn adam(pv: f32, gr: f32, mv: f32, vv: f32, c: u32) -> vec3<f32> {
  let beta1 = ${coefficient('beta1')}; let beta2 = ${coefficient('beta2')};
  let gi = gr + ${coefficient('coupled')} * pv;
  let mi = beta1 * mv + (1.0 - beta1) * gi;
  let vi = beta2 * vv + (1.0 - beta2) * gi * gi;
  return vec3<f32>(pv * ${coefficient('shrink')} - ${coefficient('step')} * mi / (sqrt(vi / ${coefficient('bc2')}) + ${coefficient('eps')}), mi, vi);
}`;

/**
 * One Adam(W) step in place over one chunk of WG * PER_THREAD elements of parameter <i> (buffers
 * P, G, M, V); the coefficients follow packedHead's params, as adamStep's separate kernel takes them.
 */
function adamInPlaceWgsl(count: number): string {
  const c = PACK.after(count); // the first coefficient (ADAM_WGSL), after the pack's words
  const cases = Array.from(
    { length: count },
    (_, k) => `case ${k}u: { for (var j = start + l; j < end; j += ${WG}u) {
      let r = adam(P${k}[j], G${k}[j], M${k}[j], V${k}[j], ${c}u); P${k}[j] = r.x; M${k}[j] = r.y; V${k}[j] = r.z; } }`,
  ).join('\n    ');
  const bind = (k: number, i: number, name: string, access: string) => `@group(0) @binding(${4 * k + i + 1}) var<storage, ${access}> ${name}${k}: array<f32>;`;
  return `${PARAMS}
${ADAM_WGSL}
${Array.from({ length: count }, (_, k) => [bind(k, 0, 'P', 'read_write'), bind(k, 1, 'G', 'read'), bind(k, 2, 'M', 'read_write'), bind(k, 3, 'V', 'read_write')].join('\n')).join('\n')}
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  ${packedHead(count, WG * PER_THREAD)}
  let end = min(n, start + ${WG * PER_THREAD}u);
  switch i {
    ${cases}
    default: {}
  }
}`;
}

/** Y<i> = X<i> * F[0] over one chunk of WG * PER_THREAD elements. */
function scaleBuffersWgsl(count: number): string {
  const cases = Array.from({ length: count }, (_, k) => `case ${k}u: { for (var j = start + l; j < end; j += ${WG}u) { Y${k}[j] = X${k}[j] * k; } }`).join(
    '\n    ',
  );
  return `${PARAMS}
@group(0) @binding(1) var<storage, read> F: array<f32>;
${Array.from({ length: count }, (_, k) => `@group(0) @binding(${k + 2}) var<storage, read> X${k}: array<f32>;`).join('\n')}
${Array.from({ length: count }, (_, k) => `@group(0) @binding(${count + k + 2}) var<storage, read_write> Y${k}: array<f32>;`).join('\n')}
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  ${packedHead(count, WG * PER_THREAD)}
  let end = min(n, start + ${WG * PER_THREAD}u);
  let k = F[0];
  switch i {
    ${cases}
    default: {}
  }
}`;
}
/** Elements per workgroup of the sum-of-squares partials. */
