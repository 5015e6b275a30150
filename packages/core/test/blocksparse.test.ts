import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BlockSparseMatrix, bsrMatmul, manualSeed, setBackend, tensor } from '@sparsegrad/core';
import {
  buildLayout,
  buildTileItems,
  buildUnionTable,
  createCpuBackend,
  linesLongestFirst,
  transposedLayout,
  unionGroupsLongestFirst,
} from '@sparsegrad/core/backend';
import { bsrKernel, bsrSddmmKernel } from '../src/ops/blocksparse.ts';
import { assertClose, assertThrows, backendSuites, f32, gradCheck, randomArray } from './helpers.ts';

/** Dense float64 W [rows, cols] with the matrix's blocks in place and zeros elsewhere. */
function denseRef(coords: [number, number][], blocks: ArrayLike<number>, rows: number, cols: number, bs: number): Float64Array {
  const w = new Float64Array(rows * cols);
  coords.forEach(([r, c], b) => {
    for (let i = 0; i < bs; i++) for (let j = 0; j < bs; j++) w[(r * bs + i) * cols + c * bs + j] = blocks[b * bs * bs + i * bs + j];
  });
  return w;
}

/** out [m, n] = a [m, k] @ b^T (b is [n, k]) in float64. */
function matmulABt(a: ArrayLike<number>, b: ArrayLike<number>, m: number, n: number, k: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
      out[i * n + j] = s;
    }
  return out;
}
const transpose = (a: ArrayLike<number>, r: number, c: number) => {
  const t = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t[j * r + i] = a[i * c + j];
  return t;
};

