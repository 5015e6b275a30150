/**
 * CUDA-specific behaviour. The shared op and gradient suites of core run on this backend when
 * SPARSEGRAD_TEST_BACKENDS includes cuda; these tests cover what only this backend has: argument
 * packing, the allocator's size classes, matmul precisions, out-of-memory handling, and readback
 * that leaves the event loop free. GPU tests skip with the reason where no GPU can be used.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BlockSparseMatrix,
  backends,
  manualSeed,
  matmul,
  scaledDotProductAttention,
  setFloat32MatmulPrecision,
  tensor,
  type Backend,
  type MatmulPrecision,
} from '@sparsegrad/core';
import { buildLayout, layoutDensity } from '@sparsegrad/core/backend';
import '@sparsegrad/cuda';
import type { CudaBackend, CudaTuning } from '@sparsegrad/cuda';
import { sizeClass } from '../src/allocator.ts';
import { quadrants } from '../src/kernels/blocksparse.ts';
import { takesDenseRoute } from '../src/dense-route.ts';
import { Args } from '../src/args.ts';
import { vectorLayout, stridedLayout, transposeGrid } from '../src/layout.ts';
import { assertRejects, assertThrows, blockSparseRefs, deviceSuite, randomArray, relativeError, testSeed } from '../../core/test/helpers.ts';

test('kernel arguments are laid out as the C ABI lays out parameters', () => {
  const a = new Args()
    .ptr(2 ** 40 + 5)
    .i32(-3)
    .ptr(7)
    .f32(1.5)
    .u32(2 ** 32 - 1);
  assert.equal([...a.offsets], [0, 8, 16, 24, 28]);
  const v = new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  assert.is(v.getUint32(0, true), 5);
  assert.is(v.getUint32(4, true), 2 ** 8);
  assert.is(v.getInt32(8, true), -3);
  assert.is(v.getUint32(16, true), 7);
  assert.is(v.getFloat32(24, true), 1.5);
  assert.is(v.getUint32(28, true), 2 ** 32 - 1);
  // The Strided struct: 4-byte fields, 3 + 6 + 4 + 24 of them.
  const s = new Args()
    .ptr(1)
    .i32(2)
    .strided(10, [2, 5], false, [{ offset: 3, strides: [5, 1] }]);
  assert.equal([...s.offsets], [0, 8, 12]);
  assert.is(s.data.byteLength, 12 + 37 * 4);
  // A 128-byte struct aligned to 64 (a CUtensorMap) after a 4-byte field.
  const map = Uint8Array.from({ length: 128 }, (_, i) => i);
  const t = new Args().u32(9).raw(map, 64).u32(4);
  assert.equal([...t.offsets], [0, 64, 192]);
  assert.equal([...t.data.subarray(64, 192)], [...map]);
});

test('64x64 blocks as 32x32 quadrants: every quadrant points at its own values', () => {
  // A quadrant's elements, read from its offset with row stride 64, must land in its own 64x64
  // block (b = element offset / 4096) at its own quadrant.
  const W = BlockSparseMatrix.random([64 * 5, 64 * 7], { density: 0.4, blockSize: 64 });
  const L = W.layout;
  const { layout32: Q, offsets } = quadrants(L);
  assert.is(Q.nnzBlocks, 4 * L.nnzBlocks);
  assert.is(Q.blockSize, 32);
  const blockAt = new Map<string, number>();
  for (let b = 0; b < L.nnzBlocks; b++) blockAt.set(`${L.rowIdx[b]},${L.colIdx[b]}`, b);
  for (let s = 0; s < Q.nnzBlocks; s++) {
    const b = blockAt.get(`${Q.rowIdx[s] >> 1},${Q.colIdx[s] >> 1}`);
    assert.ok(b !== undefined, `quadrant (${Q.rowIdx[s]}, ${Q.colIdx[s]}) lies in a stored block`);
    const [r0, c0] = [(Q.rowIdx[s] & 1) * 32, (Q.colIdx[s] & 1) * 32];
    for (const [r, c] of [
      [0, 0],
      [31, 31],
      [5, 17],
    ]) {
      const at = offsets[s] + r * 64 + c;
      assert.equal([Math.floor(at / 4096), at % 4096], [b, (r0 + r) * 64 + c0 + c], `quadrant ${s} element (${r}, ${c})`);
    }
  }
  W.data.dispose();
});

test('float4 layouts: rows of 4k contiguous floats at offsets of 4k are rescaled, anything else is left to the scalar kernels', () => {
  // [2, 3, 4, 8] permuted to [2, 4, 3, 8] into a contiguous output
  const p = stridedLayout(
    'copy',
    [2, 4, 3, 8],
    [
      { offset: 0, strides: [96, 24, 8, 1] },
      { offset: 4, strides: [96, 8, 32, 1] },
    ],
  );
  assert.equal(vectorLayout(p), {
    n: 48,
    shape: [2, 4, 3, 2],
    flat: false,
    ops: [
      { offset: 0, strides: [24, 6, 2, 1] },
      { offset: 1, strides: [24, 2, 8, 1] },
    ],
  });
  // a bias row broadcast over rows: its outer stride 0 stays 0
  const bias = stridedLayout(
    'add',
    [6, 8],
    [
      { offset: 0, strides: [8, 1] },
      { offset: 0, strides: [8, 1] },
      { offset: 0, strides: [0, 1] },
    ],
  );
  assert.equal(
    vectorLayout(bias)?.ops.map((o) => o.strides),
    [
      [2, 1],
      [2, 1],
      [0, 1],
    ],
  );
  const unaligned = stridedLayout(
    'exp',
    [6, 8],
    [
      { offset: 0, strides: [8, 1] },
      { offset: 2, strides: [16, 1] },
    ],
  );
  assert.is(vectorLayout(unaligned), undefined, 'offset 2');
  const column = stridedLayout(
    'add',
    [6, 8],
    [
      { offset: 0, strides: [8, 1] },
      { offset: 0, strides: [8, 1] },
      { offset: 0, strides: [1, 0] },
    ],
  );
  assert.is(vectorLayout(column), undefined, 'a column broadcast along rows');
  const odd = stridedLayout(
    'neg',
    [5, 6],
    [
      { offset: 0, strides: [6, 1] },
      { offset: 0, strides: [6, 1] },
    ],
  );
  assert.is(vectorLayout(odd), undefined, '30 elements');
  const transposed = stridedLayout(
    'copy',
    [8, 8],
    [
      { offset: 0, strides: [8, 1] },
      { offset: 0, strides: [1, 8] },
    ],
  );
  assert.is(vectorLayout(transposed), undefined, 'a transpose');
  assert.equal(transposeGrid(transposed), [1, 1, 1], 'a transpose goes to the tiled kernel');
  const batched = stridedLayout(
    'copy',
    [32, 512, 256],
    [
      { offset: 0, strides: [131072, 256, 1] },
      { offset: 0, strides: [131072, 1, 512] },
    ],
  );
  assert.equal(transposeGrid(batched), [8, 16, 32], 'a batch of transposes');
  assert.is(transposeGrid(p), undefined, 'a permute that keeps the last dim');
  const gathered = stridedLayout(
    'copy',
    [8, 8],
    [
      { offset: 0, strides: [8, 1] },
      { offset: 0, strides: [2, 16] },
    ],
  );
  assert.is(transposeGrid(gathered), undefined, 'no contiguous source dim');
});

test("dense route: taken from the measured density up, per precision and product; forced by the tuning's denseRoute; never past the temporary bound", () => {
  // The first `count` blocks of a [rows, cols] grid, row by row.
  const layout = (rows: number, cols: number, bs: number, count: number) => {
    const coords: [number, number][] = [];
    for (let i = 0; i < count; i++) coords.push([Math.floor(i / (cols / bs)), i % (cols / bs)]);
    return buildLayout(rows, cols, bs, coords).layout;
  };
  const half = layout(1024, 512, 32, 256); // 32 x 16 blocks, 256 of them
  assert.is(layoutDensity(half), 0.5);
  // 32x32 at 0.5: the TF32 SDDMM goes dense; the TF32 forward and dX and every fp32 product stay.
  assert.ok(takesDenseRoute(half, 'sddmm', 'high'));
  assert.not.ok(takesDenseRoute(half, 'forward', 'high') || takesDenseRoute(half, 'gradInput', 'high'));
  for (const p of ['forward', 'gradInput', 'sddmm'] as const) assert.not.ok(takesDenseRoute(half, p, 'highest'), p);
  // 16x16 on tensor cores: dense from density ~0.1; at 0.05 the kernels.
  assert.ok(takesDenseRoute(layout(512, 512, 16, 103), 'forward', 'medium'));
  assert.not.ok(takesDenseRoute(layout(512, 512, 16, 51), 'forward', 'medium'));
  // A dense temporary over 1 GiB: the kernels, whatever the density.
  assert.not.ok(takesDenseRoute(layout(32768, 16384, 64, 32 * 256), 'sddmm', 'high'));
  // Forced by the tuning's denseRoute.
  assert.ok(takesDenseRoute(layout(512, 512, 16, 1), 'forward', 'highest', 'on'));
  assert.not.ok(takesDenseRoute(half, 'sddmm', 'high', 'off'));
});

test('allocator size classes cover the request with bounded slack', () => {
  let last = 0;
  for (const bytes of [1, 511, 512, 513, 4096, 1 << 20, (1 << 20) + 1, 3e6, 1e8, 2 ** 31 + 7]) {
    const c = sizeClass(bytes);
    assert.ok(c >= bytes, `${c} >= ${bytes}`);
    assert.ok(c <= Math.max(512, bytes * 1.25 + 512), `${c} has at most 25% slack over ${bytes}`);
    assert.ok(c >= last, 'monotonic');
    last = c;
  }
  assert.is(sizeClass(3e6), 3145728);
  assert.is(sizeClass(1000), 1024);
});

const status = (await backends()).find((b) => b.name === 'cuda');
if (!status?.available) {
  test('without a usable GPU the backend reports why', () => {
    assert.is(status?.available, false);
    assert.match(status?.reason ?? '', /libcuda|driver|CUDA device|addon was not built|toolkit/);
  });
}
const onGpu = deviceSuite('CUDA device', status);
let gpu: Backend | null = null;
if (status?.available) {
  const { setBackend } = await import('@sparsegrad/core');
  gpu = await setBackend('cuda');
}

{
  // Read only inside test bodies, which do not run when the suite is skipped.
  const be = gpu as Backend;
  /** ||got - ref|| / ||ref|| of a dense product against float64. */
  async function matmulError(m: number, k: number, n: number, precision: 'highest' | 'high' | 'medium'): Promise<number> {
    const a = randomArray(m * k, 11);
    const b = randomArray(k * n, 12);
    setFloat32MatmulPrecision(precision);
    try {
      const c = matmul(tensor(Float32Array.from(a), [m, k], { backend: be }), tensor(Float32Array.from(b), [k, n], { backend: be }));
      const ref = new Float64Array(m * n);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          for (let q = 0; q < k; q++) ref[i * n + j] += Math.fround(a[i * k + q]) * Math.fround(b[q * n + j]);
        }
      }
      return relativeError(await c.toArray(), ref);
    } finally {
      setFloat32MatmulPrecision('highest');
    }
  }

  onGpu('matmul precision: fp32, TF32 and BF16 tensor cores land where their formats put them', async () => {
    const highest = await matmulError(130, 257, 96, 'highest');
    const high = await matmulError(130, 257, 96, 'high');
    const medium = await matmulError(130, 257, 96, 'medium');
    assert.ok(highest < 1e-5, `fp32 error ${highest}`);
    assert.ok(high < 2e-3, `TF32 error ${high}`);
    assert.ok(medium < 2e-2, `BF16 error ${medium}`);
  });

  onGpu('block-sparse products in TF32 and BF16 match float64 references within their formats', async () => {
    const tol: Record<MatmulPrecision, number> = { highest: 1e-5, high: 2e-3, medium: 2e-2 };
    // Fresh inputs every run (SPARSEGRAD_TEST_SEED repeats one); the seed is in every failure message.
    const seed = testSeed();
    manualSeed(seed);
    for (const bs of [16, 32, 64, 128]) {
      // Tokens: not a multiple of any tile (32x32: several token tiles of the TMA kernels, and the
      // SDDMM splits its tokens into chunks); 9 block rows: a partial union group. 128x128: the
      // dense route.
      const [rows, cols, m] = [bs * 9, bs * 3, bs === 32 ? 777 : 203];
      const W = BlockSparseMatrix.random([rows, cols], { density: 0.6, blockSize: bs, backend: be });
      const L = W.layout;
      const w = await W.data.toArray();
      const x = Float32Array.from(randomArray(m * cols, seed + bs));
      const dy = Float32Array.from(randomArray(m * rows, seed + bs + 1));
      const { y, dx, dw } = blockSparseRefs(L, w, x, dy, m);
      const xb = be.upload(x, 'float32');
      const dyb = be.upload(dy, 'float32');
      const blocks = W.data.storageFor('test').buffer;
      // Every kernel variant (the dense route off): the default choice (TMA kernels on compute
      // capability 9.0, TF32 for 'medium' at this size), bf16 operands forced, and the mma.sync
      // kernels with union tiles forced on and off, the TMA kernels on consecutive groups (by
      // default clustered; 9 block rows: the last group has empty slots), the 32x32 SDDMM on W
      // itself and on W^T for every precision (by default only 'highest' runs on W^T here), the fp32
      // TMA kernel's grid in the plain order and in bands of 3 token tiles (of 4: the last band
      // partial); then the dense route forced, and the default (at density 0.6 some products take
      // it, by block size and precision).
      const kernels = { denseRoute: 'off' } as const;
      const variants: Partial<CudaTuning>[] = [
        kernels,
        { ...kernels, unionCluster: false },
        { ...kernels, sddmmTranspose: 'off' },
        { ...kernels, sddmmTranspose: 'on' },
        { ...kernels, unionCluster: false, bf16Union: 'on' },
        { ...kernels, bf16Union: 'on' },
        { ...kernels, union: 'on', bf16Union: 'on', tma: false },
        { ...kernels, union: 'off', bf16Union: 'off', tma: false },
        { ...kernels, bandTiles: 0 },
        { ...kernels, bandTiles: 3 },
        { denseRoute: 'on' },
        {},
      ];
      for (const [v, precision] of variants.flatMap((v) => (['highest', 'high', 'medium'] as MatmulPrecision[]).map((p) => [v, p] as const))) {
        const previous = (be as CudaBackend).setTuning(v);
        const outs = [be.alloc(m * rows, 'float32'), be.alloc(m * cols, 'float32'), be.alloc(dw.length, 'float32')];
        be.bsrMatmul(xb, blocks, L, m, outs[0], precision);
        be.bsrMatmulGradInput(dyb, blocks, L, m, outs[1], precision);
        be.bsrSddmm(dyb, xb, L, m, outs[2], precision);
        const refs = [y, dx, dw];
        for (let i = 0; i < 3; i++) {
          const err = relativeError(await be.read(outs[i], refs[i].length), refs[i]);
          assert.ok(
            err < tol[precision],
            `${['forward', 'dX', 'dW'][i]} ${bs}x${bs} '${precision}' ${JSON.stringify(v)}: relative error ${err} (seed ${seed})`,
          );
          be.free(outs[i]);
        }
        (be as CudaBackend).setTuning(previous);
      }
      be.free(xb);
      be.free(dyb);
      W.data.dispose();
    }
  });

  onGpu("block-sparse products whose activations exceed the TMA kernels' table stay correct (they fall back)", async () => {
    // 520 column blocks (the TMA kernels keep at most 512 per CTA in shared memory), both ways.
    const n = 32 * 520;
    const m = 5;
    const seed = testSeed();
    manualSeed(seed);
    const W = BlockSparseMatrix.random([n, n], { density: 0.01, blockSize: 32, backend: be });
    const L = W.layout;
    const w = await W.data.toArray();
    const x = Float32Array.from(randomArray(m * n, seed));
    // Square W: x serves as dY too.
    const { y, dx } = blockSparseRefs(L, w, x, x, m);
    const xb = be.upload(x, 'float32');
    const blocks = W.data.storageFor('test').buffer;
    for (const precision of ['highest', 'high'] as MatmulPrecision[]) {
      for (const [i, ref] of [y, dx].entries()) {
        const out = be.alloc(m * n, 'float32');
        if (i === 0) be.bsrMatmul(xb, blocks, L, m, out, precision);
        else be.bsrMatmulGradInput(xb, blocks, L, m, out, precision);
        const err = relativeError(await be.read(out, m * n), ref);
        assert.ok(err < (precision === 'highest' ? 1e-5 : 2e-3), `${i ? 'dX' : 'forward'} '${precision}': relative error ${err} (seed ${seed})`);
        be.free(out);
      }
    }
    be.free(xb);
    W.data.dispose();
  });

  onGpu('fp32 SDDMM on 2-D tiles: groups cut into many items, one and several token chunks, match float64, as the one-row kernel does', async () => {
    // 40 block columns at density 0.6: ~190 blocks per group of 8 block rows, cut into items of at
    // most 16 columns and 32 blocks; 9 block rows leave a partial group; token counts below and
    // above one chunk, not multiples of the 16-token step.
    const seed = testSeed();
    manualSeed(seed);
    const [rows, cols] = [32 * 9, 32 * 40];
    const W = BlockSparseMatrix.random([rows, cols], { density: 0.6, blockSize: 32, backend: be });
    const L = W.layout;
    const w = await W.data.toArray();
    const previous = (be as CudaBackend).setTuning({ denseRoute: 'off' }); // the kernels, whatever the density
    for (const m of [37, 1500]) {
      const x = Float32Array.from(randomArray(m * cols, seed + m));
      const dy = Float32Array.from(randomArray(m * rows, seed + m + 1));
      const { dw } = blockSparseRefs(L, w, x, dy, m);
      const xb = be.upload(x, 'float32');
      const dyb = be.upload(dy, 'float32');
      // 2-D tiles on whole-column items, on filled items (columns split between items, the
      // default), then off.
      for (const [tile, fill] of [
        [true, false],
        [true, true],
        [false, false],
      ]) {
        (be as CudaBackend).setTuning({ sddmmTile: tile, sddmmFill: fill });
        for (const precision of ['highest', 'high'] as MatmulPrecision[]) {
          // 'high' runs the tensor-core kernel either way: a check that the switch leaves it alone.
          const out = be.alloc(dw.length, 'float32');
          be.bsrSddmm(dyb, xb, L, m, out, precision);
          const err = relativeError(await be.read(out, dw.length), dw);
          assert.ok(err < (precision === 'highest' ? 1e-5 : 2e-3), `m ${m}, tiles ${tile}, fill ${fill}, '${precision}': relative error ${err} (seed ${seed})`);
          be.free(out);
        }
      }
      be.free(xb);
      be.free(dyb);
    }
    (be as CudaBackend).setTuning(previous);
    W.data.dispose();
  });

  onGpu('out of memory is an Error naming the op, and the backend keeps working', async () => {
    assertThrows(() => be.alloc(2 ** 45, 'float32'), /cuda: alloc: out of device memory/);
    const t = tensor([1, 2, 3], [3], { backend: be }).mul(2);
    assert.equal([...(await t.toArray())], [2, 4, 6]);
  });

  // 20 large cuBLAS products take minutes under compute-sanitizer, which sets SPARSEGRAD_SANITIZE.
  if (process.env.SPARSEGRAD_SANITIZE !== '1')
    onGpu('readback waits off the event loop', async () => {
      const n = 4096;
      const a = tensor(Float32Array.from(randomArray(n * n, 3)), [n, n], { backend: be });
      let c = a;
      for (let i = 0; i < 20; i++) c = matmul(c, a).mul(1 / 64);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 0);
      await c.toArray();
      clearInterval(timer);
      assert.ok(ticks > 0, `the event loop ran ${ticks} times while ~20 large products computed`);
    });

  onGpu("attention's dQ without atomics (attentionDq 'separate') equals the atomic form, on strided heads, causal or not, with dropout", async () => {
    const seed = testSeed();
    for (const [b, t, h, d, causal, p] of [
      [2, 77, 3, 64, true, 0],
      [1, 130, 2, 32, false, 0.2],
      [2, 45, 2, 128, true, 0.1],
    ] as const) {
      const what = `B ${b}, T ${t}, ${h} heads, d ${d}${causal ? ', causal' : ''}, dropout ${p}`;
      // q, k, v: [B, H, T, d] views of [B, T, H, d] tensors, as MultiHeadAttention makes them.
      const leaf = (s: number) =>
        tensor(Float32Array.from(randomArray(b * t * h * d, s)), [b, t, h, d], { backend: be, dtype: 'bfloat16', requiresGrad: true });
      const leaves = [leaf(seed + 1), leaf(seed + 2), leaf(seed + 3)];
      const dout = tensor(Float32Array.from(randomArray(b * h * t * d, seed + 4)), [b, h, t, d], { backend: be, dtype: 'bfloat16' });
      const run = async (attentionDq: CudaTuning['attentionDq']) => {
        const previous = (be as CudaBackend).setTuning({ attentionDq });
        try {
          for (const l of leaves) l.grad = null;
          manualSeed(seed);
          const [q, k, v] = leaves.map((l) => l.permute(0, 2, 1, 3));
          const out = scaledDotProductAttention(q, k, v, { causal, dropout: p });
          assert.is(out.gradNode?.op, 'flashAttention', `${what}: the fused kernels ran`);
          out.backward(dout);
          return Promise.all([out, ...leaves.map((l) => l.grad!)].map((x) => x.toArray()));
        } finally {
          (be as CudaBackend).setTuning(previous);
        }
      };
      const [atomic, separate] = [await run('atomic'), await run('separate')];
      assert.equal(Array.from(separate[0]), Array.from(atomic[0]), `${what}: the same forward`);
      // dK and dV: the same kernel body (bit for bit); dQ: summed in another order, so within bf16 rounding.
      assert.equal(Array.from(separate[2]), Array.from(atomic[2]), `${what}: dK`);
      assert.equal(Array.from(separate[3]), Array.from(atomic[3]), `${what}: dV`);
      const scale = Math.max(...Array.from(atomic[1], Math.abs));
      const worst = Math.max(...Array.from(separate[1], (x, i) => Math.abs(x - atomic[1][i])));
      assert.ok(worst <= 2 ** -7 * scale, `${what}: dQ differs by ${worst} (largest |dQ| ${scale})`);
    }
  });

  onGpu('bad kernel input is reported, not a crash', async () => {
    await assertRejects(async () => {
      const x = tensor([1, 2], [2], { backend: be });
      return x.reshape(3).toArray();
    }, /reshape/);
  });
}

test.run();
onGpu.run();
