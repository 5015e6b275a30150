import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as sg from '@sparsegrad/core';
import { createCpuBackend } from '@sparsegrad/core/backend';
import { setBackend } from '@sparsegrad/core';
import { tensor } from '@sparsegrad/core';
import { assertClose, assertThrows, backendSuites, f32, gradCheck, randomArray, size, strides } from './helpers.ts';

/** Float64 reduction reference over arbitrary axes. */
function refReduce(x: ArrayLike<number>, shape: number[], axes: number[], fn: 'sum' | 'max' | 'min' | 'argmax'): { out: number[]; shape: number[] } {
  const outShape = shape.filter((_, i) => !axes.includes(i));
  const groups = new Map<number, number[]>();
  const st = strides(shape);
  const ost = strides(outShape);
  for (let i = 0; i < x.length; i++) {
    let o = 0;
    let k = 0;
    shape.forEach((d, dim) => {
      const idx = Math.floor(i / st[dim]) % d;
      if (!axes.includes(dim)) o += idx * ost[k++];
    });
    (groups.get(o) ?? groups.set(o, []).get(o)!).push(x[i]);
  }
  const out = [...Array(size(outShape)).keys()].map((o) => {
    const g = groups.get(o)!;
    if (fn === 'sum') return g.reduce((a, b) => a + b, 0);
    if (fn === 'max') return Math.max(...g);
    if (fn === 'min') return Math.min(...g);
    return g.indexOf(Math.max(...g));
  });
  return { out, shape: outShape };
}

/** Batched matmul reference with batch broadcasting. */
function refMatmul(a: ArrayLike<number>, as: number[], b: ArrayLike<number>, bs: number[]) {
  const [m, k] = as.slice(-2);
  const n = bs[bs.length - 1];
  const ab = as.slice(0, -2);
  const bb = bs.slice(0, -2);
  const rank = Math.max(ab.length, bb.length);
  const pa = [...Array(rank - ab.length).fill(1), ...ab];
  const pb = [...Array(rank - bb.length).fill(1), ...bb];
  const batch = pa.map((d, i) => (d === 1 ? pb[i] : d));
  const out = new Float64Array(size(batch) * m * n);
  const bst = strides(batch);
  for (let t = 0; t < size(batch); t++) {
    let ia = 0;
    let ib = 0;
    const sa = strides(pa);
    const sb = strides(pb);
    batch.forEach((d, dim) => {
      const idx = Math.floor(t / bst[dim]) % d;
      ia += (pa[dim] === 1 ? 0 : idx) * sa[dim];
      ib += (pb[dim] === 1 ? 0 : idx) * sb[dim];
    });
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[ia * m * k + i * k + p] * b[ib * k * n + p * n + j];
        out[t * m * n + i * n + j] = s;
      }
  }
  return { out, shape: [...batch, m, n] };
}

