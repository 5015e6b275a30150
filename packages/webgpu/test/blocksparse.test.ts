/**
 * The WebGPU block-sparse kernels, each variant against float64 references: union tiles (several
 * block rows or columns per workgroup; the tuning's unionTiles 'on' forces them), one-block-wide
 * tiles (=0) and the default choice, with partial and empty groups, tokens that fill no tile
 * evenly, and every block size. The shared suites of core cover the default path on every
 * backend under test.
 */
import * as assert from 'uvu/assert';
import { BlockSparseMatrix, backends, manualSeed, setBackend, tensor, type Backend } from '@sparsegrad/core';
import '@sparsegrad/webgpu';
import type { WebGPUBackend, WebGPUTuning } from '@sparsegrad/webgpu';
import { blockSparseRefs, randomArray, deviceSuite, testSeed } from '../../core/test/helpers.ts';

const status = (await backends()).find((b) => b.name === 'webgpu');
const test = deviceSuite('WebGPU block-sparse kernels', status);
const gpu: Backend | null = status?.available ? await setBackend('webgpu') : null;

/** A pseudo-random block mask with block rows 0..7 and block column 2 empty (whole empty groups). */
function mask(rows: number, cols: number, seed: number): number[][] {
  const r = randomArray(rows * cols, seed);
  return Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i >= 8 && j !== 2 && r[i * cols + j] > 0 ? 1 : 0)));
}

/** `a` followed by `n` NaNs: a kernel that reads past the tokens it was given turns its outputs NaN. */
function nanTail(a: Float32Array, n: number): Float32Array {
  const out = new Float32Array(a.length + n).fill(Number.NaN);
  out.set(a);
  return out;
}

{
  // Read only inside test bodies, which do not run when the suite is skipped.
  const be = gpu as Backend;
  test('block-sparse forward, dX and dW match float64 references on both tile kinds', async () => {
    // Fresh inputs every run (SPARSEGRAD_TEST_SEED repeats one); the seed is in every failure message.
    const seed = testSeed();
    manualSeed(seed);
    for (const bs of [16, 32, 64, 128]) {
      // 17 block rows and 5 block columns: partial union groups at every block size. 304 tokens
      // for 32x32 blocks: a multiple of the SDDMM's k-step, which then loads without k checks.
      const [nr, nc, m] = [17, 5, bs === 32 ? 304 : 301];
      const [rows, cols] = [nr * bs, nc * bs];
      const mk = mask(nr, nc, seed + bs);
      const nnz = mk.flat().reduce((a, b) => a + b, 0);
      const data = tensor(Float32Array.from(randomArray(nnz * bs * bs, seed + 1)), [nnz, bs, bs], { backend: be });
      const W = BlockSparseMatrix.fromMask(mk, bs, { backend: be, data });
      const L = W.layout;
      const w = await W.data.toArray();
      const x = Float32Array.from(randomArray(m * cols, seed + bs + 2));
      const dy = Float32Array.from(randomArray(m * rows, seed + bs + 3));
      const { y, dx, dw } = blockSparseRefs(L, w, x, dy, m);
      const xb = be.upload(nanTail(x, 8 * cols), 'float32');
      const dyb = be.upload(nanTail(dy, 8 * rows), 'float32');
      const blocks = W.data.storageFor('test').buffer;
      // Union tiles by default, off, on (over clustered groups), and on over consecutive groups;
      // then the SDDMM's 128-column tiles forced for 32x32 blocks (rows of at most 4 blocks take
      // 64-column ones by default), and its work items along block rows, then block columns; last,
      // the one-block-wide tiles in the plain work order and in bands of 2 token tiles (of 3: the
      // last band partial).
      const variants: Partial<WebGPUTuning>[] = [
        {},
        { unionTiles: 'off' },
        { unionTiles: 'on' },
        { unionTiles: 'on', unionCluster: false },
        { tiles: 'sddmm32=8,16,4,8,8' },
        { sddmmAxis: 'row' },
        { sddmmAxis: 'column' },
        { sddmmAxis: 'column', tiles: 'sddmm32=8,16,4,8,8' },
        { unionTiles: 'off', bandTiles: 0 },
        { unionTiles: 'off', bandTiles: 2 },
      ];
      const ctx = (be as WebGPUBackend).context;
      for (const v of variants) {
        const previous = ctx.setTuning(v);
        // Poisoned outputs: every element must be written.
        const outs = [y, dx, dw].map((r) => be.upload(new Float32Array(r.length).fill(Number.NaN), 'float32'));
        be.bsrMatmul(xb, blocks, L, m, outs[0], 'highest');
        be.bsrMatmulGradInput(dyb, blocks, L, m, outs[1], 'highest');
        be.bsrSddmm(dyb, xb, L, m, outs[2], 'highest');
        ctx.setTuning(previous);
        const refs = [y, dx, dw];
        for (let i = 0; i < 3; i++) {
          const got = await be.read(outs[i], refs[i].length);
          let worst = 0;
          for (let j = 0; j < got.length; j++) worst = Math.max(worst, Math.abs(got[j] - refs[i][j]) / (1 + Math.abs(refs[i][j])));
          assert.ok(worst < 1e-4, `${['forward', 'dX', 'dW'][i]} ${bs}x${bs} ${JSON.stringify(v)}: error ${worst} (seed ${seed})`);
          be.free(outs[i]);
        }
      }
      be.free(xb);
      be.free(dyb);
      W.data.dispose();
    }
  });

  test('SDDMM over token chunks (partial sums, then their reduction) matches float64', async () => {
    // 2500 tokens: two chunks of at least SDDMM_MIN_CHUNK (1024), the last shorter; 32x32 blocks
    // in rows of few blocks (the 64-column tiles) and, forced, the 128-column ones.
    const seed = testSeed();
    manualSeed(seed);
    const [bs, nr, nc, m] = [32, 6, 5, 2500];
    const mk = mask(nr + 8, nc, seed).slice(8);
    const nnz = mk.flat().reduce((a, b) => a + b, 0);
    const data = tensor(Float32Array.from(randomArray(nnz * bs * bs, seed + 1)), [nnz, bs, bs], { backend: be });
    const W = BlockSparseMatrix.fromMask(mk, bs, { backend: be, data });
    const L = W.layout;
    const x = Float32Array.from(randomArray(m * nc * bs, seed + 2));
    const dy = Float32Array.from(randomArray(m * nr * bs, seed + 3));
    const { dw } = blockSparseRefs(L, await W.data.toArray(), x, dy, m);
    const [xb, dyb] = [be.upload(nanTail(x, 8 * nc * bs), 'float32'), be.upload(nanTail(dy, 8 * nr * bs), 'float32')];
    const ctx = (be as WebGPUBackend).context;
    for (const tiles of ['', 'sddmm32=8,16,4,8,8']) {
      const previous = ctx.setTuning({ tiles });
      const out = be.upload(new Float32Array(dw.length).fill(Number.NaN), 'float32');
      be.bsrSddmm(dyb, xb, L, m, out, 'highest');
      ctx.setTuning(previous);
      const got = await be.read(out, dw.length);
      let worst = 0;
      for (let j = 0; j < got.length; j++) worst = Math.max(worst, Math.abs(got[j] - dw[j]) / (1 + Math.abs(dw[j])));
      assert.ok(worst < 1e-3, `dW over chunks, tiles ${tiles || 'default'}: error ${worst} (seed ${seed})`);
      be.free(out);
    }
    be.free(xb);
    be.free(dyb);
    W.data.dispose();
  });
}

test.run();
