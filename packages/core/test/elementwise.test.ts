import * as assert from 'uvu/assert';
import * as sg from '@sparsegrad/core';
import { setBackend } from '@sparsegrad/core';
import { tensor, type Tensor } from '@sparsegrad/core';
import { assertClose, assertThrows, backendSuites, f32, gradCheck, randomArray, size, strides } from './helpers.ts';

/** Float64 broadcasting reference: out[idx] = fn(a[idx'], b[idx'']). */
function refBinary(a: ArrayLike<number>, as: number[], b: ArrayLike<number>, bs: number[], fn: (x: number, y: number) => number) {
  const rank = Math.max(as.length, bs.length);
  const pad = (s: number[]) => [...Array(rank - s.length).fill(1), ...s];
  const [pa, pb] = [pad(as), pad(bs)];
  const shape = pa.map((d, i) => (d === 1 ? pb[i] : d));
  const [sa, sb, so] = [strides(pa), strides(pb), strides(shape)];
  const out = new Float64Array(size(shape));
  for (let i = 0; i < out.length; i++) {
    let ia = 0;
    let ib = 0;
    for (let d = 0; d < rank; d++) {
      const k = Math.floor(i / so[d]) % shape[d];
      ia += (pa[d] === 1 ? 0 : k) * sa[d];
      ib += (pb[d] === 1 ? 0 : k) * sb[d];
    }
    out[i] = fn(a[ia], b[ib]);
  }
  return { out, shape };
}