for (const { backend, test } of await backendSuites('blocksparse')) {
  // Modules and creation functions without an explicit backend use the current one.
  test.before(async () => void (await setBackend(backend.name)));
  const opts = { backend };
  const T = (d: ArrayLike<number>, shape: number[]) => tensor(Float32Array.from(d), shape, opts);

  test('layout indexes agree with the block coordinates', () => {
    const coords: [number, number][] = [
      [2, 1],
      [0, 3],
      [0, 0],
      [1, 1],
      [2, 3],
    ];
    const W = BlockSparseMatrix.fromCoords([48, 64], 16, coords, undefined, opts);
    const l = W.layout;
    assert.equal([...l.rowPtr], [0, 2, 3, 5]);
    assert.equal([...l.colIdx], [0, 3, 1, 1, 3]);
    assert.equal([...l.rowIdx], [0, 0, 1, 2, 2]);
    assert.equal([...l.colPtr], [0, 1, 3, 3, 5]);
    assert.equal(
      [...l.cscBlock].map((b) => [l.rowIdx[b], l.colIdx[b]]),
      [
        [0, 0],
        [1, 1],
        [2, 1],
        [0, 3],
        [2, 3],
      ],
    );
    assert.equal([...l.cscRow], [0, 1, 2, 0, 2]);
    // W^T's blocks in CSR order are W's in CSC order, at swapped coordinates.
    const t = transposedLayout(l);
    assert.equal([t.rows, t.cols], [64, 48]);
    assert.equal(
      [...t.rowIdx].map((r, s) => [t.colIdx[s], r]),
      [...l.cscBlock].map((b) => [l.rowIdx[b], l.colIdx[b]]),
    );
    assert.is(transposedLayout(l), t);
    assert.equal(W.blockMask(), [
      [1, 0, 0, 1],
      [0, 1, 0, 0],
      [0, 1, 0, 1],
    ]);
    W.data.dispose();
  });

  for (const bs of [16, 32, 64, 128]) {
    for (const density of [1, 0.5, 0.25, 0.1]) {
      test(`three products match a dense masked float64 reference (bs ${bs}, density ${density})`, async () => {
        manualSeed(bs * 100 + density * 10);
        const rows = bs * 3;
        const cols = bs * 4;
        const W = BlockSparseMatrix.random([rows, cols], { density, blockSize: bs, backend });
        const coords = W.blockCoords;
        const blocks = f32(await W.data.toArray());
        const dense = denseRef(coords, blocks, rows, cols, bs);
        // 601 tokens: several token tiles, and the SDDMM splits the tokens into uneven chunks.
        for (const m of [1, 7, 33, 601]) {
          // f32 sums of m terms: the rounding error of dW grows with m.
          const tol = m > 100 ? 5e-5 : 1e-5;
          const xd = f32(randomArray(m * cols, m + bs));
          const dyd = f32(randomArray(m * rows, m * 3 + bs));
          const x = tensor(Float32Array.from(xd), [m, cols], opts);
          const dy = tensor(Float32Array.from(dyd), [m, rows], opts);
          // forward: Y = X W^T
          const y = bsrMatmul(x, W.data, W.layout);
          // f32 sums of cols (rows) terms for the forward (dX): their rounding error grows with them too.
          const kTol = (k: number) => Math.max(1e-5, 1e-7 * k);
          assertClose(await y.toArray(), matmulABt(xd, dense, m, rows, cols), kTol(cols), 'forward');
          // backward through autograd: dX = dY W, dW = (dY^T X) on the blocks
          const xg = x.detach().requiresGrad_();
          const wg = W.data.detach().requiresGrad_();
          const y2 = bsrMatmul(xg, wg, W.layout);
          y2.backward(dy);
          assertClose(await xg.grad!.toArray(), matmulABt(dyd, transpose(dense, rows, cols), m, cols, rows), kTol(rows), 'dX');
          const dwDense = matmulABt(transpose(dyd, m, rows), transpose(xd, m, cols), rows, cols, m);
          const dwBlocks = new Float64Array(W.nnzBlocks * bs * bs);
          coords.forEach(([r, c], b) => {
            for (let i = 0; i < bs; i++) for (let j = 0; j < bs; j++) dwBlocks[b * bs * bs + i * bs + j] = dwDense[(r * bs + i) * cols + c * bs + j];
          });
          assertClose(await wg.grad!.toArray(), dwBlocks, tol, 'dW');
          for (const t of [x, dy, y, xg, wg, y2]) t.dispose();
        }
        W.data.dispose();
      });
    }
  }

  test('dW of long block rows (GPU kernels take a few blocks of a row at a time)', async () => {
    for (const bs of [16, 32]) {
      manualSeed(bs);
      const [rows, cols, m] = [2 * bs, 20 * bs, 301];
      const W = BlockSparseMatrix.random([rows, cols], { density: 0.75, blockSize: bs, backend });
      const xd = f32(randomArray(m * cols, 3));
      const dyd = f32(randomArray(m * rows, 4));
      const dw = bsrSddmmKernel(tensor(Float32Array.from(dyd), [m, rows], opts), tensor(Float32Array.from(xd), [m, cols], opts), W.layout);
      const dwDense = matmulABt(transpose(dyd, m, rows), transpose(xd, m, cols), rows, cols, m);
      const ref = new Float64Array(W.nnzBlocks * bs * bs);
      W.blockCoords.forEach(([r, c], b) => {
        for (let i = 0; i < bs; i++) for (let j = 0; j < bs; j++) ref[b * bs * bs + i * bs + j] = dwDense[(r * bs + i) * cols + c * bs + j];
      });
      assertClose(await dw.toArray(), ref, 5e-5, `bs ${bs}`);
    }
  });

  test('an empty block row writes zeros and a large m streams correctly', async () => {
    const bs = 16;
    const W = BlockSparseMatrix.fromMask(
      [
        [1, 0],
        [0, 0],
        [0, 1],
      ],
      bs,
      { backend, data: tensor(Float32Array.from(randomArray(2 * 256, 5)), [2, 16, 16], opts) },
    );
    const m = 300;
    const xd = f32(randomArray(m * 32, 8));
    const y = bsrMatmul(tensor(Float32Array.from(xd), [m, 32], opts), W.data, W.layout);
    const dense = denseRef(W.blockCoords, f32(await W.data.toArray()), 48, 32, bs);
    assertClose(await y.toArray(), matmulABt(xd, dense, m, 48, 32), 1e-5);
  });

  test('gradient check of the block-sparse product over block sizes and densities', async () => {
    for (const [bs, density] of [
      [16, 0.5],
      [32, 0.25],
      [16, 1],
    ] as const) {
      manualSeed(bs);
      const W = BlockSparseMatrix.random([bs * 2, bs * 2], { density, blockSize: bs, backend });
      const layout = W.layout;
      const xs = { data: randomArray(3 * bs * 2, 1), shape: [3, bs * 2] };
      const ws = { data: randomArray(W.data.size, 2), shape: [...W.data.shape] };
      // Sample a subset of weight entries via a smaller matrix to keep the numeric pass short.
      await gradCheck((x, w) => bsrMatmul(x, w, layout), [xs, ws], { backend, check: [true, bs === 16] });
      W.data.dispose();
    }
  });

  test('a bias added inside the block-sparse product: values and gradients', async () => {
    const bs = 16;
    const W = BlockSparseMatrix.random([bs * 2, bs * 3], { density: 0.5, blockSize: bs, backend });
    const x = T(randomArray(5 * bs * 3, 3), [5, bs * 3]);
    const b = T(randomArray(bs * 2, 4), [bs * 2]);
    const withBias = await bsrMatmul(x, W.data, W.layout, b).toArray();
    const plus = await bsrMatmul(x, W.data, W.layout).add(b).toArray();
    assertClose(withBias, plus, 1e-6);
    await gradCheck(
      (xx, bb) => bsrMatmul(xx, W.data, W.layout, bb),
      [
        { data: randomArray(3 * bs * 3, 5), shape: [3, bs * 3] },
        { data: randomArray(bs * 2, 6), shape: [bs * 2] },
      ],
      { backend },
    );
    assertThrows(() => bsrMatmul(x, W.data, W.layout, T([1, 2], [2])), /bsrMatmul: bias must have shape \[32\], got \[2\]/);
    W.data.dispose();
  });

  test('fromDense keeps the blocks of largest norm; toDense restores them', async () => {
    const bs = 16;
    const rows = 32;
    const cols = 48;
    const d = new Float32Array(rows * cols);
    const scale = [
      [1, 5, 2],
      [4, 3, 6],
    ];
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) d[i * cols + j] = scale[Math.floor(i / bs)][Math.floor(j / bs)] * (((i * 7 + j) % 5) - 2 || 1);
    const dense = tensor(d, [rows, cols], opts);
    const W = await BlockSparseMatrix.fromDense(dense, { density: 0.5, blockSize: bs });
    assert.equal(W.blockMask(), [
      [0, 1, 0],
      [1, 0, 1],
    ]);
    const back = await W.toDense().toArray();
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) {
        const kept = W.blockMask()[Math.floor(i / bs)][Math.floor(j / bs)];
        assert.is(back[i * cols + j], kept ? d[i * cols + j] : 0);
      }
  });

  test('random honours density and blockCount; fromMask places blocks', () => {
    const W = BlockSparseMatrix.random([256, 512], { density: 0.25, blockSize: 32, backend });
    assert.is(W.nnzBlocks, 32);
    assert.is(W.density, 0.25);
    const V = BlockSparseMatrix.random([64, 64], { blockCount: 3, blockSize: 16, backend });
    assert.is(V.nnzBlocks, 3);
    assert.is(new Set(V.blockCoords.map(String)).size, 3);
  });

  test('single-threaded (non-shared memory) kernels give the same results as the threaded ones', async () => {
    const single = createCpuBackend({ threads: 1 });
    const threaded = createCpuBackend({ threads: 2 });
    manualSeed(3);
    const W = BlockSparseMatrix.random([128, 256], { density: 0.5, blockSize: 32, backend });
    const blocks = await W.data.toArray();
    const xd = Float32Array.from(randomArray(300 * 256, 4));
    const dyd = Float32Array.from(randomArray(300 * 128, 5));
    const results: (Float32Array | Int32Array)[][] = [];
    for (const b of [single, threaded]) {
      const x = tensor(xd, [300, 256], { backend: b });
      const dy = tensor(dyd, [300, 128], { backend: b });
      const w = tensor(blocks, [...W.data.shape], { backend: b });
      results.push(
        await Promise.all([
          bsrMatmul(x, w, W.layout).toArray(),
          x.matmul(tensor(xd.subarray(0, 256 * 64), [256, 64], { backend: b })).toArray(),
          bsrKernel('gradInput', dy, w, W.layout).toArray(),
          bsrSddmmKernel(dy, x, W.layout).toArray(),
        ]),
      );
    }
    results[0].forEach((r, i) => assertClose(results[1][i], r, 1e-6, `product ${i}`));
  });

  test('bad input names the problem', () => {
    assertThrows(() => BlockSparseMatrix.random([100, 64], { density: 0.5, blockSize: 32 }), /rows \(100\) must be a positive multiple of the block size 32/);
    assertThrows(() => BlockSparseMatrix.random([64, 64], { density: 0, blockSize: 32 }), /density must be in \(0, 1\], got 0/);
    assertThrows(() => BlockSparseMatrix.random([64, 64], { density: 1.5, blockSize: 32 }), /density must be in \(0, 1\], got 1.5/);
    assertThrows(() => BlockSparseMatrix.random([64, 64], { density: 0.5, blockSize: 24 }), /blockSize must be one of 16, 32, 64, 128, got 24/);
    const W = BlockSparseMatrix.random([64, 32], { density: 1, blockSize: 32, backend });
    assertThrows(
      () => bsrMatmul(tensor(new Float32Array(2 * 64), [2, 64], opts), W.data, W.layout),
      /bsrMatmul: input of shape \[2, 64\] must end in 32 features/,
    );
    assertThrows(
      () =>
        BlockSparseMatrix.fromCoords([64, 64], 32, [
          [0, 0],
          [0, 0],
        ]),
      /block \(0, 0\) is listed twice/,
    );
    assertThrows(() => BlockSparseMatrix.fromCoords([64, 64], 32, [[2, 0]]), /outside the 2 x 2 block grid/);
  });

  test.run();
}

