import * as assert from 'uvu/assert';
import {
  adamStep,
  adamSteps,
  memory,
  resetPeakMemory,
  scaleEach,
  scaleEachInPlace,
  setBackend,
  sumOfSquares,
  tensor,
  type AdamStepSpec,
} from '@sparsegrad/core';
import { assertClose, assertThrows, backendSuites, f32, randomArray } from './helpers.ts';

// Lists longer than a GPU launch takes (48 tensors on CUDA), sizes from empty to several blocks,
// and one of over 2^20 floats (WebGPU packs only smaller buffers several to a dispatch).
const SIZES = Array.from({ length: 101 }, (_, i) => (i === 50 ? (1 << 20) + 5 : [0, 1, 7, 33, 1023, 4099][i % 6] + (i % 7)));

for (const { backend, test } of await backendSuites('optimizer lists')) {
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
    assertThrows(
      () => sumOfSquares([tensor(Int32Array.from([1]), [1], { backend })]),
      /sumOfSquares: expected a floating-point tensor \(float32, bfloat16 or float16\), got int32/,
    );
  });

  test('scaleEach multiplies every tensor by a device scalar', async () => {
    const data = SIZES.map((n, i) => f32(randomArray(n, i + 7)));
    const k = T([-0.37], []);
    const out = scaleEach(
      data.map((d, i) => T(d, [SIZES[i]])),
      k,
    );
    for (let i = 0; i < data.length; i++) {
      assertClose(
        await out[i].toArray(),
        Array.from(data[i], (v) => Math.fround(v * Math.fround(-0.37))),
        0,
        `tensor ${i}`,
      );
    }
    assertThrows(() => scaleEach([T([1], [1])], T([1, 2], [2])), /scaleEach: factor must hold one element, got shape \[2\]/);
  });

  test('adamSteps over a list equals the update rule in float64, for Adam and AdamW', async () => {
    for (const decoupled of [false, true]) {
      const spec: AdamStepSpec = {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weightDecay: 0.1,
        decoupled,
        biasCorrection1: 1 - 0.9 ** 3,
        biasCorrection2: 1 - 0.99 ** 3,
      };
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
          pr[j] = pd - ((spec.lr / spec.biasCorrection1) * mr[j]) / (Math.sqrt(vr[j] / spec.biasCorrection2) + spec.eps);
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

  test('adamSteps updates tensors that own their buffers in place: same buffers, same values, no memory', async () => {
    const spec: AdamStepSpec = {
      lr: 0.05,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      decoupled: true,
      biasCorrection1: 0.1,
      biasCorrection2: 0.001,
    };
    const init = [1, 2, 3, 4].map((s) => f32(randomArray(1029, 40 + s)));
    const make = () => ({ p: T(init[0], [1029]), g: T(init[1], [1029]), m: T(init[2], [1029]), v: T(init[3].map(Math.abs), [1029]) });
    const own = make();
    const shared = make();
    const view = shared.p.detach(); // forces the fresh-buffer path for `shared`
    const buffers = [own.p, own.m, own.v].map((t) => t.bufferFor('test'));
    resetPeakMemory(backend);
    const base = memory(backend).peakBytes;
    adamSteps([own], spec);
    assert.is(memory(backend).peakBytes, base, 'an in-place update allocates nothing');
    adamSteps([shared], spec);
    [own.p, own.m, own.v].forEach((t, i) => assert.ok(t.bufferFor('test') === buffers[i], 'same buffer after the update'));
    assert.ok(shared.p.bufferFor('test') !== view.bufferFor('test'), 'a shared parameter gets a fresh buffer');
    for (const k of ['p', 'm', 'v'] as const) assert.equal(await own[k].toArray(), await shared[k].toArray(), `${k}: in place and fresh agree`);
    assertClose(await view.toArray(), init[0], 0, 'the view keeps the old values');
    for (const t of [...Object.values(own), ...Object.values(shared), view]) t.dispose();
  });

  test('list updates run in chunks: each tensor gets its own values, the extra memory is one chunk', async () => {
    // Five tensors of just over 2^21 floats: no two fit one chunk of 2^22, so five chunks.
    const n = (1 << 21) + 3;
    const chunkBytes = 4 * n;
    const spec: AdamStepSpec = { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, decoupled: true, biasCorrection1: 1, biasCorrection2: 1 };
    const slots = [1, 2, 3, 4, 5].map((k) => ({
      p: T(new Float32Array(n).fill(k), [n]),
      g: T(new Float32Array(n).fill(k % 2 ? k : -k), [n]),
      m: T(new Float32Array(n), [n]),
      v: T(new Float32Array(n), [n]),
    }));
    // Views of the parameters held elsewhere: the update must not write under them, so it takes
    // fresh buffers (in chunks) instead of working in place.
    const views = slots.map((s) => s.p.detach());
    resetPeakMemory(backend);
    const base = memory(backend).peakBytes;
    adamSteps(slots, spec);
    const adamExtra = memory(backend).peakBytes - base;
    // One chunk of new p, m and v at a time, plus the old p of every slot, which its view keeps.
    assert.ok(
      adamExtra <= (3 + 5) * chunkBytes,
      `adamSteps needed ${adamExtra} bytes beyond its tensors, expected at most (3 + 5) x ${chunkBytes} (one chunk of p, m and v; the old values the views hold)`,
    );
    for (const [i, s] of slots.entries()) {
      const [k, g] = [i + 1, (i + 1) % 2 ? i + 1 : -(i + 1)];
      const m = 0.1 * g;
      const ref = k - (0.1 * m) / (Math.sqrt(0.01 * g * g) + 1e-8);
      const p = await s.p.toArray();
      assertClose([p[0], p[n - 1]], [ref, ref], 1e-6, `p ${i}`);
      assertClose([(await s.m.toArray())[n - 1]], [m], 1e-6, `m ${i}`);
      assertClose([(await views[i].toArray())[n - 1]], [k], 0, `the view of p ${i} keeps the old values`);
    }
    views.forEach((v) => v.dispose());
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
