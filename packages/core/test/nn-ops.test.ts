import * as assert from 'uvu/assert';
import * as sg from '@sparsegrad/core';
import { setBackend } from '@sparsegrad/core';
import { tensor } from '@sparsegrad/core';
import { assertClose, assertThrows, backendSuites, f32, gradCheck, randomArray } from './helpers.ts';

function refSoftmaxRows(x: ArrayLike<number>, rows: number, n: number, log: boolean): Float64Array {
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const row = Array.from({ length: n }, (_, j) => x[r * n + j]);
    const m = Math.max(...row);
    const z = row.reduce((s, v) => s + Math.exp(v - m), 0);
    row.forEach((v, j) => (out[r * n + j] = log ? v - m - Math.log(z) : Math.exp(v - m) / z));
  }
  return out;
}

/**
 * float64 attention, written with loops: out[b, i, :] = sum_j softmax_j(scale q_i . k_j + mask[b, j]
 * (+ -inf above the diagonal when causal)) v_j, for q [B, Tq, d], k [B, Tk, d], v [B, Tk, dv]
 * (B the flattened batch dims; mask [B, Tk] or none).
 */
function refAttention(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dims: { B: number; Tq: number; Tk: number; d: number; dv: number },
  scale: number,
  causal: boolean,
  mask?: ArrayLike<number>,
): Float64Array {
  const { B, Tq, Tk, d, dv } = dims;
  const out = new Float64Array(B * Tq * dv);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Tq; i++) {
      const s = new Float64Array(Tk).fill(Number.NEGATIVE_INFINITY);
      for (let j = 0; j < Tk; j++) {
        if (causal && j > i) continue;
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[(b * Tq + i) * d + c] * k[(b * Tk + j) * d + c];
        s[j] = scale * dot + (mask ? mask[b * Tk + j] : 0);
      }
      const m = Math.max(...s);
      const e = Array.from(s, (x) => Math.exp(x - m));
      const z = e.reduce((a, x) => a + x, 0);
      for (let j = 0; j < Tk; j++) for (let c = 0; c < dv; c++) out[(b * Tq + i) * dv + c] += (e[j] / z) * v[(b * Tk + j) * dv + c];
    }
  }
  return out;
}

