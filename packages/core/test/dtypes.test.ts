/**
 * The 16-bit floating dtypes on every backend that holds them: storage and casts, every kind of
 * op, gradients, type promotion and autocast, each against a float64 reference computed from the
 * rounded inputs, with tolerances derived from the format (its unit roundoff u: 2^-8 for
 * bfloat16, 2^-11 for float16), since the rule is "compute in float32, round once at the store".
 * A backend that cannot hold a dtype must refuse it with an error naming both.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as sg from '@sparsegrad/core';
import { type BlockLayout, BlockSparseMatrix, type DType, getBackend, type HalfDType, roundTo, type Tensor, tensor } from '@sparsegrad/core';
import { assertThrows, backendSuites, randomArray, testSeed } from './helpers.ts';

const HALF: readonly HalfDType[] = ['bfloat16', 'float16'];
/** Unit roundoff: the largest relative error of one rounding to nearest. */
const U: Record<HalfDType, number> = { bfloat16: 2 ** -8, float16: 2 ** -11 };
/** Below this the format is subnormal (float16) and errors are absolute. */
const TINY: Record<HalfDType, number> = { bfloat16: 1e-37, float16: 2 ** -24 };

const round = (dtype: HalfDType, xs: ArrayLike<number>) => Float64Array.from(xs as ArrayLike<number>, (x) => roundTo(dtype, x));

/**
 * |got - want| <= ulps * u * scale + tiny for each element, where scale is |want| or a given bound
 * of the magnitudes that were summed (for products and reductions).
 */
function assertHalf(got: ArrayLike<number>, want: ArrayLike<number>, dtype: HalfDType, what: string, ulps = 2, scale?: ArrayLike<number>): void {
  assert.is(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    const [g, w] = [got[i], want[i]];
    if (Number.isNaN(w) ? Number.isNaN(g) : g === w) continue;
    const bound = ulps * U[dtype] * Math.abs(scale ? scale[i] : w) + TINY[dtype];
    if (!(Math.abs(g - w) <= bound)) assert.unreachable(`${what} [${dtype}] at ${i}: got ${g}, expected ${w} (bound ${bound})`);
  }
}

/** A float64 reference of x [m, k] @ y [k, n] and the sums of |x_i y_i| that bound its float32 accumulation error. */
function refMatmul(x: ArrayLike<number>, y: ArrayLike<number>, m: number, k: number, n: number) {
  const out = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++)
      for (let p = 0; p < k; p++) {
        out[i * n + j] += x[i * k + p] * y[p * n + j];
        mag[i * n + j] += Math.abs(x[i * k + p] * y[p * n + j]);
      }
  return { out, mag };
}

/** Block data [nnz, bs, bs] as the dense [rows, cols] matrix (zeros outside the blocks). */
function denseOf(data: ArrayLike<number>, layout: BlockLayout): Float64Array {
  const { rows, cols, blockSize: bs } = layout;
  const out = new Float64Array(rows * cols);
  for (let b = 0; b < layout.nnzBlocks; b++)
    for (let r = 0; r < bs; r++) for (let c = 0; c < bs; c++) out[(layout.rowIdx[b] * bs + r) * cols + layout.colIdx[b] * bs + c] = data[(b * bs + r) * bs + c];
  return out;
}

