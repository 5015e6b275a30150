import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import ndarray from 'ndarray';
import * as sg from '@sparsegrad/core';
import { createCpuBackend, engine, registerBackend } from '@sparsegrad/core/backend';
import { setBackend } from '@sparsegrad/core';
import { tensor } from '@sparsegrad/core';
import { gradRules } from '../src/autograd/rules.ts';
import { assertClose, assertRejects, assertThrows, backendSuites } from './helpers.ts';

for (const { backend, test } of await backendSuites('tensors and autograd')) {
  // Modules and creation functions without an explicit backend use the current one.
  test.before(async () => void (await setBackend(backend.name)));
  const opts = { backend };

  test('creation from nested arrays, typed arrays, ndarray; readback', async () => {
    const t = tensor(
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      undefined,
      opts,
    );
    assert.equal([...t.shape], [2, 3]);
    assert.is(t.dtype, 'float32');
    assert.equal(await t.toNested(), [
      [1, 2, 3],
      [4, 5, 6],
    ]);
    assert.is(await tensor(7, undefined, opts).item(), 7);
    assert.is(tensor(new Int32Array([1, 2]), undefined, opts).dtype, 'int32');
    assert.equal(await sg.full([2], 2.5, opts).toNested(), [2.5, 2.5]);
    assert.equal(await sg.arange(5, undefined, 1, opts).toNested(), [0, 1, 2, 3, 4]);
    assert.equal(await sg.arange(0, 1, 0.25, opts).toNested(), [0, 0.25, 0.5, 0.75]);
    assert.equal(await sg.eye(2, opts).toNested(), [
      [1, 0],
      [0, 1],
    ]);
    const nd = ndarray(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]).transpose(1, 0);
    assert.equal(await sg.fromNdarray(nd, opts).toNested(), [
      [1, 4],
      [2, 5],
      [3, 6],
    ]);
    const back = await sg.toNdarray(t);
    assert.equal(back.shape, [2, 3]);
    assert.is(back.get(1, 2), 6);
    assertThrows(() => tensor([[1, 2], [3]], undefined, opts), /tensor: ragged nested array/);
    assertThrows(() => tensor([1, 2, 3], [2, 2], opts), /tensor: data has 3 elements but shape \[2, 2\] needs 4/);
    assertThrows(() => sg.zeros([2, -1], opts), /zeros: shape \[2, -1\] must contain non-negative integers/);
    await assertRejects(() => t.item(), /item: expected a tensor with one element, got shape \[2, 3\]/);
  });

  test('seeded generators: reproducible, with the right moments', async () => {
    sg.manualSeed(42);
    const a = Array.from(await sg.randn([200000], opts).toArray());
    sg.manualSeed(42);
    const b = await sg.randn([200000], opts).toArray();
    assert.equal(a.slice(0, 100), Array.from(b.slice(0, 100)));
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
    assert.ok(Math.abs(mean) < 0.01 && Math.abs(variance - 1) < 0.01, `randn moments ${mean} ${variance}`);
    const u = Array.from(await sg.rand([200000], { ...opts, low: -2, high: 2 }).toArray());
    assert.ok(u.every((v) => v >= -2 && v < 2));
    const um = u.reduce((s, v) => s + v, 0) / u.length;
    assert.ok(Math.abs(um) < 0.02, `rand mean ${um}`);
    assert.not.equal(a.slice(0, 10), Array.from(await sg.randn([10], opts).toArray()));
  });

  test('gradients accumulate across backward calls; noGrad and detach stop them', async () => {
    const x = tensor([1, 2, 3], undefined, { ...opts, requiresGrad: true });
    x.mul(x).sum().backward();
    x.mul(3).sum().backward();
    assert.equal([...(await x.grad!.toArray())], [5, 7, 9]);
    const y = sg.noGrad(() => x.mul(2));
    assert.is(y.requiresGrad, false);
    assert.is(x.detach().mul(2).requiresGrad, false);
    // a tensor used twice gets both contributions
    const z = tensor([2], undefined, { ...opts, requiresGrad: true });
    z.mul(z).add(z).sum().backward();
    assert.equal([...(await z.grad!.toArray())], [5]);
    // explicit gradient for a non-scalar output
    const w = tensor([1, 2], undefined, { ...opts, requiresGrad: true });
    w.mul(w).backward(tensor([1, 10], undefined, opts));
    assert.equal([...(await w.grad!.toArray())], [2, 40]);
    assertThrows(() => w.mul(w).backward(), /backward: a non-scalar output of shape \[2\] needs an explicit gradient tensor/);
    assertThrows(() => tensor([1], undefined, opts).backward(), /backward: the tensor does not require gradients/);
    const l = w.mul(w).sum();
    l.backward();
    assertThrows(() => l.backward(), /backward: the graph was already freed/);
    const k = w.mul(w).sum();
    k.backward(undefined, { retainGraph: true });
    k.backward();
  });

  test('tidy frees intermediates, keeps results; a training loop keeps memory flat', async () => {
    const before = sg.memory(backend);
    const kept = sg.tidy(() => {
      const a = sg.ones([10], opts);
      const b = a.add(1).mul(3);
      return { b, n: 3 };
    });
    const after = sg.memory(backend);
    assert.is(after.tensors, before.tensors + 1);
    assert.is(after.bytes, before.bytes + 40);
    assert.equal([...(await kept.b.toArray())].slice(0, 2), [6, 6]);
    kept.b.dispose();
    assert.is(sg.memory(backend).bytes, before.bytes);
    sg.resetPeakMemory(backend);
    const base = sg.memory(backend).peakBytes; // tensor bytes alive now
    sg.tidy(() => sg.ones([1000], opts).add(1));
    assert.is(sg.memory(backend).peakBytes, base + 8000); // input and result alive together

    sg.manualSeed(1);
    const w = sg.randn([16, 8], { ...opts, requiresGrad: true, std: 0.1 });
    const x = sg.randn([32, 16], opts);
    const target = sg.randn([32, 8], opts);
    const losses: number[] = [];
    let memAfterFirst = 0;
    for (let step = 0; step < 30; step++) {
      const loss = sg.tidy(() => {
        const l = sg.mseLoss(x.matmul(w), target);
        l.backward();
        sg.noGrad(() => w.assign(w.sub(w.grad!.mul(0.1))));
        return l;
      });
      w.grad = null;
      losses.push(await loss.item());
      loss.dispose();
      if (step === 0) memAfterFirst = sg.memory(backend).bytes;
      else assert.is(sg.memory(backend).bytes, memAfterFirst, `memory at step ${step}`);
    }
    assert.ok(losses[29] < losses[0] * 0.9, `loss went down: ${losses[0]} -> ${losses[29]}`);
    assertThrows(() => sg.tidy(() => Promise.resolve(1) as never), /tidy: the function returned a Promise/);
  });

  test('release frees what no gradient rule reads, keeps outputs their rule reads; gradients unchanged', async () => {
    // The same graph with and without release: y = x W^T + b feeds only an add (frees), t = tanh(y2)
    // feeds an add but tanh's rule reads its output (kept).
    const run = async (withRelease: boolean) => {
      const x = tensor(
        [
          [0.5, -1, 2],
          [1.5, 0.25, -0.75],
        ],
        undefined,
        { ...opts, requiresGrad: true },
      );
      const w = tensor(
        [
          [0.1, 0.2, -0.3],
          [0.4, -0.5, 0.6],
        ],
        undefined,
        { ...opts, requiresGrad: true },
      );
      const y = sg.linear(x, w, null);
      const z = y.add(1);
      const t = sg.tanh(z.mul(0.5));
      const u = t.add(x.sum(1, true));
      if (withRelease) {
        sg.release(y);
        sg.release(t);
        assert.ok(y.isDisposed, 'the linear output is read by no rule');
        assert.ok(!t.isDisposed, "tanh's rule reads its output");
      }
      u.mul(u).sum().backward();
      const grads = [await x.grad!.toArray(), await w.grad!.toArray()];
      for (const v of [x, w, y, z, t, u]) v.dispose();
      return grads;
    };
    const [plain, released] = [await run(false), await run(true)];
    for (let i = 0; i < 2; i++) assertClose(released[i], plain[i], 0, 'release changes no gradient');
    // Which rules read their op's output decides what release keeps: a rule declaring it must mean
    // it (and one reading `out` must declare it).
    const reading = Object.entries(gradRules)
      .filter(([, r]) => r.output)
      .map(([op]) => op);
    assert.equal(
      Object.entries(gradRules)
        .filter(([, r]) => r.grad.length > 2)
        .map(([op]) => op)
        .sort(),
      [...reading].sort(),
      'rules that take `out` declare output: true',
    );
    assert.equal(reading.sort(), ['attentionWeights', 'div', 'exp', 'flashAttention', 'logSoftmax', 'max', 'min', 'pow', 'sigmoid', 'softmax', 'sqrt', 'tanh']);
    // Rules that read no input values: a tensor consumed only by these is freed before backward.
    const shapeOnly = Object.entries(gradRules)
      .filter(([, r]) => r.inputs === 'shapes')
      .map(([op]) => op);
    assert.equal(shapeOnly.sort(), [
      'add',
      'cast',
      'cat',
      'contiguous',
      'expand',
      'gather',
      'indexSelect',
      'mean',
      'neg',
      'permute',
      'reshape',
      'slice',
      'sub',
      'sum',
      'where',
    ]);
  });

  test('release waits for the rules that read a tensor; releasing() frees a forward pass as backward passes it', async () => {
    const x = tensor(
      [
        [0.5, -1, 2],
        [1.5, 0.25, -0.75],
      ],
      undefined,
      { ...opts, requiresGrad: true },
    );
    const w = tensor(
      [
        [0.1, 0.2, -0.3],
        [0.4, -0.5, 0.6],
      ],
      undefined,
      { ...opts, requiresGrad: true },
    );
    // y is read by mul's rule: released, it stays until that rule has run.
    const y = sg.linear(x, w, null);
    const z = y.mul(y).sum();
    sg.release(y);
    assert.ok(!y.isDisposed, 'mul still has to read y');
    z.backward();
    assert.ok(y.isDisposed, 'freed once mul backward ran');
    // dz/dW = 2 y^T x, in float64 from the same numbers.
    const [xa, wa] = [await x.toArray(), await w.toArray()];
    const ya = [0, 1].flatMap((i) => [0, 1].map((o) => [0, 1, 2].reduce((acc, k) => acc + xa[i * 3 + k] * wa[o * 3 + k], 0)));
    const dw = [0, 1].flatMap((o) => [0, 1, 2].map((k) => [0, 1].reduce((acc, i) => acc + 2 * ya[i * 2 + o] * xa[i * 3 + k], 0)));
    assertClose(await w.grad!.toArray(), dw, 1e-5, 'gradient through a released tensor');
    for (const v of [x.grad!, w.grad!]) v.dispose();
    x.grad = null;
    w.grad = null;

    // A small two-layer network, with and without releasing: same gradients; with it, nothing of
    // the forward pass is left after backward; with retainGraph nothing is freed and a second
    // backward works.
    const w2 = tensor(
      [
        [0.7, -0.2],
        [0.3, 0.9],
      ],
      undefined,
      { ...opts, requiresGrad: true },
    );
    const step = (mode: 'plain' | 'releasing' | 'retain') =>
      sg.tidy(() => {
        const forward = () => sg.tanh(sg.linear(sg.gelu(sg.linear(x, w, null)), w2, null)).sum();
        const before = sg.memory(backend).tensors;
        const loss = mode === 'plain' ? forward() : sg.releasing(forward);
        loss.backward(undefined, { retainGraph: mode === 'retain' });
        if (mode === 'retain') loss.backward();
        const left = sg.memory(backend).tensors - before;
        return { left, gx: x.grad!, gw: w.grad! };
      });
    const results = [];
    for (const mode of ['plain', 'releasing', 'retain'] as const) {
      const r = step(mode);
      results.push({ left: r.left, gx: await r.gx.toArray(), gw: await r.gw.toArray() });
      r.gx.dispose();
      r.gw.dispose();
      w2.grad!.dispose();
      x.grad = null;
      w.grad = null;
      w2.grad = null;
    }
    const [plain, released, retained] = results;
    assertClose(released.gx, plain.gx, 0, 'releasing changes no gradient (x)');
    assertClose(released.gw, plain.gw, 0, 'releasing changes no gradient (w)');
    assertClose(
      retained.gx,
      plain.gx.map((v) => 2 * v),
      1e-6,
      'two backward passes over a retained, released graph',
    );
    assert.ok(released.left < plain.left, `tensors left after backward: ${released.left} with releasing, ${plain.left} without`);
    assert.is(released.left, 4, 'only the loss and the three gradients are left');
  });

  test('backward() after a leaf was disposed is an error, not a lost gradient', () => {
    const w = tensor([1, 2], undefined, { ...opts, requiresGrad: true });
    const b = tensor([3, 4], undefined, { ...opts, requiresGrad: true });
    const y = w.mul(2).add(b).sum();
    b.dispose();
    assertThrows(() => y.backward(), /backward: leaf tensor #\d+ of shape \[2\] that requires gradients was disposed before backward\(\)/);
    assert.is(w.grad, null, 'nothing was accumulated');
  });

  test('assign, dispose and readback of views', async () => {
    const a = tensor(
      [
        [1, 2],
        [3, 4],
      ],
      undefined,
      opts,
    );
    const v = a.T;
    a.dispose();
    assert.equal(await v.toNested(), [
      [1, 3],
      [2, 4],
    ]); // the view keeps the storage alive
    assertThrows(() => a.add(1), /add: tensor #\d+ of shape \[2, 2\] was disposed/);
    const b = sg.zeros([2, 2], opts);
    b.assign(v);
    assert.equal(await b.toNested(), [
      [1, 3],
      [2, 4],
    ]);
    assertThrows(() => b.assign(sg.zeros([3], opts)), /assign: expected a float32 tensor of shape \[2, 2\], got float32 \[3\]/);
    assertClose(await b.sum(1).toArray(), [4, 6]);
  });

  test.run();
}

const registry = suite('backend registry');
registry('backends() lists cpu, webgpu and cuda with availability and reasons', async () => {
  const list = await sg.backends();
  const names = list.map((b) => b.name);
  for (const n of ['cpu', 'webgpu', 'cuda']) assert.ok(names.includes(n), `${n} listed`);
  const cpu = list.find((b) => b.name === 'cpu')!;
  assert.is(cpu.available, true);
  for (const b of list) if (!b.available) assert.type(b.reason, 'string');
});
registry('setBackend rejects unknown names; auto picks an available backend', async () => {
  await assertRejects(() => sg.setBackend('tpu'), /setBackend: unknown backend 'tpu'; expected one of cuda, webgpu, cpu, auto/);
  const chosen = await sg.setBackend('auto');
  const list = await sg.backends();
  const firstAvailable = ['cuda', 'webgpu', 'cpu'].find((n) => {
    const b = list.find((x) => x.name === n);
    return b?.available && (!b.software || n === 'cpu');
  });
  assert.is(chosen.name, firstAvailable);
  await sg.setBackend('cpu');
  assert.is(sg.getBackend().name, 'cpu');
});
registry('auto tries backends by priority and names each one it passed over', async () => {
  registerBackend({
    name: 'priority-probe',
    priority: 10,
    create() {
      throw new Error('no such device here');
    },
  });
  const chosen = await sg.setBackend('auto');
  // Tried first (priority 10 against cuda's 2), reported, passed over.
  assert.match(engine.lastChoice, new RegExp(`^auto chose '${chosen.name}' \\(priority-probe unavailable: no such device here`));
  await sg.setBackend('cpu');
});
registry('tensors from different backends are rejected', () => {
  const other = createCpuBackend();
  const a = tensor([1, 2], undefined, { backend: other });
  const b = tensor([1, 2]);
  assertThrows(() => a.add(b), /add: tensors live on different backends/);
});
registry.run();