for (const { backend, test } of await backendSuites('reduce and matmul')) {
  // Modules and creation functions without an explicit backend use the current one.
  test.before(async () => void (await setBackend(backend.name)));
  const T = (d: ArrayLike<number>, shape: number[]) => tensor(Float32Array.from(d), shape, { backend });

  test('sum over a few long rows (the shapes of partial-sum reductions)', async () => {
    // A few rows of many columns: on the GPU backends the path that sums whole vec4s of a column
    // (n of 16, 5 and 23: whole groups of four rows, a remainder, both; two outer slices).
    for (const shape of [
      [2, 16, 8196],
      [1, 5, 16384],
      [1, 23, 16384],
    ]) {
      const x = f32(randomArray(size(shape), 31));
      const ref = refReduce(x, shape, [1], 'sum');
      assertClose(await sg.sum(T(x, shape), [1]).toArray(), ref.out, 1e-5, `sum over rows of ${shape}`);
    }
  });

  test('sum, mean, max, min, argmax over axes with keepdim', async () => {
    const shape = [3, 4, 5];
    const x = f32(randomArray(60, 21));
    for (const axes of [[0], [1], [2], [0, 2], [1, 2], [0, 1, 2]]) {
      for (const fn of ['sum', 'max', 'min'] as const) {
        const ref = refReduce(x, shape, axes, fn);
        const y = sg[fn](T(x, shape), axes);
        assert.equal([...y.shape], ref.shape, `${fn} ${axes} shape`);
        assertClose(await y.toArray(), ref.out, 1e-6, `${fn} ${axes}`);
        const yk = sg[fn](T(x, shape), axes, true);
        assert.equal(
          [...yk.shape],
          shape.map((d, i) => (axes.includes(i) ? 1 : d)),
        );
      }
      const mean = refReduce(x, shape, axes, 'sum').out.map((v) => v / axes.reduce((p, a) => p * shape[a], 1));
      assertClose(await sg.mean(T(x, shape), axes).toArray(), mean, 1e-6, `mean ${axes}`);
    }
    for (const axis of [0, 1, 2]) {
      const y = sg.argmax(T(x, shape), axis);
      assert.is(y.dtype, 'int32');
      assert.equal([...(await y.toArray())], refReduce(x, shape, [axis], 'argmax').out);
    }
    assert.is(await sg.argmax(T([3, 9, 2, 9], [4])).item(), 1); // first of ties
    assert.is(await sg.argmin(T([3, 1, 2, 1], [2, 2]).reshape(4)).item(), 1);
    assertClose([await T(x, shape).sum().item()], refReduce(x, shape, [0, 1, 2], 'sum').out, 1e-6);
    assert.is(await sg.sum(T([], [0, 3])).item(), 0);
    assert.equal([...sg.sum(T([], [0, 3]), 0).shape], [3]);
  });

  test('reductions over long leading and middle axes (split into partial sums on GPUs)', async () => {
    for (const [shape, axes] of [
      [[1000, 70], [0]],
      [[3, 500, 5], [1]],
      [[130, 2, 200], [0]],
      [[13, 1030], [1]],
      [[8192, 33], [0]],
      [[70001, 3], [0]],
    ] as [number[], number[]][]) {
      const x = f32(randomArray(size(shape), shape[0]));
      for (const fn of ['sum', 'max', 'min'] as const) {
        const ref = refReduce(x, shape, axes, fn);
        // f32 sums: the rounding error grows with the reduced length (8192 and 70001 rows here).
        const tol = fn === 'sum' ? 1e-5 * Math.max(1, Math.sqrt(shape[axes[0]] / 1000)) : 0;
        assertClose(await sg[fn](T(x, shape), axes).toArray(), ref.out, tol, `${fn} ${shape} over ${axes}`);
      }
    }
  });

  test('a reduction over a short axis of a very wide tensor (more column tiles than a grid dimension holds)', async () => {
    const n = (1 << 22) + 7;
    const x = f32(randomArray(2 * n, 5));
    const ref = Float64Array.from({ length: n }, (_, i) => x[i] + x[n + i]);
    assertClose(await sg.sum(T(x, [2, n]), 0).toArray(), ref, 1e-6);
  });

  test('full reductions of a long tensor (chunked on GPUs)', async () => {
    const n = 100003;
    const x = f32(randomArray(n, 77));
    let total = 0;
    let hi = -Infinity;
    let lo = Infinity;
    for (const v of x) {
      total += v;
      hi = Math.max(hi, v);
      lo = Math.min(lo, v);
    }
    const t = T(x, [n]);
    assertClose([await t.sum().item()], [total], 1e-5, 'sum');
    assert.is(await t.max().item(), hi);
    assert.is(await t.min().item(), lo);
    assertClose([await t.mean().item()], [total / n], 1e-5, 'mean');
  });

  test('reduction gradients (ties share the gradient of max)', async () => {
    const d = randomArray(24, 5);
    await gradCheck((x) => x.sum([0, 2]), [{ data: d, shape: [2, 3, 4] }], { backend });
    await gradCheck((x) => x.mean(1, true), [{ data: d, shape: [2, 3, 4] }], { backend });
    await gradCheck((x) => x.max(2), [{ data: d, shape: [2, 3, 4] }], { backend });
    await gradCheck((x) => x.min([0, 1]), [{ data: d, shape: [2, 3, 4] }], { backend });
    const x = T([1, 3, 3], [3]).requiresGrad_();
    x.max().backward();
    assert.equal([...(await x.grad!.toArray())], [0, 0.5, 0.5]);
  });

  test('matmul: awkward shapes, batches with broadcasting, 1-D operands, views', async () => {
    const cases: [number[], number[]][] = [
      [
        [1, 1],
        [1, 1],
      ],
      [
        [7, 33],
        [33, 5],
      ],
      [
        [33, 17],
        [17, 9],
      ],
      [
        [2, 5, 7],
        [7, 3],
      ],
      [
        [4, 1, 3, 6],
        [5, 6, 2],
      ],
      [
        [5, 1023],
        [1023, 1],
      ],
      [
        [64, 64],
        [64, 64],
      ],
      [
        [3, 0],
        [0, 4],
      ],
      // A long shared dimension with few outputs (GPU backends split k): uneven chunks, one
      // output tile and several (both edges partial).
      [
        [33, 2501],
        [2501, 17],
      ],
      [
        [200, 1500],
        [1500, 300],
      ],
    ];
    for (const [as, bs] of cases) {
      const a = f32(randomArray(size(as), 31));
      const b = f32(randomArray(size(bs), 32));
      const ref = refMatmul(a, as, b, bs);
      const y = sg.matmul(T(a, as), T(b, bs));
      assert.equal([...y.shape], ref.shape);
      // f32 rounding grows with the length of the sums.
      assertClose(await y.toArray(), ref.out, 1e-5 * Math.max(1, as[as.length - 1] / 500), `${as} @ ${bs}`);
    }
    // Transposed views go through the strided packing path.
    const a = f32(randomArray(6 * 4, 1));
    const b = f32(randomArray(6 * 3, 2));
    const at = T(a, [6, 4]).T; // [4, 6]
    const ref = refMatmul(
      Array.from({ length: 24 }, (_, i) => a[(i % 6) * 4 + Math.floor(i / 6)]),
      [4, 6],
      b,
      [6, 3],
    );
    assertClose(await at.matmul(T(b, [6, 3])).toArray(), ref.out, 1e-5, 'transposed');
    // A weight gradient's layout, X^T dY (A read down its columns), over a k that GPU backends split.
    const xs = f32(randomArray(1500 * 200, 3));
    const dys = f32(randomArray(1500 * 300, 4));
    const xsT = Array.from({ length: xs.length }, (_, i) => xs[(i % 1500) * 200 + Math.floor(i / 1500)]);
    assertClose(
      await T(xs, [1500, 200])
        .T.matmul(T(dys, [1500, 300]))
        .toArray(),
      refMatmul(xsT, [200, 1500], dys, [1500, 300]).out,
      3e-5,
      'X^T dY',
    );
    // Many products in one batch take GPU backends' large-tile kernels; both operands as
    // transposed views (the other contiguous axis), with edges that fill no tile evenly.
    const ad = f32(randomArray(256 * 40 * 65, 7));
    const bd = f32(randomArray(129 * 40, 8));
    const big = T(ad, [256, 40, 65])
      .transpose(1, 2)
      .matmul(T(bd, [129, 40]).T);
    const adT = Array.from({ length: ad.length }, (_, i) => {
      const [t, r, c] = [Math.floor(i / (65 * 40)), Math.floor(i / 40) % 65, i % 40];
      return ad[t * 40 * 65 + c * 65 + r];
    });
    const bdT = Array.from({ length: bd.length }, (_, i) => bd[(i % 129) * 40 + Math.floor(i / 129)]);
    assertClose(await big.toArray(), refMatmul(adT, [256, 65, 40], bdT, [40, 129]).out, 1e-5, 'batched transposed');
    // 1-D operands
    const v = f32(randomArray(6, 3));
    assertClose(
      await T(a, [4, 6])
        .matmul(T(v, [6]))
        .toArray(),
      refMatmul(a, [4, 6], v, [6, 1]).out,
      1e-5,
      'matrix @ vector',
    );
    assert.equal([...T(v, [6]).matmul(T(b, [6, 3])).shape], [3]);
    assert.equal([...T(v, [6]).matmul(T(v, [6])).shape], []);
  });

  test('matmul gradients, including broadcast batches', async () => {
    await gradCheck(
      sg.matmul,
      [
        { data: randomArray(12, 1), shape: [3, 4] },
        { data: randomArray(8, 2), shape: [4, 2] },
      ],
      { backend },
    );
    await gradCheck(
      sg.matmul,
      [
        { data: randomArray(24, 3), shape: [2, 3, 4] },
        { data: randomArray(8, 4), shape: [4, 2] },
      ],
      { backend },
    );
    await gradCheck(
      sg.matmul,
      [
        { data: randomArray(12, 5), shape: [3, 4] },
        { data: randomArray(16, 6), shape: [2, 4, 2] },
      ],
      { backend },
    );
    await gradCheck(
      sg.matmul,
      [
        { data: randomArray(4, 7), shape: [4] },
        { data: randomArray(8, 8), shape: [4, 2] },
      ],
      { backend },
    );
  });

  test('linear: x W^T + b in float64, gradients by finite differences, weight gradient contiguous', async () => {
    for (const xShape of [[5], [7, 5], [2, 3, 5]]) {
      const rows = xShape.slice(0, -1).reduce((p, d) => p * d, 1);
      const x = f32(randomArray(rows * 5, 11));
      const w = f32(randomArray(3 * 5, 12));
      const b = f32(randomArray(3, 13));
      const ref = Array.from({ length: rows * 3 }, (_, i) => {
        const [r, o] = [Math.floor(i / 3), i % 3];
        let acc = b[o];
        for (let k = 0; k < 5; k++) acc += x[r * 5 + k] * w[o * 5 + k];
        return acc;
      });
      const y = sg.linear(T(x, xShape), T(w, [3, 5]), T(b, [3]));
      assert.equal([...y.shape], [...xShape.slice(0, -1), 3]);
      assertClose(await y.toArray(), ref, 1e-6, `linear ${xShape}`);
      assertClose(
        await sg.linear(T(x, xShape), T(w, [3, 5])).toArray(),
        ref.map((v, i) => v - b[i % 3]),
        1e-6,
        `no bias ${xShape}`,
      );
      await gradCheck(
        (a, ww, bb) => sg.linear(a, ww, bb),
        [
          { data: x, shape: xShape },
          { data: w, shape: [3, 5] },
          { data: b, shape: [3] },
        ],
        { backend },
      );
    }
    const w = T(randomArray(15, 1), [3, 5]).requiresGrad_();
    sg.linear(T(randomArray(20, 2), [4, 5]), w)
      .sum()
      .backward();
    assert.ok(w.grad!.isContiguous, 'the weight gradient is laid out as the weight');
    assertThrows(
      () => sg.linear(T(randomArray(8, 1), [2, 4]), T(randomArray(15, 1), [3, 5])),
      /linear: input of shape \[2, 4\] must end in 5 features \(weight \[3, 5\]\)/,
    );
    assertThrows(
      () => sg.linear(T(randomArray(10, 1), [2, 5]), T(randomArray(15, 1), [3, 5]), T([1, 2], [2])),
      /linear: bias must have shape \[3\], got \[2\]/,
    );
  });

  test('bad input', () => {
    assertThrows(() => T(randomArray(6, 1), [2, 3]).matmul(T(randomArray(8, 1), [4, 2])), /matmul: inner dimensions differ: \[2, 3\] @ \[4, 2\] \(3 vs 4\)/);
    assertThrows(
      () => sg.matmul(T(randomArray(12, 1), [2, 2, 3]), T(randomArray(18, 1), [3, 3, 2])),
      /matmul: shapes \[2\] and \[3\] cannot be broadcast together/,
    );
    assertThrows(() => T([1, 2], [2]).sum(2), /sum: axis 2 is out of range for a tensor of rank 1/);
    assertThrows(() => T([1, 2], [2]).sum([0, 0]), /sum: axes \[0,0\] contain a repeated axis/);
    assertThrows(() => T([], [0]).max(), /max: cannot reduce over an empty dimension/);
  });

  test.run();
}