/** erf by its Maclaurin series (independent of the library's rational approximation). */
function erfSeries(x: number): number {
  let sum = 0;
  let term = x;
  for (let n = 0; n < 60; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const c = Math.sqrt(2 / Math.PI);

const UNARY: [string, (t: Tensor) => Tensor, (x: number) => number, number][] = [
  ['neg', sg.neg, (x) => -x, 2],
  ['exp', sg.exp, Math.exp, 2],
  ['log', sg.log, Math.log, 0], // positive inputs
  ['sqrt', sg.sqrt, Math.sqrt, 0],
  ['abs', sg.abs, Math.abs, 2],
  ['tanh', sg.tanh, Math.tanh, 3],
  ['sigmoid', sg.sigmoid, (x) => 1 / (1 + Math.exp(-x)), 3],
  ['relu', sg.relu, (x) => Math.max(x, 0), 2],
  ['gelu', (t) => sg.gelu(t), (x) => 0.5 * x * (1 + erfSeries(x / Math.SQRT2)), 3],
  ['gelu tanh', (t) => sg.gelu(t, 'tanh'), (x) => 0.5 * x * (1 + Math.tanh(c * (x + 0.044715 * x ** 3))), 3],
];

const BINARY: [string, (a: Tensor | number, b: Tensor | number) => Tensor, (x: number, y: number) => number][] = [
  ['add', sg.add, (x, y) => x + y],
  ['sub', sg.sub, (x, y) => x - y],
  ['mul', sg.mul, (x, y) => x * y],
  ['div', sg.div, (x, y) => x / y],
  ['maximum', sg.maximum, Math.max],
  ['minimum', sg.minimum, Math.min],
];

for (const { backend, test } of await backendSuites('elementwise')) {
  // Modules and creation functions without an explicit backend use the current one.
  test.before(async () => void (await setBackend(backend.name)));
  const T = (d: ArrayLike<number>, shape: number[]) => tensor(Float32Array.from(d), shape, { backend });

  for (const [name, op, ref, scale] of UNARY) {
    test(`${name}: values and gradient`, async () => {
      const positive = scale === 0;
      const data = f32(Array.from(randomArray(1023, 7), (v) => (positive ? Math.abs(v) * 3 + 0.1 : v * scale)));
      const y = op(T(data, [1023]));
      assertClose(await y.toArray(), data.map(ref), 2e-6, name);
      const small = Array.from(randomArray(12, 3), (v) => (positive ? Math.abs(v) + 0.5 : v * scale + 0.05));
      await gradCheck(op, [{ data: small, shape: [3, 4] }], { backend });
    });
  }

  for (const [name, op, ref] of BINARY) {
    test(`${name}: broadcasting values and gradients`, async () => {
      const cases: [number[], number[]][] = [
        [
          [2, 3, 4],
          [3, 1],
        ],
        [[7], [7]],
        [
          [1, 5],
          [4, 1],
        ],
        [[2, 1, 3], [1]],
        [[0, 3], [3]],
      ];
      for (const [as, bs] of cases) {
        const a = f32(randomArray(size(as), 11));
        const b = f32(Array.from(randomArray(size(bs), 12), (v) => (name === 'div' ? v + Math.sign(v) * 0.5 || 1 : v)));
        const y = op(T(a, as), T(b, bs));
        const expect = refBinary(a, as, b, bs, ref);
        assert.equal([...y.shape], expect.shape);
        assertClose(await y.toArray(), expect.out, 1e-6, `${name} ${as} ${bs}`);
      }
      const divisor = Array.from(randomArray(3, 5), (v) => v + Math.sign(v));
      await gradCheck(
        op,
        [
          { data: randomArray(6, 1), shape: [2, 3] },
          { data: divisor, shape: [3] },
        ],
        { backend },
      );
      // scalar operands on either side
      const a = f32(randomArray(5, 2));
      assertClose(
        await op(T(a, [5]), 1.5).toArray(),
        a.map((v) => ref(v, 1.5)),
        1e-6,
      );
      assertClose(
        await op(1.5, T(a, [5])).toArray(),
        a.map((v) => ref(1.5, v)),
        1e-6,
      );
    });
  }

  test('pow with tensor and scalar exponents', async () => {
    const a = f32(Array.from(randomArray(6, 4), (v) => Math.abs(v) + 0.5));
    const b = f32(randomArray(6, 5));
    assertClose(
      await sg.pow(T(a, [6]), T(b, [6])).toArray(),
      a.map((v, i) => v ** b[i]),
      1e-6,
    );
    assertClose(
      await sg.pow(T(a, [6]), 3).toArray(),
      a.map((v) => v ** 3),
      1e-6,
    );
    await gradCheck(
      sg.pow,
      [
        { data: a, shape: [6] },
        { data: b, shape: [6] },
      ],
      { backend },
    );
    await gradCheck((x) => sg.pow(x, 2.5), [{ data: a, shape: [6] }], { backend });
  });

  test('non-contiguous operands (transposed and sliced views)', async () => {
    const a = f32(randomArray(12, 9));
    const b = f32(randomArray(12, 10));
    const at = T(a, [3, 4]).transpose(0, 1); // [4, 3]
    const bt = T(b, [4, 3]);
    const expect = new Float64Array(12);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 3; j++) expect[i * 3 + j] = a[j * 4 + i] * b[i * 3 + j];
    assertClose(await at.mul(bt).toArray(), expect, 1e-6);
    const s = T(a, [3, 4]).slice(1, 1, 3); // [3, 2]
    assertClose(
      await s.exp().toArray(),
      [1, 2, 5, 6, 9, 10].map((i) => Math.exp(a[i])),
      1e-6,
    );
  });

  // Rows of multiples of 4 floats are what GPU backends vectorize (CUDA's float4 kernels); offsets
  // of 4 qualify, offsets of 2 must take the scalar path, and both must agree with the reference.
  test('views with rows of 4k floats: broadcast, permuted, sliced at aligned and unaligned offsets', async () => {
    const a = f32(randomArray(2 * 3 * 4 * 8, 21));
    const bias = f32(randomArray(8, 22));
    const x = T(a, [24, 8]);
    const biased = new Float64Array(192).map((_, i) => a[i] + bias[i % 8]);
    assertClose(await x.add(T(bias, [8])).toArray(), biased, 1e-6, 'row broadcast');
    // [2, 3, 4, 8] -> [2, 4, 3, 8]: element (i, j, k, l) of the permuted view is a[i, k, j, l]
    const permuted = new Float64Array(192);
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 4; j++)
        for (let k = 0; k < 3; k++)
          for (let l = 0; l < 8; l++) {
            permuted[((i * 4 + j) * 3 + k) * 8 + l] = a[((i * 3 + k) * 4 + j) * 8 + l];
          }
    const p = T(a, [2, 3, 4, 8]).permute(0, 2, 1, 3);
    assertClose(await p.contiguous().toArray(), permuted, 0, 'permuted copy');
    assertClose(
      await p.mul(0.5).toArray(),
      permuted.map((v) => v * 0.5),
      1e-6,
      'permuted times scalar',
    );
    assertClose(
      await p.add(p.contiguous()).toArray(),
      permuted.map((v) => 2 * v),
      1e-6,
      'permuted plus contiguous',
    );
    assertClose(await p.exp().toArray(), permuted.map(Math.exp), 2e-6, 'permuted exp');
    for (const start of [4, 2]) {
      const s = T(a, [12, 16]).slice(1, start, start + 8); // rows of 8 at offset `start` of each 16
      const expect = new Float64Array(96).map((_, i) => a[Math.floor(i / 8) * 16 + start + (i % 8)]);
      assertClose(await s.contiguous().toArray(), expect, 0, `slice at ${start}`);
      assertClose(
        await s.sub(T(bias, [8])).toArray(),
        expect.map((v, i) => v - bias[i % 8]),
        1e-6,
        `slice at ${start} minus bias`,
      );
      assertClose(await s.tanh().toArray(), expect.map(Math.tanh), 2e-6, `tanh of slice at ${start}`);
    }
  });

  // GPU backends copy these through shared-memory tiles: partial tiles, one and two batch dims, int32.
  test('transposed views made contiguous', async () => {
    for (const shape of [
      [2, 40, 33],
      [1, 5, 7],
      [2, 3, 9, 10],
      [70, 4],
    ]) {
      const r = shape.length;
      const [I, J] = shape.slice(-2);
      const batch = size(shape) / (I * J);
      const d = f32(randomArray(size(shape), 23));
      const expect = new Float64Array(d.length);
      for (let b = 0; b < batch; b++) for (let i = 0; i < I; i++) for (let j = 0; j < J; j++) expect[(b * J + j) * I + i] = d[(b * I + i) * J + j];
      assertClose(
        await T(d, shape)
          .transpose(r - 2, r - 1)
          .contiguous()
          .toArray(),
        expect,
        0,
        `float32 ${shape}`,
      );
      const ints = Int32Array.from(d, (v) => Math.round(v * 1000));
      const got = await tensor(ints, shape, { backend })
        .transpose(r - 2, r - 1)
        .contiguous()
        .toArray();
      assert.equal(
        [...got],
        [...expect].map((v) => Math.round(v * 1000)),
        `int32 ${shape}`,
      );
    }
  });

  test('comparisons, where, clamp and cast', async () => {
    const a = T([1, 2, 3, 4], [4]);
    const b = T([4, 2, 1, 4], [4]);
    assert.equal([...(await a.lt(b).toArray())], [1, 0, 0, 0]);
    assert.equal([...(await a.le(b).toArray())], [1, 1, 0, 1]);
    assert.equal([...(await a.gt(b).toArray())], [0, 0, 1, 0]);
    assert.equal([...(await a.ge(b).toArray())], [0, 1, 1, 1]);
    assert.equal([...(await a.eq(b).toArray())], [0, 1, 0, 1]);
    assert.equal([...(await a.ne(b).toArray())], [1, 0, 1, 0]);
    assert.equal([...(await sg.where(a.gt(2), a, b).toArray())], [4, 2, 3, 4]);
    assert.equal([...(await sg.where(a.gt(2), 0, b).toArray())], [4, 2, 0, 0]);
    assert.equal([...(await a.clamp(1.5, 3.5).toArray())], [1.5, 2, 3, 3.5]);
    assert.equal([...(await T([-1.7, 2.9, 0.2], [3]).cast('int32').toArray())], [-1, 2, 0]);
    assert.is((await T([1], [1]).cast('int32')).dtype, 'int32');
    await gradCheck((x) => x.clamp(-0.3, 0.4), [{ data: [-0.9, -0.1, 0.15, 0.35, 0.8], shape: [5] }], { backend });
    await gradCheck(
      (x, y) => sg.where(x.gt(0), x.mul(y), y),
      [
        { data: [-0.5, 0.7, 0.2], shape: [3] },
        { data: [0.3, -0.4, 0.9], shape: [3] },
      ],
      { backend },
    );
    const ints = tensor([5, 7, 9], undefined, { dtype: 'int32', backend });
    assert.equal([...(await ints.add(1).toArray())], [6, 8, 10]);
    assert.is(ints.add(1).dtype, 'int32');
  });

  test('edge-case rules of the backend contract: NaN propagation, float-to-int casts, integer division and powers', async () => {
    const nan = NaN;
    const I = (d: number[]) => tensor(Int32Array.from(d), [d.length], { dtype: 'int32', backend });
    const arr = async (t: sg.Tensor) => [...(await t.toArray())];
    // NaN propagates through relu, maximum, minimum and max/min reductions; argmax/argmin point at the first NaN.
    assert.equal(await arr(T([nan, -1, 2, 0], [4]).relu()), [nan, 0, 2, 0]);
    assert.equal(await arr(sg.maximum(T([nan, 1, 3], [3]), T([1, nan, 2], [3]))), [nan, nan, 3]);
    assert.equal(await arr(sg.minimum(T([nan, 1, 3], [3]), 2)), [nan, 1, 2]);
    assert.equal(await arr(T([nan, 1, -1, 0], [4]).max()), [nan]);
    assert.equal(await arr(T([nan, 1, -1, 0], [4]).argmax()), [0]);
    assert.equal(await arr(T([1, -1, nan, 0], [4]).argmin()), [2]);
    assert.equal(await arr(T([-Infinity, -Infinity], [2]).max()), [-Infinity], 'the identity of max is -Infinity, not the largest finite float');
    assert.equal(await arr(T([Infinity, Infinity], [2]).min()), [Infinity]);
    // Rows and columns of the shapes each GPU reduction route takes: short, long, one very long row, columns.
    for (const [rows, n] of [
      [64, 7],
      [16, 300],
      [4, 5000],
      [1, 300000],
    ]) {
      const data = Float32Array.from(randomArray(rows * n, rows + n));
      for (let r = 0; r < rows; r += 2) data[r * n + ((r * 7) % n)] = nan; // every other row holds one NaN
      // ...and the others an infinity, which must not read as a NaN (its magnitude bits are the largest short of one).
      for (let r = 1; r < rows; r += 2) data[r * n + ((r * 3) % n)] = r % 4 === 1 ? Infinity : -Infinity;
      const x = T(data, [rows, n]);
      const expect = (op: 'max' | 'min') =>
        Array.from({ length: rows }, (_, r) => (r % 2 === 0 ? nan : Math.fround(Math[op](...data.subarray(r * n, (r + 1) * n)))));
      assert.equal(await arr(x.max(1)), expect('max'), `row max of [${rows}, ${n}]`);
      assert.equal(await arr(x.min(1)), expect('min'), `row min of [${rows}, ${n}]`);
      const cols = await arr(x.transpose(0, 1).contiguous().max(0));
      assert.equal(cols, expect('max'), `column max of [${n}, ${rows}]`);
    }
    // float -> int32 as JavaScript's ToInt32 (storing into an Int32Array): truncate, wrap mod 2^32, NaN and infinities give 0.
    const floats = [3e9, -3e9, nan, Infinity, -Infinity, -3.7, 2.9, 2147483520, -2147483648, 2 ** 31, 1e20, -0.5];
    assert.equal(await arr(T(floats, [floats.length]).cast('int32')), [...Int32Array.from(floats.map(Math.fround))]);
    // Integer division truncates and a zero divisor gives 0; integer products and powers wrap exactly.
    assert.equal(await arr(I([5, -7, 7, 0, -2147483648]).div(I([0, 2, -2, 0, -1]))), [0, -3, -3, 0, -2147483648]);
    assert.equal(await arr(I([-7, 2, 3, 1, -1, -1, 0, 5, 46341]).pow(I([2, 31, -1, -5, -3, -2, -1, 0, 2]))), [49, -2147483648, 0, 1, -1, 1, 0, 1, -2147479015]);
    assert.equal(await arr(I([2147483647, 65537, -3]).mul(I([2147483647, 65537, 1431655765]))), [1, 131073, Math.imul(-3, 1431655765)]);
    assert.equal(await arr(I([2, -2]).pow(3)), [8, -8]);
  });

  test('GELU and its derivative kernels match float64 formulas to 1e-5', async () => {
    // erf(x) = 2/sqrt(pi) exp(-x^2) sum 2^n x^(2n+1) / (1 3 5 ... (2n+1)): positive terms, exact in float64 for any x.
    const erf = (x: number) => {
      let term = x;
      let total = x;
      for (let n = 0; Math.abs(term) > 1e-17 * Math.abs(total); n++) total += term *= (2 * x * x) / (2 * n + 3);
      return (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * total;
    };
    const c = Math.sqrt(2 / Math.PI);
    const refs = {
      geluErf: (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
      geluErfGrad: (x: number) => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI),
      geluTanh: (x: number) => 0.5 * x * (1 + Math.tanh(c * (x + 0.044715 * x ** 3))),
      geluTanhGrad: (x: number) => {
        const t = Math.tanh(c * (x + 0.044715 * x ** 3));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
      },
    };
    const xs = f32([...Array.from(randomArray(2000, 21), (v) => v * 8), 0, -0, 1e-4, -1e-4, 0.5, -0.5, 3, -3, 10, -10]);
    for (const approximate of ['none', 'tanh'] as const) {
      const x = tensor(Float32Array.from(xs), [xs.length], { backend, requiresGrad: true });
      const y = x.gelu(approximate);
      // An upstream gradient that is not 1: the backward kernel multiplies it in.
      const g = f32(randomArray(xs.length, 22));
      y.backward(tensor(Float32Array.from(g), [xs.length], { backend }));
      const name = approximate === 'none' ? 'geluErf' : 'geluTanh';
      assertClose(await y.toArray(), xs.map(refs[name]), 1e-5, name);
      assertClose(
        await x.grad!.toArray(),
        xs.map((v, i) => g[i] * refs[`${name}Grad`](v)),
        1e-5,
        `${name}Grad`,
      );
    }
  });

  test('bad input', () => {
    assertThrows(() => T([1, 2, 3], [3]).add(T([1, 2], [2])), /add: shapes \[3\] and \[2\] cannot be broadcast together/);
    assertThrows(() => sg.add(1 as never, 2 as never), /add: expected at least one Tensor operand/);
    assertThrows(() => T([1], [1]).add(tensor([1], undefined, { dtype: 'int32', backend })), /add: operands have different dtypes \(float32 and int32\)/);
    assertThrows(() => T([1], [1]).clamp(2, 1), /clamp: min \(2\) must not exceed max \(1\)/);
    assertThrows(() => sg.gelu(T([1], [1]), 'fast' as never), /gelu: approximate must be 'none' or 'tanh'/);
    const d = T([1], [1]);
    d.dispose();
    assertThrows(() => d.exp(), /exp: tensor #\d+ of shape \[1\] was disposed/);
    assertThrows(() => T([1], [1]).mul(Number.NaN), /mul: scalar operand must be a number, got NaN/);
  });

  test.run();
}
