/**
 * scaledDotProductAttention in the 16-bit dtypes against a float64 reference computed from the
 * rounded inputs: outputs and the three gradients, causal and not, sequence lengths that are not
 * multiples of the kernels' tiles, head sizes 32, 64 and 128, several heads. Where the backend
 * has fused attention kernels the op must take them (its graph records 'flashAttention'); the CPU
 * backend composes it, so the same checks hold both forms to one reference.
 */
import * as assert from 'uvu/assert';
import * as sg from '@sparsegrad/core';
import { type HalfDType, type Tensor, tensor } from '@sparsegrad/core';
import { backendSuites, randomArray, testSeed } from './helpers.ts';

const U: Record<HalfDType, number> = { bfloat16: 2 ** -8, float16: 2 ** -11 };

/** float64 attention of one head and its gradients for dL/dout = dout. */
function reference(q: Float64Array, k: Float64Array, v: Float64Array, dout: Float64Array, tq: number, tk: number, d: number, causal: boolean) {
  const scale = 1 / Math.sqrt(d);
  const p = new Float64Array(tq * tk);
  for (let i = 0; i < tq; i++) {
    let mx = -Infinity;
    const s = new Float64Array(tk);
    for (let j = 0; j < tk; j++) {
      if (causal && j > i) continue;
      for (let c = 0; c < d; c++) s[j] += q[i * d + c] * k[j * d + c];
      s[j] *= scale;
      mx = Math.max(mx, s[j]);
    }
    let z = 0;
    for (let j = 0; j < tk; j++) if (!(causal && j > i)) z += Math.exp(s[j] - mx);
    for (let j = 0; j < tk; j++) p[i * tk + j] = causal && j > i ? 0 : Math.exp(s[j] - mx) / z;
  }
  const out = new Float64Array(tq * d);
  const dq = new Float64Array(tq * d);
  const dk = new Float64Array(tk * d);
  const dv = new Float64Array(tk * d);
  for (let i = 0; i < tq; i++) {
    const dp = new Float64Array(tk);
    let dot = 0;
    for (let j = 0; j < tk; j++) {
      for (let c = 0; c < d; c++) {
        out[i * d + c] += p[i * tk + j] * v[j * d + c];
        dp[j] += dout[i * d + c] * v[j * d + c];
        dv[j * d + c] += p[i * tk + j] * dout[i * d + c];
      }
      dot += dp[j] * p[i * tk + j];
    }
    for (let j = 0; j < tk; j++) {
      const ds = p[i * tk + j] * (dp[j] - dot) * scale;
      for (let c = 0; c < d; c++) {
        dq[i * d + c] += ds * k[j * d + c];
        dk[j * d + c] += ds * q[i * d + c];
      }
    }
  }
  return { out, dq, dk, dv };
}