// Host-side layout tables the GPU backends build their work lists from.
const layouts = suite('block layouts');

layouts('union tables list every block of a group once, at its column, columns sorted; consecutive or clustered groups', () => {
  const W = BlockSparseMatrix.random([32 * 7, 32 * 5], { density: 0.45, blockSize: 32, backend: createCpuBackend() });
  const L = W.layout;
  for (const forward of [true, false]) {
    for (const clustered of [false, true]) {
      const t = buildUnionTable(L, forward, 4, clustered);
      const count = (forward ? L.rows : L.cols) / 32;
      assert.is(t.ptr.length - 1, Math.ceil(count / 4));
      // The members are every block row (column) once, then -1 in the last group's empty slots.
      assert.equal(
        [...t.members].filter((r) => r >= 0).sort((a, b) => a - b),
        [...Array(count).keys()],
      );
      assert.ok(t.members.slice(count).every((r) => r === -1));
      if (!clustered) assert.equal([...t.members.slice(0, count)], [...Array(count).keys()]);
      let seen = 0;
      for (let grp = 0; grp + 1 < t.ptr.length; grp++) {
        for (let e = t.ptr[grp]; e < t.ptr[grp + 1]; e++) {
          if (e > t.ptr[grp]) assert.ok(t.idx[e] > t.idx[e - 1], 'sorted, no repeats');
          let any = false;
          for (let g = 0; g < 4; g++) {
            const b = t.blk[e * 4 + g];
            if (b < 0) continue;
            any = true;
            seen++;
            // block b sits in the slot's member and at activation block idx[e]
            assert.is(forward ? L.rowIdx[b] : L.colIdx[b], t.members[grp * 4 + g]);
            assert.is(forward ? L.colIdx[b] : L.rowIdx[b], t.idx[e]);
          }
          assert.ok(any, 'every union entry holds a block');
        }
      }
      assert.is(seen, L.nnzBlocks);
    }
  }
  W.data.dispose();
});