for (const { backend, test } of await backendSuites('16-bit dtypes')) {
  const held = () => HALF.filter((d) => backend.dtypes.includes(d));
  const seed = testSeed();
  const T = (data: ArrayLike<number>, shape: number[], dtype: DType = 'float32', requiresGrad = false) =>
    tensor(Float32Array.from(data as ArrayLike<number>), shape, { backend, dtype, requiresGrad });

  test('a dtype the backend does not hold is refused by name', () => {
    for (const dtype of HALF.filter((d) => !backend.dtypes.includes(d))) {
      assertThrows(() => T([1, 2], [2], dtype), new RegExp(`tensor: the ${backend.name} backend cannot hold ${dtype} tensors`));
      assertThrows(() => T([1, 2], [2]).cast(dtype), new RegExp(`cast: the ${backend.name} backend cannot hold ${dtype}`));
    }
    assertThrows(() => T([1], [1], 'float64' as never), /tensor: dtype must be one of 'float32', 'int32', 'bfloat16', 'float16', got float64/);
  });

  test('storage: values round to nearest even, specials survive, 2 bytes per element', async () => {
    const values = [0, -0, 1, -1, 1 / 3, 1.00390625, 1.01171875, 65504, 65520, 70000, 1e-8, 6e-8, 3e-5, 1e30, Infinity, -Infinity, Number.NaN, 123.456];
    for (const dtype of held()) {
      const t = T(values, [values.length], dtype);
      assert.is(t.dtype, dtype);
      const got = await t.toArray();
      assert.ok(got instanceof Float32Array, 'reads return Float32Array');
      values.forEach((v, i) => {
        const want = roundTo(dtype, v);
        assert.ok(Number.isNaN(want) ? Number.isNaN(got[i]) : Object.is(got[i], want), `${dtype} ${v}: got ${got[i]}, expected ${want}`);
      });
      const before = sg.memory(backend).bytes;
      const big = sg.zeros([1000], { backend, dtype });
      assert.is(sg.memory(backend).bytes - before, 2000, `${dtype} zeros [1000] takes 2000 bytes`);
      assert.equal(Array.from(await big.toArray()).slice(0, 3), [0, 0, 0]);
      assert.equal(Array.from(await sg.full([3], 2.5, { backend, dtype }).toArray()), [2.5, 2.5, 2.5]);
    }
  });

  test('casts between every pair of dtypes, from strided views', async () => {
    const xs = Float32Array.from([1.7, -2.5, 3.49, -0.5, 65519, 1e9, Number.NaN, 300.3]);
    for (const dtype of held()) {
      const h = T(xs, [2, 4], dtype);
      const hv = Float64Array.from(round(dtype, xs));
      const toInt = await h.cast('int32').toArray();
      assert.equal(Array.from(toInt), Array.from(Int32Array.from(hv, (v) => v)), `${dtype} -> int32 truncates (ToInt32)`);
      const ints = tensor(Int32Array.from([16777217, -3, 100000, 7]), [4], { backend });
      assert.equal(
        Array.from(await ints.cast(dtype).toArray()),
        [16777217, -3, 100000, 7].map((v) => roundTo(dtype, Math.fround(v))),
        `int32 -> ${dtype}`,
      );
      for (const other of held()) {
        const c = await h.cast(other).toArray();
        assertHalf(c, round(other, hv), other, `${dtype} -> ${other}`, 0);
      }
      // A transposed (strided) source, converted as it is read.
      const tr = await T(xs, [2, 4]).transpose(0, 1).cast(dtype).toArray();
      const want = [0, 1, 2, 3].flatMap((j) => [0, 1].map((i) => roundTo(dtype, xs[i * 4 + j])));
      assertHalf(tr, want, dtype, 'transposed cast', 0);
      assert.is(h.to(dtype), h, 'to() of the same dtype is the tensor itself');
      // Strided 16-bit destinations with odd widths: elements that share a 32-bit word with a
      // neighbour written by another thread (cat copies each part into a strided region).
      const left = T(Array.from(xs.slice(0, 6)), [3, 2], dtype);
      const right = T(
        Array.from({ length: 15 }, (_, i) => i / 7 - 1),
        [3, 5],
        dtype,
      );
      const joined = await sg.cat([left, right, left], 1).toArray();
      const [lv, rv] = [await left.toArray(), await right.toArray()];
      const wantCat = [0, 1, 2].flatMap((r) => [...lv.slice(2 * r, 2 * r + 2), ...rv.slice(5 * r, 5 * r + 5), ...lv.slice(2 * r, 2 * r + 2)]);
      assert.equal(Array.from(joined), wantCat, `${dtype} cat into strided regions`);
    }
  });

  // 256 elements and rows of 8 take the GPU backends' 4-element kernels, 257 and 7 the others.
  for (const [n, w] of [
    [257, 7],
    [256, 8],
  ])
    test(`elementwise ops compute in float32 and round once (${n} elements, rows of ${w})`, async () => {
      const a = randomArray(n, seed, 3);
      const b = randomArray(n, seed + 1, 3).map((v) => v + (v >= 0 ? 0.5 : -0.5));
      const unary: [string, (t: Tensor) => Tensor, (x: number) => number][] = [
        ['exp', sg.exp, Math.exp],
        ['tanh', sg.tanh, Math.tanh],
        ['sigmoid', sg.sigmoid, (x) => 1 / (1 + Math.exp(-x))],
        ['relu', sg.relu, (x) => Math.max(0, x)],
        ['gelu tanh', (t) => sg.gelu(t, 'tanh'), (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))],
        ['neg', sg.neg, (x) => -x],
      ];
      const binary: [string, (x: Tensor | number, y: Tensor | number) => Tensor, (x: number, y: number) => number][] = [
        ['add', sg.add, (x, y) => x + y],
        ['mul', sg.mul, (x, y) => x * y],
        ['div', sg.div, (x, y) => x / y],
        ['maximum', sg.maximum, Math.max],
      ];
      for (const dtype of held()) {
        const [ra, rb] = [round(dtype, a), round(dtype, b)];
        const [ta, tb] = [T(a, [n], dtype), T(b, [n], dtype)];
        for (const [name, op, ref] of unary) {
          const y = op(ta);
          assert.is(y.dtype, dtype, `${name} keeps ${dtype}`);
          // float32 math libraries differ by a few float32 ulps, far below one half-ulp; the
          // final rounding can then land on either neighbour: 1 ulp (2u).
          assertHalf(await y.toArray(), round(dtype, ra.map(ref)), dtype, name);
        }
        for (const [name, op, ref] of binary) {
          assertHalf(
            await op(ta, tb).toArray(),
            round(
              dtype,
              ra.map((x, i) => ref(x, rb[i])),
            ),
            dtype,
            name,
          );
          assertHalf(
            await op(ta, 0.75).toArray(),
            round(
              dtype,
              ra.map((x) => ref(x, 0.75)),
            ),
            dtype,
            `${name} scalar`,
          );
        }
        // Broadcasting a row over a matrix, both 16-bit; a scalar on the left; casts both ways.
        const row = T(b.slice(0, w), [w], dtype);
        const mat = T(a.slice(0, 3 * w), [3, w], dtype);
        const want = round(
          dtype,
          Array.from({ length: 3 * w }, (_, i) => ra[i] * rb[i % w]),
        );
        assertHalf(await mat.mul(row).toArray(), want, dtype, 'broadcast mul');
        assertHalf(
          await sg.sub(2, ta).toArray(),
          round(
            dtype,
            ra.map((x) => 2 - x),
          ),
          dtype,
          'scalar minus tensor',
        );
        assert.equal(Array.from(await ta.cast('float32').toArray()), Array.from(ra), 'widening cast');
        assert.equal(Array.from(await T(a, [n]).cast(dtype).toArray()), Array.from(ra), 'rounding cast');
        assert.equal(Array.from(await sg.cat([ta, ta]).toArray()), [...ra, ...ra], 'copies within the dtype');
        const cmp = ta.gt(tb);
        assert.is(cmp.dtype, 'float32', 'comparisons give float32');
        assert.equal(
          Array.from(await cmp.toArray()),
          Array.from(ra, (x, i) => (x > rb[i] ? 1 : 0)),
        );
        assert.equal(
          Array.from(await sg.where(cmp, ta, tb).toArray()),
          Array.from(ra, (x, i) => Math.fround(Math.max(x, rb[i]))),
          'where',
        );
      }
    });

  test('reductions, softmax and layer norm on 16-bit inputs', async () => {
    const [rows, n] = [5, 67];
    const x = randomArray(rows * n, seed + 2, 2);
    for (const dtype of held()) {
      const rx = round(dtype, x);
      const t = T(x, [rows, n], dtype);
      const sums = Float64Array.from({ length: rows }, (_, r) => rx.slice(r * n, (r + 1) * n).reduce((s, v) => s + v, 0));
      const mags = Float64Array.from({ length: rows }, (_, r) => rx.slice(r * n, (r + 1) * n).reduce((s, v) => s + Math.abs(v), 0));
      assertHalf(await t.sum(1).toArray(), sums, dtype, 'sum', 2, mags);
      assertHalf(
        await t.max(1).toArray(),
        Float64Array.from({ length: rows }, (_, r) => Math.max(...rx.slice(r * n, (r + 1) * n))),
        dtype,
        'max',
        0,
      );
      const sm = t.softmax(-1);
      assert.is(sm.dtype, dtype);
      const wantSm = new Float64Array(rows * n);
      for (let r = 0; r < rows; r++) {
        const row = rx.slice(r * n, (r + 1) * n);
        const mx = Math.max(...row);
        const z = row.reduce((s, v) => s + Math.exp(v - mx), 0);
        row.forEach((v, j) => (wantSm[r * n + j] = Math.exp(v - mx) / z));
      }
      assertHalf(await sm.toArray(), round(dtype, wantSm), dtype, 'softmax');
      const ln = sg.layerNorm(t, n);
      assert.is(ln.dtype, dtype);
      const wantLn = new Float64Array(rows * n);
      for (let r = 0; r < rows; r++) {
        const row = rx.slice(r * n, (r + 1) * n);
        const mean = row.reduce((s, v) => s + v, 0) / n;
        const v = row.reduce((s, q) => s + (q - mean) ** 2, 0) / n;
        row.forEach((q, j) => (wantLn[r * n + j] = (q - mean) / Math.sqrt(v + 1e-5)));
      }
      assertHalf(
        await ln.toArray(),
        round(dtype, wantLn),
        dtype,
        'layerNorm',
        2,
        wantLn.map((v) => Math.abs(v) + 1e-3),
      );
    }
  });

  test('products: batched matmul, transposed operands, linear with bias', async () => {
    const [b, m, k, n] = [3, 17, 70, 9];
    const x = randomArray(b * m * k, seed + 3);
    const y = randomArray(k * n, seed + 4);
    const bias = randomArray(n, seed + 5);
    for (const dtype of held()) {
      const [rx, ry, rbias] = [round(dtype, x), round(dtype, y), round(dtype, bias)];
      const out = T(x, [b, m, k], dtype).matmul(T(y, [k, n], dtype));
      assert.is(out.dtype, dtype);
      const want = new Float64Array(b * m * n);
      const mag = new Float64Array(b * m * n);
      for (let i = 0; i < b; i++) {
        const r = refMatmul(rx.subarray(i * m * k), ry, m, k, n);
        want.set(r.out, i * m * n);
        mag.set(r.mag, i * m * n);
      }
      // One rounding to the format (u |y|) plus float32 accumulation (k 2^-24 sum |x y|).
      const scale = want.map((w, i) => Math.abs(w) + (k * 2 ** -24 * mag[i]) / U[dtype]);
      assertHalf(await out.toArray(), round(dtype, want), dtype, 'matmul', 2, scale);
      // linear: x [m, k] (the first batch) times W^T with W [n, k] given as y^T, plus bias.
      const w = T(y, [k, n], dtype).transpose(0, 1).contiguous();
      const lin = sg.linear(T(x.slice(0, m * k), [m, k], dtype), w, T(bias, [n], dtype));
      const wantLin = want.slice(0, m * n).map((v, i) => roundTo(dtype, v) + rbias[i % n]);
      assertHalf(
        await lin.toArray(),
        round(dtype, wantLin),
        dtype,
        'linear',
        4,
        wantLin.map((v, i) => Math.abs(v) + scale[i]),
      );
      // A transposed left operand is read in place or copied: either way the same product.
      const xt = T(x.slice(0, m * k), [k, m], dtype).transpose(0, 1);
      const wantT = refMatmul(
        Float64Array.from({ length: m * k }, (_, i) => rx[(i % k) * m + Math.floor(i / k)]),
        ry,
        m,
        k,
        n,
      );
      assertHalf(
        await xt.matmul(T(y, [k, n], dtype)).toArray(),
        round(dtype, wantT.out),
        dtype,
        'transposed matmul',
        2,
        wantT.out.map((v, i) => Math.abs(v) + (k * 2 ** -24 * wantT.mag[i]) / U[dtype]),
      );
    }
  });

  // The shapes reach every route a GPU backend has for 16-bit operands (CUDA on Hopper, bfloat16:
  // 16x16 blocks on widened copies, 32x32 at density 0.25 the bf16 TMA tiles and at 0.75 cuBLAS on a
  // dense copy, 64x64 the tiles through quadrants, 128x128 the dense copy; float16 widened), every
  // block size, a layout with empty block rows and columns, ragged token counts.
  test('block-sparse product and its gradients in 16 bits, against float64', async () => {
    const cases: [number, number, number, number, number][] = [
      // rows, cols, block size, tokens, density (0: the mask below)
      [64, 96, 16, 24, 0.5],
      [256, 128, 32, 300, 0.25],
      [128, 256, 32, 77, 0.75],
      [128, 128, 64, 40, 0.5],
      [256, 384, 128, 70, 0.5],
      [128, 160, 32, 45, 0],
    ];
    // Block row 1 and block columns 2 and 4 empty.
    const mask = [
      [1, 0, 0, 1, 0],
      [0, 0, 0, 0, 0],
      [1, 1, 0, 0, 0],
      [0, 1, 0, 1, 0],
    ];
    for (const dtype of held()) {
      for (const [rows, cols, bs, m, density] of cases) {
        const what = `${rows}x${cols}, ${bs}x${bs} blocks, ${density ? `density ${density}` : 'empty rows and columns'}, ${m} tokens`;
        sg.manualSeed(seed);
        const W = density
          ? BlockSparseMatrix.random([rows, cols], { blockSize: bs, density, backend })
          : BlockSparseMatrix.fromMask(mask, bs, { backend, data: sg.randn([6, bs, bs], { backend }) });
        const blocks = W.data.cast(dtype).requiresGrad_();
        const rw = denseOf(await blocks.toArray(), W.layout);
        const x = T(randomArray(m * cols, seed + 6), [m, cols], dtype, true);
        const dy = T(randomArray(m * rows, seed + 7), [m, rows], dtype);
        const y = sg.bsrMatmul(x, blocks, W.layout);
        assert.is(y.dtype, dtype);
        y.backward(dy);
        assert.is(x.grad!.dtype, dtype);
        assert.is(blocks.grad!.dtype, dtype);
        const [rx, rdy] = [Float64Array.from(await x.toArray()), Float64Array.from(await dy.toArray())];
        const transposed = (a: Float64Array, r: number, c: number) => Float64Array.from({ length: r * c }, (_, i) => a[(i % r) * c + Math.floor(i / r)]);
        // Bounds: 2 units of the format of |result| plus float32 accumulation over the inner dim.
        const bound = (ref: { out: Float64Array; mag: Float64Array }, k: number) => ref.out.map((v, i) => Math.abs(v) + (k * 2 ** -24 * ref.mag[i]) / U[dtype]);
        const fwd = refMatmul(rx, transposed(rw, rows, cols), m, cols, rows);
        assertHalf(await y.toArray(), round(dtype, fwd.out), dtype, `${what}: bsrMatmul`, 2, bound(fwd, cols));
        const dx = refMatmul(rdy, rw, m, rows, cols);
        assertHalf(await x.grad!.toArray(), round(dtype, dx.out), dtype, `${what}: dX`, 2, bound(dx, rows));
        // dW on the blocks only: dY^T X, compared through the dense form of the block gradient.
        const dw = refMatmul(transposed(rdy, m, rows), rx, rows, m, cols);
        const inBlocks = denseOf(new Float64Array(W.data.size).fill(1), W.layout);
        const gotDw = denseOf(await blocks.grad!.toArray(), W.layout);
        assertHalf(
          gotDw,
          round(
            dtype,
            dw.out.map((v, i) => v * inBlocks[i]),
          ),
          dtype,
          `${what}: dW`,
          2,
          bound(dw, m).map((v, i) => v * inBlocks[i]),
        );
      }
    }
  });

  test('gradients: 16-bit leaves get 16-bit gradients, matching float64 through the casts', async () => {
    for (const dtype of held()) {
      const w = T([0.5, -1.25, 2, 0.75, 1.5, -0.25], [2, 3], dtype, true);
      const x = T([1, 2, 3, -1, 0.5, 4], [2, 3], 'float32', true);
      // float32 x times a 16-bit weight: promoted to float32 (PyTorch's rule), gradients converted back.
      const y = sg.linear(x, w);
      assert.is(y.dtype, 'float32', `float32 and ${dtype} promote to float32`);
      y.mul(y).sum().backward();
      assert.is(w.grad!.dtype, dtype);
      assert.is(x.grad!.dtype, 'float32');
      const [xv, wv] = [await x.toArray(), await w.toArray()];
      const yv = [0, 1].flatMap((i) => [0, 1].map((j) => [0, 1, 2].reduce((s, p) => s + xv[i * 3 + p] * wv[j * 3 + p], 0)));
      const dw = [0, 1].flatMap((j) => [0, 1, 2].map((p) => [0, 1].reduce((s, i) => s + 2 * yv[i * 2 + j] * xv[i * 3 + p], 0)));
      assertHalf(await w.grad!.toArray(), round(dtype, dw), dtype, 'dW');
      const c = T([1.5, 2.5], [2], 'float32', true);
      c.cast(dtype).mul(3).sum().backward();
      assert.equal(Array.from(await c.grad!.toArray()), [3, 3], 'the gradient of a cast is cast back');
    }
  });

  test('promotion rules', () => {
    for (const dtype of held()) {
      assert.is(T([1], [1], dtype).add(T([1], [1])).dtype, 'float32');
      assert.is(T([1], [1], dtype).add(2).dtype, dtype, 'a number keeps the tensor dtype');
      for (const other of held()) if (other !== dtype) assert.is(T([1], [1], dtype).mul(T([1], [1], other)).dtype, 'float32');
      const ints = tensor(Int32Array.of(1), [1], { backend });
      assertThrows(() => T([1], [1], dtype).add(ints), new RegExp(`add: operands have different dtypes \\(${dtype} and int32\\); cast one first`));
      assertThrows(
        () => ints.cast(dtype).requiresGrad_().cast('int32').requiresGrad_(),
        /requiresGrad: only floating-point tensors can require gradients, got int32/,
      );
    }
  });

  test('autocast: products in the 16-bit dtype, softmax, norms and losses in float32, float32 masters', async () => {
    const [bsz, d, classes] = [6, 32, 5];
    for (const dtype of held()) {
      sg.manualSeed(seed);
      const w1 = sg.randn([d, d], { backend, std: 0.2, requiresGrad: true });
      const b1 = sg.zeros([d], { backend, requiresGrad: true });
      const w2 = sg.randn([classes, d], { backend, std: 0.2, requiresGrad: true });
      const g = sg.ones([d], { backend, requiresGrad: true });
      const x = sg.randn([bsz, d], { backend });
      const targets = tensor(
        Int32Array.from({ length: bsz }, (_, i) => i % classes),
        [bsz],
        { backend },
      );
      const dtypes: Record<string, string> = {};
      const loss = sg.autocast(dtype, () => {
        const h = sg.linear(x, w1, b1);
        dtypes.linear = h.dtype;
        const a = sg.gelu(h, 'tanh');
        dtypes.gelu = a.dtype;
        const r = a.add(x);
        dtypes.residual = r.dtype;
        const n = sg.layerNorm(r, d, g);
        dtypes.layerNorm = n.dtype;
        const logits = sg.linear(n, w2);
        dtypes.logits = logits.dtype;
        dtypes.softmax = logits.softmax(-1).dtype;
        dtypes.attention = sg.scaledDotProductAttention(n.reshape(1, bsz, d), n.reshape(1, bsz, d), n.reshape(1, bsz, d), { causal: true }).dtype;
        dtypes.nested = sg.autocast(false, () => sg.linear(n, w2).dtype);
        const l = sg.crossEntropy(logits, targets);
        dtypes.loss = l.dtype;
        return l;
      });
      assert.equal(dtypes, {
        linear: dtype,
        gelu: dtype,
        residual: 'float32',
        layerNorm: 'float32',
        logits: dtype,
        softmax: 'float32',
        attention: dtype,
        nested: 'float32',
        loss: 'float32',
      });
      assert.is(sg.autocastDtype(), null, 'autocast ends with its function');
      loss.backward();
      for (const p of [w1, b1, w2, g]) assert.is(p.grad!.dtype, 'float32', 'parameters keep float32 gradients');
      // The same model with the casts written out by hand gives the same loss and gradients.
      const grads = await Promise.all([w1, b1, w2, g].map((p) => p.grad!.toArray()));
      const lv = await loss.item();
      for (const p of [w1, b1, w2, g]) p.grad = null;
      const c = (t: Tensor) => t.cast(dtype);
      const h = sg.linear(c(x), c(w1), c(b1));
      const n = sg.layerNorm(sg.gelu(h, 'tanh').add(x), d, g);
      const manual = sg.crossEntropy(sg.linear(c(n), c(w2)).cast('float32'), targets);
      manual.backward();
      assert.is(await manual.item(), lv, 'autocast equals the explicit casts');
      const again = await Promise.all([w1, b1, w2, g].map((p) => p.grad!.toArray()));
      again.forEach((a, i) => assert.equal(Array.from(a), Array.from(grads[i]), `gradient ${i} equals the explicit casts'`));
    }
    assertThrows(() => sg.autocast('float32' as never, () => 0), /autocast: dtype must be 'bfloat16', 'float16' or false, got 'float32'/);
  });

  test('autocast casts an op output once for all its products, parameters at every use', async () => {
    const [bsz, d] = [4, 16];
    for (const dtype of held()) {
      sg.manualSeed(seed);
      const w = sg.randn([d, d], { backend, std: 0.3, requiresGrad: true });
      const x = sg.randn([bsz, d], { backend, requiresGrad: true });
      const inputs: Tensor[] = [];
      const loss = sg.autocast(dtype, () => {
        const h = x.mul(2);
        const [y1, y2] = [sg.linear(h, w), sg.linear(h, w)];
        inputs.push(...y1.gradNode!.inputs, ...y2.gradNode!.inputs);
        return y1.add(y2.mul(0.5)).sum();
      });
      assert.is(inputs[0], inputs[2], 'one cast of h serves both products');
      assert.is.not(inputs[1], inputs[3], 'the weight is cast at each use');
      loss.backward();
      // dL/dx = 2 (1 + 0.5) (column sums of the rounded weight), each product's share rounded.
      const wv = Float64Array.from(await w.cast(dtype).toArray());
      const colSums = Float64Array.from({ length: bsz * d }, (_, i) => [...Array(d).keys()].reduce((s, j) => s + wv[j * d + (i % d)], 0));
      const colMags = Float64Array.from({ length: bsz * d }, (_, i) => [...Array(d).keys()].reduce((s, j) => s + Math.abs(wv[j * d + (i % d)]), 0));
      assertHalf(
        await x.grad!.toArray(),
        colSums.map((v) => 3 * v),
        dtype,
        'dL/dx through one cast',
        4,
        colMags.map((v) => 3 * v),
      );
    }
  });

  test.run();
}

// Every backend here holds every dtype, so the refusal is checked on a backend that claims fewer.
const refusal = suite('a dtype the backend does not hold');
refusal('is refused with an Error naming the dtype, the backend and what it holds', () => {
  const narrow = Object.assign(Object.create(getBackend()), { name: 'narrow', dtypes: ['float32', 'int32'] });
  assertThrows(
    () => tensor([1, 2], undefined, { backend: narrow, dtype: 'bfloat16' }),
    /tensor: the narrow backend cannot hold bfloat16 tensors \(it holds float32, int32\)/,
  );
  assertThrows(() => tensor([1, 2], undefined, { backend: narrow }).cast('float16'), /cast: the narrow backend cannot hold float16 tensors/);
  assertThrows(() => sg.zeros([2], { backend: narrow, dtype: 'float16' }), /zeros: the narrow backend cannot hold float16 tensors/);
});
refusal.run();
