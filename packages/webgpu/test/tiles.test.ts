/** Tile shapes shrink to fit the workgroup memory a device offers (WebGPU guarantees 16 KB); work-order bands. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fitShape, orderBand } from '../src/tiles.ts';

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
  const saved = process.env.SPARSEGRAD_WEBGPU_BAND_TILES;
  delete process.env.SPARSEGRAD_WEBGPU_BAND_TILES;
  try {
    assert.is(orderBand(32, 128, 128), 32);
    assert.is(orderBand(64, 128, 10), 10);
    assert.is(orderBand(16, 256, 64), 0);
    process.env.SPARSEGRAD_WEBGPU_BAND_TILES = '3';
    assert.is(orderBand(16, 256, 64), 3);
    process.env.SPARSEGRAD_WEBGPU_BAND_TILES = '0';
    assert.is(orderBand(32, 128, 128), 0);
  } finally {
    if (saved === undefined) delete process.env.SPARSEGRAD_WEBGPU_BAND_TILES;
    else process.env.SPARSEGRAD_WEBGPU_BAND_TILES = saved;
  }
});

test.run();
