import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { adamStep, adamSteps, memory, resetPeakMemory, scaleEach, scaleEachInPlace, setBackend, sumOfSquares, tensor, type AdamStepSpec } from '@sparsegrad/core';
import { assertClose, assertThrows, backendsUnderTest, f32, randomArray } from './helpers.ts';

// Lists longer than a GPU launch takes (48 tensors on CUDA), sizes from empty to several blocks,
// and one of over 2^20 floats (WebGPU packs only smaller buffers several to a dispatch).
const SIZES = Array.from({ length: 101 }, (_, i) => (i === 50 ? (1 << 20) + 5 : [0, 1, 7, 33, 1023, 4099][i % 6] + (i % 7)));

for (const backend of await backendsUnderTest()) {
  const test = suite(`optimizer lists [${backend.name}]`);
  test.before(async () => void (await setBackend(backend.name)));
  const T = (d: ArrayLike<number>, shape: number[]) => tensor(Float32Array.from(d), shape, { backend });

  test('sumOfSquares over a list matches a float64 sum, views and empty tensors included', async () => {
    const data = SIZES.map((n, i) => f32(randomArray(n, i + 1, 3)));
    let ref = 0;
    for (const d of data) for (const v of d) ref += v * v;
    const ts = data.map((d, i) => T(d, [SIZES[i]]));
    // A transposed view goes through a contiguous copy first.
    const m = f32(randomArray(35, 99));
    const view = T(m, [5, 7]).transpose(0, 1);
    for (const v of m) ref += v * v;
    const got = await sumOfSquares([...ts, view]).item();
    assert.ok(Math.abs(got - ref) <= 1e-6 * ref, `sumOfSquares ${got} vs ${ref}`);
    assertThrows(() => sumOfSquares([]), /sumOfSquares: expected at least one tensor/);
    assertThrows(() => sumOfSquares([tensor(Int32Array.from([1]), [1], { backend })]), /sumOfSquares: expected a float32 tensor, got int32/);
  });

  test('scaleEach multiplies every tensor by a device scalar', async () => {
    const data = SIZES.map((n, i) => f32(randomArray(n, i + 7)));
    const k = T([-0.37], []);
    const out = scaleEach(data.map((d, i) => T(d, [SIZES[i]])), k);
    for (let i = 0; i < data.length; i++) {
      assertClose(await out[i].toArray(), Array.from(data[i], (v) => Math.fround(v * Math.fround(-0.37))), 0, `tensor ${i}`);
    }
    assertThrows(() => scaleEach([T([1], [1])], T([1, 2], [2])), /scaleEach: factor must hold one element, got shape \[2\]/);
  });

  test('adamSteps over a list equals the update rule in float64, for Adam and AdamW', async () => {
    for (const decoupled of [false, true]) {
      const spec: AdamStepSpec = { lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, decoupled, biasCorrection1: 1 - 0.9 ** 3, biasCorrection2: 1 - 0.99 ** 3 };
      const init = SIZES.map((n, i) => [1, 2, 3, 4].map((s) => f32(randomArray(n, 10 * i + s))));
      const slots = init.map(([p, g, m, v], i) => ({ p: T(p, [SIZES[i]]), g: T(g, [SIZES[i]]), m: T(m, [SIZES[i]]), v: T(v.map(Math.abs), [SIZES[i]]) }));
      adamSteps(slots, spec);
      for (let i = 0; i < init.length; i++) {
        const [p, g, m, v] = init[i];
        const [pr, mr, vr] = [new Float64Array(p.length), new Float64Array(p.length), new Float64Array(p.length)];
        for (let j = 0; j < p.length; j++) {
          const gj = g[j] + (decoupled ? 0 : spec.weightDecay * p[j]);
          mr[j] = spec.beta1 * m[j] + (1 - spec.beta1) * gj;
          vr[j] = spec.beta2 * Math.abs(v[j]) + (1 - spec.beta2) * gj * gj;
          const pd = decoupled ? p[j] * (1 - spec.lr * spec.weightDecay) : p[j];
          pr[j] = pd - (spec.lr / spec.biasCorrection1) * mr[j] / (Math.sqrt(vr[j] / spec.biasCorrection2) + spec.eps);
        }
        assertClose(await slots[i].p.toArray(), pr, 1e-5, `p ${i}`);
        assertClose(await slots[i].m.toArray(), mr, 1e-6, `m ${i}`);
        assertClose(await slots[i].v.toArray(), vr, 1e-6, `v ${i}`);
      }
      // One tensor at a time gives the same values as the list.
      const [p, g, m, v] = init[4];
      const one = { p: T(p, [SIZES[4]]), g: T(g, [SIZES[4]]), m: T(m, [SIZES[4]]), v: T(v.map(Math.abs), [SIZES[4]]) };
      adamStep(one.p, one.g, one.m, one.v, spec);
      assert.equal(await one.p.toArray(), await slots[4].p.toArray());
    }
    adamSteps([], { lr: 1, beta1: 0.9, beta2: 0.9, eps: 1, weightDecay: 0, decoupled: false, biasCorrection1: 1, biasCorrection2: 1 });
  });

  test('list updates run in chunks: each tensor gets its own values, the extra memory is one chunk', async () => {
    // Five tensors of just over 2^21 floats: no two fit one chunk of 2^22, so five chunks.
    const n = (1 << 21) + 3;
    const chunkBytes = 4 * n;
    const spec: AdamStepSpec = { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, decoupled: true, biasCorrection1: 1, biasCorrection2: 1 };
    const slots = [1, 2, 3, 4, 5].map((k) => ({ p: T(new Float32Array(n).fill(k), [n]), g: T(new Float32Array(n).fill(k % 2 ? k : -k), [n]), m: T(new Float32Array(n), [n]), v: T(new Float32Array(n), [n]) }));
    resetPeakMemory(backend);
    const base = memory(backend).peakBytes;
    adamSteps(slots, spec);
    const adamExtra = memory(backend).peakBytes - base;
    assert.ok(adamExtra <= 3 * chunkBytes, `adamSteps needed ${adamExtra} bytes beyond its tensors, expected at most 3 x ${chunkBytes} (one chunk of p, m and v)`);
    for (const [i, s] of slots.entries()) {
      const [k, g] = [i + 1, (i + 1) % 2 ? i + 1 : -(i + 1)];
      const m = 0.1 * g;
      const ref = k - (0.1 * m) / (Math.sqrt(0.01 * g * g) + 1e-8);
      const p = await s.p.toArray();
      assertClose([p[0], p[n - 1]], [ref, ref], 1e-6, `p ${i}`);
      assertClose([(await s.m.toArray())[n - 1]], [m], 1e-6, `m ${i}`);
    }
    const grads = slots.map((s) => s.g);
    resetPeakMemory(backend);
    const base2 = memory(backend).peakBytes;
    scaleEachInPlace(grads, T([0.5], []));
    const scaleExtra = memory(backend).peakBytes - base2;
    assert.ok(scaleExtra <= chunkBytes + 64, `scaleEachInPlace needed ${scaleExtra} bytes beyond its tensors, expected at most one chunk (${chunkBytes})`);
    for (const [i, g] of grads.entries()) {
      const a = await g.toArray();
      const want = 0.5 * ((i + 1) % 2 ? i + 1 : -(i + 1));
      assertClose([a[0], a[n - 1]], [want, want], 0, `g ${i}`);
    }
    for (const s of slots) for (const t of [s.p, s.g, s.m, s.v]) t.dispose();
  });

  test.run();
}
