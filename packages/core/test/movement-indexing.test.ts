import * as assert from 'uvu/assert';
import * as sg from '@sparsegrad/core';
import { setBackend } from '@sparsegrad/core';
import { tensor } from '@sparsegrad/core';
import { assertRejects, assertThrows, backendSuites, gradCheck, randomArray } from './helpers.ts';

for (const { backend, test } of await backendSuites('movement and indexing')) {
  // Modules and creation functions without an explicit backend use the current one.
  test.before(async () => void (await setBackend(backend.name)));
  const T = (d: ArrayLike<number>, shape: number[]) => tensor(Float32Array.from(d), shape, { backend });
  const I = (d: number[], shape?: number[]) => tensor(Int32Array.from(d), shape, { backend });
  const iota = (n: number) => Array.from({ length: n }, (_, i) => i);

  test('reshape, view, flatten, squeeze, unsqueeze', async () => {
    const x = T(iota(24), [2, 3, 4]);
    assert.equal(await x.reshape(4, -1).toNested(), [
      [0, 1, 2, 3, 4, 5],
      [6, 7, 8, 9, 10, 11],
      [12, 13, 14, 15, 16, 17],
      [18, 19, 20, 21, 22, 23],
    ]);
    assert.equal([...x.view([6, 4]).shape], [6, 4]);
    assert.equal([...x.flatten(1).shape], [2, 12]);
    assert.equal([...x.unsqueeze(1).shape], [2, 1, 3, 4]);
    assert.equal([...x.unsqueeze(-1).shape], [2, 3, 4, 1]);
    assert.equal([...x.unsqueeze(0).squeeze(0).shape], [2, 3, 4]);
    // reshape of a non-contiguous view copies in logical order
    assert.equal([...(await x.transpose(0, 2).reshape(-1).toArray())].slice(0, 6), [0, 12, 4, 16, 8, 20]);
    assertThrows(() => x.transpose(0, 2).view(24), /view: tensor of shape \[4, 3, 2\] is not contiguous/);
    assertThrows(() => x.reshape(5, 5), /reshape: cannot reshape \[2, 3, 4\] \(24 elements\) into \[5, 5\] \(25 elements\)/);
    assertThrows(() => x.reshape(-1, -1), /reshape: only one dimension may be -1/);
  });

  test('permute, transpose, expand, slice, narrow', async () => {
    const x = T(iota(6), [2, 3]);
    assert.equal(await x.T.toNested(), [
      [0, 3],
      [1, 4],
      [2, 5],
    ]);
    assert.equal(await x.permute(1, 0).contiguous().toNested(), [
      [0, 3],
      [1, 4],
      [2, 5],
    ]);
    assert.equal(await T([1, 2], [2, 1]).expand(2, 3).toNested(), [
      [1, 1, 1],
      [2, 2, 2],
    ]);
    assert.equal(await x.slice(1, 1).toNested(), [
      [1, 2],
      [4, 5],
    ]);
    assert.equal(await x.slice(1, -2, -1).toNested(), [[1], [4]]);
    assert.equal(await x.narrow(0, 1, 1).toNested(), [[3, 4, 5]]);
    assertThrows(() => T([5], []).slice(0, 0, 1), /slice: cannot slice a scalar \(rank 0\)/);
    assertThrows(() => x.narrow(1, 2, 2), /narrow: range start=2, length=2 does not fit dimension 1 of size 3/);
    assertThrows(() => x.permute(0, 0), /permute: axes \[0,0\] must be a permutation/);
    assertThrows(() => x.expand(4, 3), /expand: cannot expand \[2, 3\] to \[4, 3\]/);
  });

  test('cat and stack', async () => {
    const a = T([1, 2, 3, 4], [2, 2]);
    const b = T([5, 6], [1, 2]);
    assert.equal(await sg.cat([a, b], 0).toNested(), [
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    assert.equal(await sg.cat([a, a.T], 1).toNested(), [
      [1, 2, 1, 3],
      [3, 4, 2, 4],
    ]);
    assert.equal(await sg.stack([a, a], 1).toNested(), [
      [
        [1, 2],
        [1, 2],
      ],
      [
        [3, 4],
        [3, 4],
      ],
    ]);
    assertThrows(() => sg.cat([a, b], 1), /cat: all tensors must match except along axis 1/);
    assertThrows(() => sg.cat([]), /cat: expected a non-empty array of tensors/);
  });

  test('gradients of movement ops', async () => {
    const d = randomArray(24, 3);
    await gradCheck((x) => x.reshape(4, 6), [{ data: d, shape: [2, 3, 4] }], { backend });
    await gradCheck((x) => x.permute(2, 0, 1).mul(x.permute(2, 0, 1)), [{ data: d, shape: [2, 3, 4] }], { backend });
    await gradCheck((x) => x.expand(3, 2, 4), [{ data: d.slice(0, 8), shape: [2, 4] }], { backend });
    await gradCheck((x) => x.slice(1, 1, 3), [{ data: d, shape: [2, 3, 4] }], { backend });
    await gradCheck(
      (x, y) => sg.cat([x, y, x], 1),
      [
        { data: d.slice(0, 6), shape: [2, 3] },
        { data: d.slice(6, 10), shape: [2, 2] },
      ],
      { backend },
    );
    await gradCheck(
      (x, y) => sg.stack([x, y], 0),
      [
        { data: d.slice(0, 6), shape: [2, 3] },
        { data: d.slice(6, 12), shape: [2, 3] },
      ],
      { backend },
    );
  });

  test('indexSelect (embedding lookup) and gather, with gradients', async () => {
    const table = T(iota(12), [4, 3]);
    assert.equal(await table.indexSelect(0, I([3, 0, 3])).toNested(), [
      [9, 10, 11],
      [0, 1, 2],
      [9, 10, 11],
    ]);
    assert.equal(await table.indexSelect(1, I([2, 0])).toNested(), [
      [2, 0],
      [5, 3],
      [8, 6],
      [11, 9],
    ]);
    assert.equal(await table.gather(1, I([0, 2, 1, 1, 2, 0, 0, 0], [4, 2])).toNested(), [
      [0, 2],
      [4, 4],
      [8, 6],
      [9, 9],
    ]);
    assert.equal(await table.gather(0, I([3, 0, 1], [1, 3])).toNested(), [[9, 1, 5]]);
    // repeated indices accumulate in the gradient
    const w = T(iota(12), [4, 3]).requiresGrad_();
    w.indexSelect(0, I([1, 1, 2]))
      .sum()
      .backward();
    assert.equal(await w.grad!.toNested(), [
      [0, 0, 0],
      [2, 2, 2],
      [1, 1, 1],
      [0, 0, 0],
    ]);
    await gradCheck((x) => x.indexSelect(0, I([2, 0, 2, 1])), [{ data: randomArray(12, 4), shape: [4, 3] }], { backend });
    await gradCheck((x) => x.gather(1, I([0, 2, 1, 1, 2, 2], [3, 2])), [{ data: randomArray(9, 5), shape: [3, 3] }], { backend });
    assertThrows(() => table.indexSelect(0, T([1], [1])), /indexSelect: index must be an int32 tensor, got float32/);
    assertThrows(() => table.gather(1, I([0, 1], [2, 1])), /gather: index shape \[2, 1\] must equal input shape \[4, 3\] except along axis 1/);
  });

  test('out-of-range indices are an Error naming the op and the index before any value is returned, on every backend', async () => {
    // The CPU backend throws when the op runs, a GPU backend at the next read: either way the caller gets no number.
    const table = T(iota(12), [4, 3]);
    const fails = (f: () => sg.Tensor, pattern: RegExp) => assertRejects(async () => await f().toArray(), pattern);
    await fails(() => table.indexSelect(0, I([1, 4])), /gather: index 4 is out of range for a dimension of size 4/);
    await fails(() => table.indexSelect(0, I([-1])), /gather: index -1 is out of range for a dimension of size 4/);
    await fails(() => table.gather(1, I([0, 3, 1, 1, 2, 0, 0, 0], [4, 2])), /gather: index 3 is out of range for a dimension of size 3/);
    // A later value read from the same queue is not trusted either: the error comes at the first read.
    await fails(
      () =>
        table
          .indexSelect(0, I([5000]))
          .sum()
          .add(1),
      /gather: index 5000 is out of range for a dimension of size 4/,
    );
    const logits = T(randomArray(3 * 64, 8), [3, 64]);
    await fails(() => sg.crossEntropy(logits, I([1, 5000, 2])), /gather: index 5000 is out of range for a dimension of size 64/);
    assert.ok(Number.isFinite(await sg.crossEntropy(logits, I([1, -100, 2])).item()), 'ignoreIndex targets are not out of range');
    // Scatter-add, the gradient kernel of gather, checks too.
    const src = backend.upload(Float32Array.of(1, 2, 3), 'float32');
    const idx = backend.upload(Int32Array.of(0, 7, 1), 'int32');
    const out = backend.alloc(4, 'float32');
    const scattered = async () => {
      backend.scatterAdd(src, { buffer: idx, shape: [1, 3, 1], strides: [3, 1, 0], offset: 0 }, 1, 4, 1, 3, out);
      return backend.read(out, 4);
    };
    await assertRejects(scattered, /scatterAdd: index 7 is out of range for a dimension of size 4/);
    for (const b of [src, idx, out]) backend.free(b);
    // The backend keeps working, and the error is not reported twice.
    assert.equal(await table.indexSelect(0, I([3, 0])).toNested(), [
      [9, 10, 11],
      [0, 1, 2],
    ]);
  });

  test.run();
}