layouts('longest-first orders: lines by block count, union groups by union length, each group keeping its blocks and members', () => {
  // Block rows of 2, 0, 3, 2 and 1 blocks: longest first, ties in index order.
  const coords: [number, number][] = [
    [0, 0],
    [0, 3],
    [2, 0],
    [2, 1],
    [2, 2],
    [3, 1],
    [3, 2],
    [4, 3],
  ];
  const { layout } = buildLayout(32 * 5, 32 * 4, 32, coords);
  assert.equal([...linesLongestFirst(layout.rowPtr)], [2, 0, 3, 4, 1]);
  // Every block column holds 2: index order.
  assert.equal([...linesLongestFirst(layout.colPtr)], [0, 1, 2, 3]);
  const W = BlockSparseMatrix.random([32 * 13, 32 * 9], { density: 0.4, blockSize: 32, backend: createCpuBackend() });
  for (const [group, clustered] of [
    [1, false],
    [4, false],
    [4, true],
  ] as const) {
    const t = buildUnionTable(W.layout, true, group, clustered);
    const o = unionGroupsLongestFirst(t);
    const steps = (u: typeof t, g: number) => u.ptr[g + 1] - u.ptr[g];
    // Each group of the original appears once in the reordered table, with its entries, blocks and
    // members unchanged, and the union lengths do not increase.
    const key = (u: typeof t, g: number) =>
      JSON.stringify([
        [...u.members.subarray(g * group, (g + 1) * group)],
        [...u.idx.subarray(u.ptr[g], u.ptr[g + 1])],
        [...u.blk.subarray(u.ptr[g] * group, u.ptr[g + 1] * group)],
      ]);
    const groups = t.ptr.length - 1;
    assert.equal(Array.from({ length: groups }, (_, g) => key(o, g)).sort(), Array.from({ length: groups }, (_, g) => key(t, g)).sort());
    for (let g = 1; g < groups; g++) assert.ok(steps(o, g) <= steps(o, g - 1), `group ${g}: ${steps(o, g)} after ${steps(o, g - 1)}`);
  }
  W.data.dispose();
});

