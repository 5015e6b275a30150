/** Tile shapes shrink to fit the workgroup memory a device offers (WebGPU guarantees 16 KB); work-order bands; dense tiles and k splits. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DENSE_LARGE, DENSE_SMALL, denseTiling, fitShape, orderBandTokens, waveSplits } from '../src/tiles.ts';
import { orderBand } from '@sparsegrad/core/backend';
import { DEFAULT_WEBGPU_TUNING } from '../src/tuning.ts';

/** Exact bytes of the two stages of A and B for the largest padding the generator can choose. */
const bytes = (s: { wm: number; wn: number; tm: number; tn: number; bk: number }) => 2 * s.bk * ((s.wm * s.tm) / 4 + 8 + (s.wn * s.tn) / 4 + 8) * 16;

test('shapes that fit are kept; larger ones give up k-step, then rows, never width', () => {
  const big = { wm: 16, wn: 8, tm: 8, tn: 4, bk: 16 };
  assert.equal(fitShape(big, 49152), big);
  for (const limit of [16384, 20000, 32768]) {
    for (const shape of [big, { wm: 16, wn: 16, tm: 8, tn: 8, bk: 8 }, { wm: 32, wn: 4, tm: 8, tn: 4, bk: 8 }, { wm: 16, wn: 8, tm: 8, tn: 8, bk: 8 }]) {
      const fitted = fitShape(shape, limit);
      assert.ok(bytes(fitted) <= limit, `${JSON.stringify(fitted)} fits ${limit}`);
      assert.is(fitted.wn * fitted.tn, shape.wn * shape.tn, 'tile width kept');
      assert.is(fitted.wm, shape.wm);
      assert.ok(fitted.bk >= 4 && fitted.tm >= 4);
    }
  }
  assert.equal(fitShape(big, 16384), { wm: 16, wn: 8, tm: 8, tn: 4, bk: 8 });
  assert.equal(fitShape(big, 8192), { wm: 16, wn: 8, tm: 8, tn: 4, bk: 4 });
  assert.equal(fitShape(big, 6000), { wm: 16, wn: 8, tm: 4, tn: 4, bk: 4 });
});

test('work-order bands: 4096 tokens of 32x32 and 64x64 tiles, at most the tiles there are; 16x16 and 0 plain', () => {
  assert.is(orderBand(orderBandTokens(32), 128, 128), 32);
  assert.is(orderBand(orderBandTokens(64), 128, 10), 10);
  assert.is(orderBand(orderBandTokens(16), 256, 64), 0);
  assert.is(orderBand(orderBandTokens(16), 256, 64, 3), 3); // forced (the tuning's bandTiles)
  assert.is(orderBand(orderBandTokens(32), 128, 128, 0), 0);
});

test('dense tiles: 128 x 128 (halved where the output fills half of it) from 256 tiles or a long k (split to fill whole waves), else 64 x 64', () => {
  {
    const L = DENSE_LARGE;
    assert.equal(denseTiling(8192, 512, 512, 1, L), { shape: L, splits: 1 }); // 256 tiles
    assert.equal(denseTiling(256, 256, 64, 256, L), { shape: L, splits: 1 }); // a batch of 256
    // Outputs at most 64 wide (tall) take the tile halved along that side.
    assert.equal(denseTiling(256, 64, 256, 256, L), { shape: { ...L, wn: L.wn / 2 }, splits: 1 });
    assert.equal(denseTiling(64, 256, 256, 256, L), { shape: { ...L, wm: L.wm / 2 }, splits: 1 });
    assert.equal(denseTiling(256, 65, 256, 256, L), { shape: L, splits: 1 });
    // 64 tiles of the GPT's MLP weight gradients: 4 chunks fill one wave of 264 workgroups exactly.
    assert.equal(denseTiling(2048, 512, 8192, 1, L), { shape: L, splits: 4 });
    assert.equal(denseTiling(512, 512, 8192, 1, L), { shape: L, splits: 16 });
    // 8 tiles: as many chunks as 256-long pieces of k allow (32), one wave.
    assert.equal(denseTiling(200, 512, 8192, 1, L), { shape: L, splits: 32 });
    assert.equal(denseTiling(512, 512, 512, 1, L), { shape: DENSE_SMALL, splits: 1 }); // short k
    // Against a brute-force reading of the rule: no other count runs fewer waves per unit of k.
    for (const [tiles, k] of [
      [64, 8192],
      [16, 8192],
      [100, 4096],
      [1, 2501],
      [300, 1024],
    ]) {
      const s = waveSplits(tiles, k);
      const time = (c: number) => Math.ceil((tiles * c) / 264) / c;
      for (let c = 1; c <= Math.floor(k / 256); c++)
        assert.ok(time(s) <= time(c) + 1e-9 && (time(c) > time(s) + 1e-9 || c >= s), `${tiles} tiles, k ${k}: ${s} chunks against ${c}`);
    }
    const earlier = { ...DEFAULT_WEBGPU_TUNING, splitLarge: false };
    assert.equal(denseTiling(2048, 512, 8192, 1, L, earlier), { shape: DENSE_SMALL, splits: 1 });
    assert.equal(denseTiling(512, 512, 8192, 1, L, earlier), { shape: DENSE_SMALL, splits: 5 });
    assert.equal(denseTiling(256, 64, 256, 256, L, { ...DEFAULT_WEBGPU_TUNING, fitOutput: false }), { shape: L, splits: 1 });
  }
});

test.run();