/** Normwise: the largest error within `ulps` units of the format times the largest reference magnitude (plus float32 noise where that is 0). */
function assertNormwise(got: ArrayLike<number>, want: ArrayLike<number>, dtype: HalfDType, ulps: number, what: string): void {
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    worst = Math.max(worst, Number.isNaN(got[i]) ? Infinity : Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  assert.ok(worst <= ulps * U[dtype] * scale + 1e-6, `${what} [${dtype}]: largest error ${worst} exceeds ${ulps} x ${U[dtype]} x ${scale}`);
}

for (const { backend, test } of await backendSuites('fused attention')) {
  const seed = testSeed();
  const held = () => (['bfloat16', 'float16'] as const).filter((d) => backend.dtypes.includes(d));

  test('16-bit attention and its gradients against float64 (causal and not, ragged lengths, head sizes 32-128)', async () => {
    const cases: [number, number, number, number, boolean][] = [
      // heads, tq, tk, d, causal
      [2, 77, 77, 64, true],
      [3, 40, 130, 32, false],
      [2, 100, 100, 128, true],
      [1, 64, 64, 64, false],
      [2, 1, 1, 32, true],
    ];
    for (const dtype of held()) {
      for (const [heads, tq, tk, d, causal] of cases) {
        const what = `${heads} heads, tq ${tq}, tk ${tk}, d ${d}${causal ? ', causal' : ''}`;
        const make = (n: number, s: number, scale = 1) => tensor(Float32Array.from(randomArray(n, s, scale)), undefined, { backend, dtype });
        const q = make(heads * tq * d, seed + tq, 2)
          .reshape(heads, tq, d)
          .requiresGrad_();
        const k = make(heads * tk * d, seed + tk + 1, 2)
          .reshape(heads, tk, d)
          .requiresGrad_();
        const v = make(heads * tk * d, seed + d + 2)
          .reshape(heads, tk, d)
          .requiresGrad_();
        const dout = make(heads * tq * d, seed + 3).reshape(heads, tq, d);
        const out = sg.scaledDotProductAttention(q, k, v, { causal });
        assert.is(out.dtype, dtype);
        const spec = { batch: heads, heads, tq, tk, d, dv: d, scale: 1 / Math.sqrt(d), causal, dropout: 0, key: 0, keepScale: 1 };
        if (backend.fusedAttention?.supports(spec, dtype)) assert.is(out.gradNode?.op, 'flashAttention', `${what}: the fused kernels ran`);
        out.backward(dout);
        const [qv, kv, vv, dov, ov, dq, dk, dv] = await Promise.all([q, k, v, dout, out, q.grad!, k.grad!, v.grad!].map((t) => t.toArray()));
        for (let h = 0; h < heads; h++) {
          const sub = (a: sg.TypedArray, t: number) => Float64Array.from(a.subarray(h * t * d, (h + 1) * t * d));
          const ref = reference(sub(qv, tq), sub(kv, tk), sub(vv, tk), sub(dov, tq), tq, tk, d, causal);
          assertNormwise(sub(ov, tq), ref.out, dtype, 4, `${what}: head ${h} output`);
          assertNormwise(sub(dv, tk), ref.dv, dtype, 8, `${what}: head ${h} dV`);
          assertNormwise(sub(dq, tq), ref.dq, dtype, 16, `${what}: head ${h} dQ`);
          assertNormwise(sub(dk, tk), ref.dk, dtype, 16, `${what}: head ${h} dK`);
        }
      }
    }
  });

  test('heads where they lie: [B, T, H, d] projections, a fused qkv tensor, heads broadcast, unaligned rows', async () => {
    const [B, T, H, d] = [2, 37, 3, 32];
    type Case = { leaves: number[][]; views: (l: Tensor[]) => Tensor[]; sharedKv?: boolean };
    const cases: Record<string, Case> = {
      // Heads split out of projections: [B, H, T, d] views of [B, T, H, d] tensors.
      projections: {
        leaves: [
          [B, T, H, d],
          [B, T, H, d],
          [B, T, H, d],
        ],
        views: (l) => l.map((x) => x.permute(0, 2, 1, 3)),
      },
      // q, k and v as views of one [B, T, 3, H, d] tensor (offsets, a batch stride of 3 H T d).
      'fused qkv': {
        leaves: [[B, T, 3, H, d]],
        views: ([x]) => [0, 1, 2].map((i) => x.permute(2, 0, 3, 1, 4).narrow(0, i, 1)),
      },
      // One k and v for every head (head stride 0).
      'shared k and v': {
        leaves: [
          [B, H, T, d],
          [B, 1, T, d],
          [B, 1, T, d],
        ],
        views: ([q, k, v]) => [q, k.expand(B, H, T, d), v.expand(B, H, T, d)],
        sharedKv: true,
      },
      // Rows 36 elements apart and an offset of 2: not a layout the kernels read, so copied.
      unaligned: {
        leaves: [
          [B, H, T, d + 4],
          [B, H, T, d + 4],
          [B, H, T, d + 4],
        ],
        views: (l) => l.map((x) => x.narrow(3, 2, d)),
      },
      // Leading dims [2, B] around the heads in memory (A, H, B order): they do not collapse into one
      // batch stride, so the inputs are copied and the output and gradients are contiguous.
      'interleaved batch dims': {
        leaves: [
          [2, H, B, T, d],
          [2, H, B, T, d],
          [2, H, B, T, d],
        ],
        views: (l) => l.map((x) => x.permute(0, 2, 1, 3, 4)),
      },
    };
    for (const dtype of held()) {
      for (const [name, c] of Object.entries(cases)) {
        const leaves = c.leaves.map((shape, i) =>
          tensor(
            Float32Array.from(
              randomArray(
                shape.reduce((a, b) => a * b),
                seed + 20 + i,
                2,
              ),
            ),
            shape,
            { backend, dtype, requiresGrad: true },
          ),
        );
        const [q, k, v] = c.views(leaves);
        const out = sg.scaledDotProductAttention(q, k, v, { causal: true });
        assert.equal(out.shape.slice(-3), [H, T, d], name);
        const dout = tensor(Float32Array.from(randomArray(out.size, seed + 30)), out.shape, { backend, dtype });
        out.backward(dout);
        const [qv, kv, vv, ov, dov] = await Promise.all([q, k, v, out, dout].map((t) => t.toArray()));
        const grads = c.sharedKv
          ? [leaves[0].grad!.toArray(), leaves[1].grad!.toArray(), leaves[2].grad!.toArray()]
          : c.views(leaves.map((l) => l.grad!)).map((g) => g.toArray());
        const [dq, dk, dv] = await Promise.all(grads);
        const dkSum = new Float64Array(B * T * d);
        const dvSum = new Float64Array(B * T * d);
        const n = T * d;
        for (let h = 0; h < out.size / n; h++) {
          const sub = (a: sg.TypedArray) => Float64Array.from(a.subarray(h * n, (h + 1) * n));
          const ref = reference(sub(qv), sub(kv), sub(vv), sub(dov), T, T, d, true);
          const what = `${name}: head ${h}`;
          assertNormwise(sub(ov), ref.out, dtype, 4, `${what} output`);
          assertNormwise(sub(dq), ref.dq, dtype, 16, `${what} dQ`);
          if (!c.sharedKv) {
            assertNormwise(sub(dk), ref.dk, dtype, 16, `${what} dK`);
            assertNormwise(sub(dv), ref.dv, dtype, 8, `${what} dV`);
          }
          const b = Math.floor(h / H);
          for (let i = 0; i < n; i++) {
            dkSum[b * n + i] += ref.dk[i];
            dvSum[b * n + i] += ref.dv[i];
          }
        }
        if (c.sharedKv) {
          assertNormwise(dk, dkSum, dtype, 16 * H, `${name}: dK summed over heads`);
          assertNormwise(dv, dvSum, dtype, 8 * H, `${name}: dV summed over heads`);
        }
      }
    }
  });

  test('dropout: the same mask as dropout() of the weights for the same seed, in the output and the gradients', async () => {
    for (const dtype of held()) {
      for (const [t, d, causal] of [
        [70, 64, true],
        [33, 32, false],
      ] as const) {
        const make = (s: number) => tensor(Float32Array.from(randomArray(2 * t * d, s)), [2, t, d], { backend, dtype, requiresGrad: true });
        const [q, k, v] = [make(seed + 11), make(seed + 12), make(seed + 13)];
        const dout = tensor(Float32Array.from(randomArray(2 * t * d, seed + 14)), [2, t, d], { backend, dtype });
        sg.manualSeed(seed);
        const fused = sg.scaledDotProductAttention(q, k, v, { causal, dropout: 0.3 });
        fused.backward(dout);
        const grads = await Promise.all([q, k, v].map((x) => x.grad!.toArray()));
        for (const x of [q, k, v]) x.grad = null;
        sg.manualSeed(seed);
        const weights = sg.attentionWeights(q, k, { scale: 1 / Math.sqrt(d), causal });
        const composed = sg.matmul(sg.dropout(weights, 0.3), v);
        composed.backward(dout);
        const what = `t ${t}, d ${d}${causal ? ', causal' : ''}`;
        assertNormwise(await fused.toArray(), Float64Array.from(await composed.toArray()), dtype, 4, `${what}: output`);
        for (const [i, x] of [q, k, v].entries())
          assertNormwise(grads[i], Float64Array.from(await x.grad!.toArray()), dtype, 16, `${what}: gradient ${'qkv'[i]}`);
      }
    }
  });

  test('masks, dropout and mixed dtypes take the composed form and still agree', async () => {
    for (const dtype of held()) {
      const [t, d] = [20, 32];
      const q = tensor(Float32Array.from(randomArray(t * d, seed + 9)), [1, t, d], { backend, dtype, requiresGrad: true });
      const mask = tensor(
        Float32Array.from({ length: t * t }, (_, i) => (i % t > Math.floor(i / t) ? -1e9 : 0)),
        [t, t],
        { backend },
      );
      const masked = sg.scaledDotProductAttention(q, q, q, { mask });
      const causal = sg.scaledDotProductAttention(q, q, q, { causal: true });
      assert.not.equal(masked.gradNode?.op, 'flashAttention');
      assertNormwise(await masked.toArray(), Float64Array.from(await causal.toArray()), dtype, 4, 'additive causal mask equals causal');
    }
  });

  test.run();
}