layouts('clustered union groups put block rows that share columns together', () => {
  // Rows alternate between two column patterns, {0, 1} and {2, 3}: consecutive pairs touch all four
  // columns (4 rows -> 2 groups x 4 entries), pairs of equal rows only their two (2 groups x 2).
  const coords: [number, number][] = [];
  for (let r = 0; r < 4; r++) for (const c of r % 2 ? [2, 3] : [0, 1]) coords.push([r, c]);
  const { layout } = buildLayout(32 * 4, 32 * 4, 32, coords);
  assert.is(buildUnionTable(layout, true, 2).idx.length, 8);
  const t = buildUnionTable(layout, true, 2, true);
  assert.is(t.idx.length, 4);
  assert.equal([...t.members], [0, 2, 1, 3]);
  // On a random layout of the first benchmark shape's proportions it never does worse.
  manualSeed(7);
  const W = BlockSparseMatrix.random([32 * 128, 32 * 32], { density: 0.25, blockSize: 32, backend: createCpuBackend() });
  const consecutive = buildUnionTable(W.layout, true, 4).idx.length;
  const clustered = buildUnionTable(W.layout, true, 4, true).idx.length;
  assert.ok(clustered < 0.9 * consecutive, `clustered ${clustered} vs consecutive ${consecutive} union entries`);
  W.data.dispose();
});