for (const { backend, test } of await backendSuites('nn ops')) {
  // Modules and creation functions without an explicit backend use the current one.
  test.before(async () => void (await setBackend(backend.name)));
  const T = (d: ArrayLike<number>, shape: number[]) => tensor(Float32Array.from(d), shape, { backend });
  const I = (d: number[], shape?: number[]) => tensor(Int32Array.from(d), shape, { backend });

  test('softmax and logSoftmax on the last and other axes', async () => {
    // Short rows take the GPU backends' several-rows-per-workgroup kernels (WebGPU: up to 512),
    // 1023 and 1500 the workgroup-per-row ones.
    for (const n of [1, 7, 33, 300, 1023, 1500]) {
      const x = f32(randomArray(3 * n, n, 5));
      assertClose(await T(x, [3, n]).softmax().toArray(), refSoftmaxRows(x, 3, n, false), 1e-6, `softmax n=${n}`);
      assertClose(await T(x, [3, n]).logSoftmax().toArray(), refSoftmaxRows(x, 3, n, true), 1e-5, `logSoftmax n=${n}`);
    }
    const x = f32(randomArray(12, 3));
    const along0 = await T(x, [3, 4]).softmax(0).toArray();
    const ref = refSoftmaxRows(
      Array.from({ length: 12 }, (_, i) => x[(i % 3) * 4 + Math.floor(i / 3)]),
      4,
      3,
      false,
    );
    assertClose(
      along0,
      Array.from({ length: 12 }, (_, i) => ref[(i % 4) * 3 + Math.floor(i / 4)]),
      1e-6,
      'axis 0',
    );
    // large logits stay finite
    assertClose(await T([1000, 0, -1000], [3]).softmax().toArray(), [1, 0, 0], 1e-6);
    await gradCheck((t) => t.softmax(), [{ data: randomArray(12, 1), shape: [3, 4] }], { backend });
    await gradCheck((t) => t.logSoftmax(0), [{ data: randomArray(12, 2), shape: [3, 4] }], { backend });
    // Longer rows (both GPU kernel kinds, 9 rows: a partial workgroup of rows) against the
    // closed forms in float64: softmax dx = y (dy - sum(dy y)), logSoftmax dx = dy - e^y sum(dy).
    for (const n of [33, 300, 1500]) {
      const x = f32(randomArray(9 * n, n, 3));
      const dy = f32(randomArray(9 * n, n + 1));
      for (const log of [false, true]) {
        const y = refSoftmaxRows(x, 9, n, log);
        const ref = new Float64Array(9 * n);
        for (let r = 0; r < 9; r++) {
          let dot = 0;
          for (let j = 0; j < n; j++) dot += log ? dy[r * n + j] : dy[r * n + j] * y[r * n + j];
          for (let j = 0; j < n; j++) ref[r * n + j] = log ? dy[r * n + j] - Math.exp(y[r * n + j]) * dot : y[r * n + j] * (dy[r * n + j] - dot);
        }
        const t = T(x, [9, n]).requiresGrad_();
        (log ? t.logSoftmax() : t.softmax())
          .mul(T(dy, [9, n]))
          .sum()
          .backward();
        assertClose(await t.grad!.toArray(), ref, 1e-5, `${log ? 'logSoftmax' : 'softmax'} gradient n=${n}`);
      }
    }
  });

  test('causalSoftmax: row i of each [T, T] matrix over columns 0..i, exact zeros above the diagonal', async () => {
    // T = 300 takes the CUDA kernels' block-per-row path, 1 and 7 the warp path; WebGPU takes
    // its short-row kernel up to 512 and one workgroup per row for 1030.
    for (const t of [1, 7, 33, 300, 1030]) {
      const x = f32(randomArray(2 * t * t, t, 4));
      const ref = new Float64Array(2 * t * t);
      for (let r = 0; r < 2 * t; r++) {
        const keep = (r % t) + 1;
        const row = refSoftmaxRows(
          Array.from({ length: keep }, (_, j) => x[r * t + j]),
          1,
          keep,
          false,
        );
        for (let j = 0; j < keep; j++) ref[r * t + j] = row[j];
      }
      const got = await sg.causalSoftmax(T(x, [2, 1, t, t])).toArray();
      assertClose(got, ref, 1e-6, `T=${t}`);
      for (let r = 0; r < 2 * t; r++) for (let j = (r % t) + 1; j < t; j++) assert.is(got[r * t + j], 0, `(${r}, ${j}) is exactly 0`);
    }
    // Its gradient: finite differences, and the additive-mask formulation it replaces.
    await gradCheck((t) => sg.causalSoftmax(t), [{ data: randomArray(2 * 16, 6), shape: [2, 4, 4] }], { backend });
    const d = randomArray(3 * 25, 8);
    const mask = T(
      Array.from({ length: 25 }, (_, i) => (i % 5 > Math.floor(i / 5) ? -1e9 : 0)),
      [5, 5],
    );
    const dy = T(randomArray(75, 9), [3, 5, 5]);
    const a = T(d, [3, 5, 5]).requiresGrad_();
    const b = T(d, [3, 5, 5]).requiresGrad_();
    sg.causalSoftmax(a).mul(dy).sum().backward();
    b.add(mask).softmax().mul(dy).sum().backward();
    assertClose(await a.grad!.toArray(), await b.grad!.toArray(), 1e-6, 'gradient');
    assertThrows(() => sg.causalSoftmax(T(randomArray(6, 1), [2, 3])), /causalSoftmax: expected square scores \[\.\.\., T, T\], got \[2, 3\]/);
  });

  test('attentionWeights equals softmax(scale q k^T + mask) with and without the causal cut, gradients included', async () => {
    const [b, h, t, d] = [2, 3, 5, 4];
    const qd = randomArray(b * h * t * d, 21);
    const kd = randomArray(b * h * t * d, 22);
    const maskData = Array.from({ length: b * t }, (_, i) => (i % t === t - 1 && i >= t ? -1e9 : 0)); // last key of batch 1 padded
    const upper = Array.from({ length: t * t }, (_, i) => (i % t > Math.floor(i / t) ? -1e9 : 0));
    for (const causal of [false, true]) {
      for (const withMask of [false, true]) {
        const mask = withMask ? T(maskData, [b, 1, 1, t]) : null;
        const got = sg.attentionWeights(T(qd, [b, h, t, d]), T(kd, [b, h, t, d]), { scale: 0.5, causal, mask });
        let ref = T(qd, [b, h, t, d])
          .mul(0.5)
          .matmul(T(kd, [b, h, t, d]).transpose(-2, -1));
        if (mask) ref = ref.add(mask);
        if (causal) ref = ref.add(T(upper, [t, t]));
        assertClose(await got.toArray(), await ref.softmax().toArray(), 1e-6, `causal ${causal}, mask ${withMask}`);
        await gradCheck(
          (q, k) => sg.attentionWeights(q, k, { scale: 0.5, causal, mask }),
          [
            { data: qd, shape: [b, h, t, d] },
            { data: kd, shape: [b, h, t, d] },
          ],
          { backend },
        );
      }
    }
    assertThrows(
      () => sg.attentionWeights(T(qd.slice(0, 20), [5, 4]), T(kd.slice(0, 15), [5, 3]), { scale: 1 }),
      /attentionWeights: q \[\.\.\., Tq, d\] and k \[\.\.\., Tk, d\] must share d, got \[5, 4\] and \[5, 3\]/,
    );
    assertThrows(
      () => sg.attentionWeights(T(qd.slice(0, 20), [5, 4]), T(kd.slice(0, 12), [3, 4]), { scale: 1, causal: true }),
      /attentionWeights: a causal mask needs as many queries as keys/,
    );
    assertThrows(
      () => sg.attentionWeights(T(qd, [b, h, t, d]), T(kd, [b, h, t, d]), { scale: 1, mask: T(maskData, [b, t, 1, 1]) }),
      /attentionWeights: mask of shape \[2, 5, 1, 1\] does not broadcast to the scores \[2, 3, 5, 5\]/,
    );
    assertThrows(
      () => sg.attentionWeights(T(qd, [b, h, t, d]), T(kd, [b, h, t, d]), { scale: Infinity }),
      /attentionWeights: scale must be finite, got Infinity/,
    );
  });

  test('scaledDotProductAttention equals float64 attention: Tq != Tk, masks, the causal cut, head sizes 32-128, broadcast batch dims', async () => {
    const cases = [
      { h: 3, tq: 5, tk: 7, d: 4, dv: 6, causal: false, masked: true },
      { h: 2, tq: 7, tk: 7, d: 8, dv: 8, causal: true, masked: false },
      { h: 2, tq: 9, tk: 9, d: 16, dv: 16, causal: true, masked: true },
      { h: 1, tq: 5, tk: 5, d: 32, dv: 32, causal: false, masked: false },
      { h: 1, tq: 3, tk: 3, d: 64, dv: 64, causal: true, masked: false },
      { h: 1, tq: 3, tk: 4, d: 128, dv: 128, causal: false, masked: true },
    ];
    for (const [n, c] of cases.entries()) {
      const b = 2;
      const qd = f32(randomArray(b * c.h * c.tq * c.d, 40 + n));
      const kd = f32(randomArray(b * c.h * c.tk * c.d, 50 + n));
      const vd = f32(randomArray(b * c.h * c.tk * c.dv, 60 + n));
      // Padding: batch 1's last key is masked out.
      const maskData = Array.from({ length: b * c.tk }, (_, i) => (i === 2 * c.tk - 1 ? -1e9 : 0));
      const mask = c.masked ? T(maskData, [b, 1, 1, c.tk]) : null;
      const got = sg.scaledDotProductAttention(T(qd, [b, c.h, c.tq, c.d]), T(kd, [b, c.h, c.tk, c.d]), T(vd, [b, c.h, c.tk, c.dv]), { causal: c.causal, mask });
      assert.equal(got.shape, [b, c.h, c.tq, c.dv]);
      const perHead = c.masked ? Array.from({ length: b * c.h * c.tk }, (_, i) => maskData[Math.floor(i / (c.h * c.tk)) * c.tk + (i % c.tk)]) : undefined;
      const ref = refAttention(qd, kd, vd, { B: b * c.h, Tq: c.tq, Tk: c.tk, d: c.d, dv: c.dv }, 1 / Math.sqrt(c.d), c.causal, perHead);
      assertClose(await got.toArray(), ref, 2e-5, `case ${n}`);
    }
    // k and v shared by both batch entries (batch dim 1 broadcast), and an explicit scale.
    const [h, t, d] = [2, 4, 8];
    const qd = f32(randomArray(2 * h * t * d, 71));
    const kd = f32(randomArray(h * t * d, 72));
    const vd = f32(randomArray(h * t * d, 73));
    const got = sg.scaledDotProductAttention(T(qd, [2, h, t, d]), T(kd, [1, h, t, d]), T(vd, [1, h, t, d]), { scale: 0.3 });
    const twice = (x: Float64Array) => Float64Array.from([...x, ...x]);
    assertClose(await got.toArray(), refAttention(qd, twice(kd), twice(vd), { B: 2 * h, Tq: t, Tk: t, d, dv: d }, 0.3, false), 2e-5, 'broadcast k, v');
  });

  test('scaledDotProductAttention: gradients of q, k and v by finite differences; dropout as attentionWeights -> dropout -> matmul; bad shapes', async () => {
    const [b, h, tq, tk, d, dv] = [1, 2, 3, 4, 3, 2];
    const inputs = [
      { data: randomArray(b * h * tq * d, 81), shape: [b, h, tq, d] },
      { data: randomArray(b * h * tk * d, 82), shape: [b, h, tk, d] },
      { data: randomArray(b * h * tk * dv, 83), shape: [b, h, tk, dv] },
    ];
    const mask = T([0, 0, -1e9, 0], [1, 1, 1, tk]);
    await gradCheck((q, k, v) => sg.scaledDotProductAttention(q, k, v, { mask }), inputs, { backend });
    const square = inputs.map((x, i) => (i === 0 ? { data: randomArray(b * h * tk * d, 84), shape: [b, h, tk, d] } : x));
    await gradCheck((q, k, v) => sg.scaledDotProductAttention(q, k, v, { causal: true }), square, { backend });

    const [q, k, v] = square.map((x) => T(x.data, x.shape));
    sg.manualSeed(5);
    const dropped = await sg.scaledDotProductAttention(q, k, v, { dropout: 0.5 }).toArray();
    sg.manualSeed(5);
    const composed = sg.dropout(sg.attentionWeights(q, k, { scale: 1 / Math.sqrt(d) }), 0.5).matmul(v);
    assertClose(dropped, await composed.toArray(), 1e-6, 'dropout on the weights');

    assertThrows(
      () => sg.scaledDotProductAttention(q, k, T(randomArray(b * h * 3 * dv, 1), [b, h, 3, dv])),
      /scaledDotProductAttention: v \[\.\.\., Tk, dv\] must have as many rows as k \[\.\.\., Tk, d\] has keys, got \[1, 2, 3, 2\] and \[1, 2, 4, 3\]/,
    );
    assertThrows(() => sg.scaledDotProductAttention(q, k, v, { dropout: 1 }), /scaledDotProductAttention: dropout must be in \[0, 1\), got 1/);
    assertThrows(
      () => sg.scaledDotProductAttention(q, k, T(randomArray(b * 3 * tk * dv, 1), [b, 3, tk, dv])),
      /scaledDotProductAttention: .*\[1, 2\].*\[1, 3\]/,
    );
  });

  test('layerNorm with and without affine parameters', async () => {
    const n = 33;
    const rows = 4;
    const x = f32(randomArray(rows * n, 4, 3));
    const g = f32(randomArray(n, 5));
    const b = f32(randomArray(n, 6));
    const ref = new Float64Array(rows * n);
    for (let r = 0; r < rows; r++) {
      const row = Array.from({ length: n }, (_, j) => x[r * n + j]);
      const mu = row.reduce((s, v) => s + v, 0) / n;
      const v = row.reduce((s, u) => s + (u - mu) ** 2, 0) / n;
      row.forEach((u, j) => (ref[r * n + j] = ((u - mu) / Math.sqrt(v + 1e-5)) * g[j] + b[j]));
    }
    assertClose(await sg.layerNorm(T(x, [2, 2, n]), n, T(g, [n]), T(b, [n])).toArray(), ref, 1e-5);
    await gradCheck(
      (t, w, c) => sg.layerNorm(t, 5, w, c),
      [
        { data: randomArray(15, 1, 2), shape: [3, 5] },
        { data: randomArray(5, 2), shape: [5] },
        { data: randomArray(5, 3), shape: [5] },
      ],
      { backend },
    );
    await gradCheck((t) => sg.layerNorm(t, [2, 3]), [{ data: randomArray(12, 7), shape: [2, 2, 3] }], { backend });
    assertThrows(() => sg.layerNorm(T(x, [4, n]), 8), /layerNorm: normalizedShape \[8\] does not match the trailing dimensions of input \[4, 33\]/);
  });

  test('layerNorm over many rows, short and long: output, input and parameter gradients match float64', async () => {
    // n = 70 takes the GPU backends' short-row kernels, 1100 one workgroup per row (WebGPU).
    for (const [rows, n] of [
      [300, 70],
      [37, 1100],
    ]) {
      const x = f32(randomArray(rows * n, 11));
      const dy = f32(randomArray(rows * n, 12));
      const gd = f32(randomArray(n, 13));
      const g = T(gd, [n]).requiresGrad_();
      const b = T(randomArray(n, 14), [n]).requiresGrad_();
      const xt = T(x, [rows, n]).requiresGrad_();
      const y = sg.layerNorm(xt, n, g, b);
      y.backward(T(dy, [rows, n]));
      const [yRef, dx] = [new Float64Array(rows * n), new Float64Array(rows * n)];
      const [dg, db] = [new Float64Array(n), new Float64Array(n)];
      const bd = await b.toArray();
      for (let r = 0; r < rows; r++) {
        const row = Array.from(x.subarray(r * n, (r + 1) * n));
        const mu = row.reduce((a, v) => a + v, 0) / n;
        const rstd = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mu) ** 2, 0) / n + 1e-5);
        const xh = row.map((v) => (v - mu) * rstd);
        const d = xh.map((_, j) => dy[r * n + j] * gd[j]);
        const md = d.reduce((a, v) => a + v, 0) / n;
        const mdx = d.reduce((a, v, j) => a + v * xh[j], 0) / n;
        xh.forEach((h, j) => {
          yRef[r * n + j] = h * gd[j] + bd[j];
          dx[r * n + j] = rstd * (d[j] - md - h * mdx);
          dg[j] += dy[r * n + j] * h;
          db[j] += dy[r * n + j];
        });
      }
      assertClose(await y.toArray(), yRef, 1e-5, `output n=${n}`);
      assertClose(await xt.grad!.toArray(), dx, 1e-4, `dx n=${n}`);
      assertClose(await g.grad!.toArray(), dg, 1e-4, `dgamma n=${n}`);
      assertClose(await b.grad!.toArray(), db, 1e-4, `dbeta n=${n}`);
    }
  });

  test('dropout: keeps about 1-p of the entries, scaled; identity in eval', async () => {
    sg.manualSeed(3);
    const x = sg.ones([100000], { backend });
    const y = await sg.dropout(x, 0.3).toArray();
    const kept = y.filter((v) => v !== 0);
    assert.ok(Math.abs(kept.length / y.length - 0.7) < 0.01, `kept fraction ${kept.length / y.length}`);
    assertClose(kept.slice(0, 10), new Array(10).fill(1 / 0.7), 1e-6);
    assert.is(sg.dropout(x, 0.3, false), x);
    assertThrows(() => sg.dropout(x, 1), /dropout: p must be in \[0, 1\), got 1/);
    assertThrows(() => sg.dropout(sg.ones([2], { backend, dtype: 'int32' }), 0.5), /dropout: expected a floating-point tensor/);
    // The mask is the draw of rand() with the same key, compared with p and scaled (in every dtype
    // the backend holds: 1/(1-p) rounded once to it).
    for (const dtype of (['float32', 'bfloat16', 'float16'] as const).filter((d) => backend.dtypes.includes(d))) {
      const v = sg.randn([3000], { backend, dtype });
      sg.manualSeed(11);
      const u = await sg.rand([3000], { backend }).toArray();
      sg.manualSeed(11);
      const dropped = await sg.dropout(v, 0.3).toArray();
      const vv = await v.toArray();
      const keep = sg.roundTo(dtype, Math.fround(1 / 0.7));
      assert.equal(
        Array.from(dropped),
        Array.from(vv, (e, i) => (u[i] >= Math.fround(0.3) ? sg.roundTo(dtype, e * keep) : 0)),
        `dropout mask (${dtype})`,
      );
    }
    // gradient flows through the kept entries only
    const z = T([1, 2, 3, 4, 5, 6, 7, 8], [8]).requiresGrad_();
    const out = sg.dropout(z, 0.5);
    out.sum().backward();
    assert.equal(
      [...(await z.grad!.toArray())],
      [...(await out.toArray())].map((v) => (v === 0 ? 0 : 2)),
    );
  });

  test('crossEntropy with ignoreIndex and label smoothing; mseLoss', async () => {
    const C = 5;
    const logits = f32(randomArray(4 * C, 8, 3));
    const targets = [1, 4, -100, 0];
    const logp = refSoftmaxRows(logits, 4, C, true);
    const valid = targets.map((t, i) => [t, i] as const).filter(([t]) => t !== -100);
    const nll = valid.reduce((s, [t, i]) => s - logp[i * C + t], 0) / valid.length;
    assertClose([await sg.crossEntropy(T(logits, [4, C]), I(targets)).item()], [nll], 1e-6, 'mean nll');
    const ls = 0.1;
    const smooth =
      valid.reduce((s, [t, i]) => {
        const uniform = -Array.from({ length: C }, (_, j) => logp[i * C + j]).reduce((a, b) => a + b, 0) / C;
        return s + (1 - ls) * -logp[i * C + t] + ls * uniform;
      }, 0) / valid.length;
    assertClose([await sg.crossEntropy(T(logits, [2, 2, C]), I(targets, [2, 2]), { labelSmoothing: ls }).item()], [smooth], 1e-6, 'smoothed');
    const none = await sg.crossEntropy(T(logits, [4, C]), I(targets), { reduction: 'none' }).toArray();
    assertClose(
      none,
      targets.map((t, i) => (t === -100 ? 0 : -logp[i * C + t])),
      1e-5,
      'none',
    );
    await gradCheck((t) => sg.crossEntropy(t, I(targets), { labelSmoothing: 0.2 }), [{ data: logits, shape: [4, C] }], { backend });
    await gradCheck(
      (p, q) => sg.mseLoss(p, q),
      [
        { data: randomArray(6, 1), shape: [2, 3] },
        { data: randomArray(6, 2), shape: [2, 3] },
      ],
      { backend },
    );
    assertThrows(
      () => sg.crossEntropy(T(logits, [4, C]), I([1, 2, 3])),
      /crossEntropy: targets shape \[3\] must equal logits shape \[4, 5\] without its last \(class\) axis/,
    );
    assertThrows(() => sg.crossEntropy(T(logits, [4, C]), T([1, 2, 3, 4], [4])), /crossEntropy: targets must be int32 class indices, got float32/);
    assertThrows(() => sg.mseLoss(T([1], [1]), T([1, 2], [2])), /mseLoss: prediction shape \[1\] and target shape \[2\] differ/);
  });

  test.run();
}
