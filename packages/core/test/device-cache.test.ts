/** LayoutDeviceCache: what GPU backends derive from a block layout is built once per layout and key. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BlockSparseMatrix } from '@sparsegrad/core';
import { LayoutDeviceCache } from '@sparsegrad/core/backend';

test('values are built once per layout and key, and kept apart across layouts', () => {
  const freed: number[] = [];
  const cache = new LayoutDeviceCache<number>((b) => freed.push(b));
  const a = BlockSparseMatrix.random([64, 64], { density: 0.5, blockSize: 16 });
  const b = BlockSparseMatrix.random([64, 64], { density: 0.5, blockSize: 16 });
  let made = 0;
  const make = (v: number) => () => {
    made++;
    return { value: { v }, buffers: [v] };
  };
  const first = cache.get(a.layout, 'index', make(1));
  assert.is(cache.get(a.layout, 'index', make(2)), first, 'same object on the second call');
  assert.is(made, 1);
  assert.is(cache.get(a.layout, 'groups:4', make(3)).v, 3, 'another key builds its own value');
  assert.is(cache.get(b.layout, 'index', make(4)).v, 4, 'another layout builds its own value');
  assert.is(made, 3);
  assert.equal(freed, [], 'nothing is freed while the layouts live');
  a.data.dispose();
  b.data.dispose();
});

test.run();