layouts('clustered union groups follow the greedy rule (a set-based reference) on random layouts', () => {
  // The reference: seed = most columns left (lowest index on ties), then group - 1 times the member
  // adding the fewest new columns to the union (lowest index on ties).
  const reference = (members: number[][], group: number): number[] => {
    const left = members.map((_, r) => r);
    const order: number[] = [];
    while (left.length) {
      const seed = left.reduce((a, r) => (members[r].length > members[a].length ? r : a));
      left.splice(left.indexOf(seed), 1);
      order.push(seed);
      const union = new Set(members[seed]);
      for (let g = 1; g < group && left.length; g++) {
        const growth = (r: number) => members[r].filter((c) => !union.has(c)).length;
        const best = left.reduce((a, r) => (growth(r) < growth(a) ? r : a));
        left.splice(left.indexOf(best), 1);
        order.push(best);
        for (const c of members[best]) union.add(c);
      }
    }
    return order;
  };
  manualSeed(11);
  for (const [rows, cols, density, group] of [
    [37, 70, 0.3, 4],
    [64, 33, 0.5, 8],
    [9, 100, 0.1, 2],
    [40, 64, 0.02, 4],
  ] as const) {
    const W = BlockSparseMatrix.random([16 * rows, 16 * cols], { density, blockSize: 16, backend: createCpuBackend() });
    const L = W.layout;
    for (const forward of [true, false]) {
      const count = forward ? rows : cols;
      const members = Array.from({ length: count }, (_, r) => {
        const out: number[] = [];
        if (forward) for (let e = L.rowPtr[r]; e < L.rowPtr[r + 1]; e++) out.push(L.colIdx[e]);
        else for (let e = L.colPtr[r]; e < L.colPtr[r + 1]; e++) out.push(L.cscRow[e]);
        return out;
      });
      const t = buildUnionTable(L, forward, group, true);
      assert.equal([...t.members.slice(0, count)], reference(members, group), `${rows}x${cols} blocks, density ${density}, forward ${forward}`);
    }
    W.data.dispose();
  }
});

layouts('filled tile items take fewer two-block passes where whole columns leave items half full', () => {
  // One group of 8 block rows over 4 columns of 5, 5, 5 and 1 blocks, items of at most 8 blocks
  // (4 two-block slots): whole columns give 5 + 5 + 6 blocks (3 items, 2 passes each: 6 passes),
  // filled items 8 + 8 (2 items of 2 passes: 4), the third column split between them.
  const coords: [number, number][] = [];
  for (const [c, n] of [
    [0, 5],
    [1, 5],
    [2, 5],
    [3, 1],
  ])
    for (let r = 0; r < n; r++) coords.push([r, c]);
  const { layout } = buildLayout(32 * 8, 32 * 4, 32, coords);
  const limits = { rows: 8, cols: 4, blocks: 8 };
  const sizes = (fill: boolean) => {
    const t = buildTileItems(layout, limits, fill);
    return Array.from({ length: t.count }, (_, i) => t.items[i * t.stride + 2]);
  };
  assert.equal(sizes(false), [5, 5, 6]);
  assert.equal(sizes(true), [8, 8]);
});

layouts('tile items cover every block once, inside their limits, at its row and column (whole or split columns)', () => {
  const limits = { rows: 8, cols: 6, blocks: 12 };
  for (const [density, fill] of [0.05, 0.5, 1].flatMap(
    (d) =>
      [
        [d, false],
        [d, true],
      ] as const,
  )) {
    const W = BlockSparseMatrix.random([32 * 19, 32 * 23], { density, blockSize: 32, backend: createCpuBackend() });
    const L = W.layout;
    const { items, count, stride } = buildTileItems(L, limits, fill);
    assert.is(stride, 4 + 6 + 24);
    const seen = new Uint8Array(L.nnzBlocks);
    for (let i = 0; i < count; i++) {
      const rec = items.subarray(i * stride, (i + 1) * stride);
      const [r0, ncols, nblocks] = rec;
      assert.ok(r0 % 8 === 0 && ncols >= 1 && ncols <= 6 && nblocks >= 1 && nblocks <= 12, `item ${i}: ${rec.slice(0, 3)}`);
      for (let k = 0; k < nblocks; k++) {
        const b = rec[10 + k];
        const pos = rec[22 + k];
        if (k > 0) assert.ok(pos > rec[22 + k - 1], 'row-major order');
        assert.is(L.rowIdx[b], r0 + Math.floor(pos / 6));
        assert.is(L.colIdx[b], rec[4 + (pos % 6)]);
        seen[b]++;
      }
    }
    assert.ok(
      seen.every((n) => n === 1),
      `density ${density}${fill ? ', fill' : ''}: every block in exactly one item`,
    );
    W.data.dispose();
  }
  assertThrows(
    () =>
      buildTileItems(BlockSparseMatrix.random([64, 64], { density: 1, blockSize: 32, backend: createCpuBackend() }).layout, { rows: 8, cols: 4, blocks: 4 }),
    /8 block rows per tile exceed its 4 blocks/,
  );
});

layouts.run();