// The CPU backend keeps every tensor in one WebAssembly memory of up to 4 GiB; byte offsets past
// 2 GiB do not fit a signed 32-bit shift (a batch-32 GPT step reaches there).
const cpuMemory = suite('cpu backend memory');
cpuMemory('products whose operands and scratch sit above 2 GiB of the WebAssembly memory stay correct', async () => {
  const be = createCpuBackend({ threads: 1 });
  const filler = be.alloc(2 ** 29 + 4096, 'float32'); // 2 GiB + 16 KiB, never written
  // m = 5 and n = 3: the product goes through padded scratch copies (gather, copy back).
  const [m, k, n] = [5, 7, 3];
  const a = f32(randomArray(m * k, 1));
  const b = f32(randomArray(k * n, 2));
  const ref = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let q = 0; q < k; q++) ref[i * n + j] += a[i * k + q] * b[q * n + j];
  const ta = tensor(Float32Array.from(a), [m, k], { backend: be });
  const tb = tensor(Float32Array.from(b), [k, n], { backend: be });
  assertClose(await sg.matmul(ta, tb).toArray(), ref, 1e-5, 'A B above 2 GiB');
  assertClose(await sg.matmul(ta.T.contiguous().T, tb).toArray(), ref, 1e-5, 'transposed A above 2 GiB');
  be.free(filler);
});
cpuMemory.run();
