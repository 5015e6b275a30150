import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as sg from '@sparsegrad/core';
import { adamStep, setBackend } from '@sparsegrad/core';
import { tensor } from '@sparsegrad/core';
import {
  Adam,
  AdamW,
  BlockSparseLinear,
  BlockSparseModelPatcher,
  GPT,
  Linear,
  SGD,
  Sequential,
  clipGradNorm,
  decayGroups,
  decodeSafetensors,
  encodeSafetensors,
  load,
  save,
  warmupCosine,
} from '@sparsegrad/nn';
import { assertClose, assertRejects, assertThrows, backendSuites, randomArray } from '../../core/test/helpers.ts';

for (const { backend, test } of await backendSuites('optimizers and checkpoints')) {
  // Modules and creation functions without an explicit backend use the current one.
  test.before(async () => void (await setBackend(backend.name)));
  const T = (d: number[]) => tensor(d, undefined, { backend, requiresGrad: true });
  const setGrad = (p: sg.Tensor, g: number[]) => (p.grad = tensor(g, undefined, { backend }));

  test('GradScaler: scaled gradients unscale to the plain ones and step alike; an overflow skips the step and halves the scale; growth', async () => {
    const { GradScaler, AdamW } = await import('@sparsegrad/nn');
    const make = () => {
      sg.manualSeed(11);
      return new Linear(8, 4);
    };
    const x = tensor(Float32Array.from(randomArray(24, 3)), [3, 8], { backend });
    const plain = make();
    const scaled = make();
    const optPlain = new AdamW(plain.parameters(), { lr: 1e-2 });
    const optScaled = new AdamW(scaled.parameters(), { lr: 1e-2 });
    const scaler = new GradScaler({ initScale: 1024, growthInterval: 2 });
    sg.tidy(() => plain.forward(x).pow(2).mean().backward());
    sg.tidy(() => scaler.scaleLoss(scaled.forward(x).pow(2).mean()).backward());
    assertClose(
      await scaled.weight.grad!.toArray(),
      Float32Array.from(await plain.weight.grad!.toArray(), (g) => g * 1024),
      1e-5,
      'scaled gradient',
    );
    assert.is(await scaler.step(optScaled), true);
    optPlain.step();
    assertClose(await scaled.weight.toArray(), await plain.weight.toArray(), 1e-6, 'the same step');
    scaler.update();
    assert.is(scaler.scale, 1024);
    // An overflow: the step is skipped (parameters untouched), the scale halves, growth restarts.
    optScaled.zeroGrad();
    sg.tidy(() => scaler.scaleLoss(scaled.forward(x).pow(2).mean().mul(Infinity)).backward());
    const before = await scaled.weight.toArray();
    assert.is(await scaler.step(optScaled), false);
    assert.equal(await scaled.weight.toArray(), before);
    scaler.update();
    assert.is(scaler.scale, 512);
    // Two clean steps double it (growthInterval 2).
    for (let i = 0; i < 2; i++) {
      optScaled.zeroGrad();
      sg.tidy(() => scaler.scaleLoss(scaled.forward(x).pow(2).mean()).backward());
      assert.is(await scaler.unscale(optScaled), true);
      await assertRejects(() => scaler.unscale(optScaled), /GradScaler\.unscale: already called for this optimizer since the last update\(\)/);
      assert.is(await scaler.step(optScaled), true);
      scaler.update();
    }
    assert.is(scaler.scale, 1024);
    assert.equal(scaler.stateDict(), { scale: 1024, growthTracker: 0 });
    assertThrows(() => scaler.update(), /GradScaler\.update: call step\(\) \(or unscale\(\)\) first/);
    assertThrows(() => scaler.loadStateDict({ scale: -1, growthTracker: 0 }), /GradScaler\.loadStateDict: expected/);
    assertThrows(() => new GradScaler({ backoffFactor: 2 }), /GradScaler: backoffFactor must be in \(0, 1\), got 2/);
    for (const o of [optPlain, optScaled]) o.dispose();
  });

  test('SGD with momentum and weight decay matches the update rule', async () => {
    const p = T([1, -2]);
    const opt = new SGD([p], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
    const ref = [1, -2];
    const buf = [0, 0];
    for (let step = 0; step < 3; step++) {
      const g = [0.5 * (step + 1), -0.25];
      setGrad(p, g);
      opt.step();
      for (let i = 0; i < 2; i++) {
        const d = g[i] + 0.01 * ref[i];
        buf[i] = step === 0 ? d : 0.9 * buf[i] + d;
        ref[i] -= 0.1 * buf[i];
      }
    }
    assertClose(await p.toArray(), ref, 1e-6);
  });

  test('Adam and AdamW match the reference update (bias-corrected, L2 vs decoupled decay)', async () => {
    for (const [Opt, decoupled] of [
      [Adam, false],
      [AdamW, true],
    ] as const) {
      const p = T([0.5, -1.5, 2]);
      const opt = new Opt([p], { lr: 0.01, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.1 });
      const ref = [0.5, -1.5, 2];
      const m = [0, 0, 0];
      const v = [0, 0, 0];
      for (let t = 1; t <= 4; t++) {
        const g = [0.3 * t, -0.2, 0.05 * t * t];
        setGrad(p, g);
        opt.step();
        for (let i = 0; i < 3; i++) {
          let gi = g[i];
          if (!decoupled) gi += 0.1 * ref[i];
          else ref[i] *= 1 - 0.01 * 0.1;
          m[i] = 0.9 * m[i] + 0.1 * gi;
          v[i] = 0.99 * v[i] + 0.01 * gi * gi;
          ref[i] -= (0.01 * (m[i] / (1 - 0.9 ** t))) / (Math.sqrt(v[i] / (1 - 0.99 ** t)) + 1e-8);
        }
      }
      assertClose(await p.toArray(), ref, 1e-6, Opt.name);
    }
    assertThrows(() => new Adam([T([1])], { lr: -1 }), /Adam: lr must be positive, got -1/);
    const spec = { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, decoupled: true, biasCorrection1: 0.1, biasCorrection2: 0.01 };
    assertThrows(
      () => adamStep(T([1, 2]), T([1]), T([0, 0]), T([0, 0]), spec),
      /adamStep: parameter, gradient and moments must share one shape, got \[2\] and \[1\]/,
    );
    assertThrows(() => adamStep(T([1]), T([1]), T([0]), T([0]), { ...spec, lr: NaN }), /adamStep: lr must be finite, got NaN/);
    assertThrows(() => new AdamW([T([1])], { lr: 1, betas: [1, 0.9] }), /AdamW: beta1 must be in \[0, 1\), got 1/);
    assertThrows(() => new SGD([], { lr: 1 }), /SGD: received no parameters to optimise/);
  });

  test('parameter groups: each group its own weight decay; decayGroups leaves biases, norms and embeddings undecayed; tied weights count once', async () => {
    const a = T([1, -2]);
    const b = T([3]);
    const opt = new AdamW(
      [
        { params: [a], weightDecay: 0.5 },
        { params: [b], weightDecay: 0 },
      ],
      { lr: 0.1 },
    );
    setGrad(a, [0, 0]);
    setGrad(b, [0]);
    opt.step(); // zero gradients: only decoupled decay moves a parameter
    assertClose(await a.toArray(), [1 * (1 - 0.1 * 0.5), -2 * (1 - 0.1 * 0.5)], 1e-6, 'decayed group');
    assertClose(await b.toArray(), [3], 0, 'undecayed group');
    assertThrows(() => new SGD([a, a], { lr: 1 }), /SGD: parameter 1 \(shape \[2\]\) is listed twice/);
    assertThrows(() => new AdamW([{ params: [a], weightDecay: -1 }], { lr: 1 }), /AdamW: a group's weightDecay must be >= 0, got -1/);
    sg.manualSeed(2);
    const gpt = new GPT({ vocabSize: 20, seqLen: 8, dModel: 32, heads: 2, layers: 1 });
    const names = new Map([...gpt.namedParameters()].map(([n, p]) => [p, n]));
    const [decay, noDecay] = decayGroups(gpt, 0.1);
    assert.is(decay.weightDecay, 0.1);
    assert.is(noDecay.weightDecay, 0);
    const decayed = [...decay.params].map((p) => names.get(p)!);
    const undecayed = [...noDecay.params].map((p) => names.get(p)!);
    assert.ok(
      decayed.every((n) => /(query|key|value|output|fc1|fc2|head)\.weight$/.test(n)),
      decayed.join(),
    );
    assert.ok(
      undecayed.every((n) => /bias$|ln\d\.weight$|norm\.weight$|Embedding\.weight$/.test(n)),
      undecayed.join(),
    );
    assert.ok(undecayed.includes('tokenEmbedding.weight') && undecayed.includes('layers.0.ln1.weight'));
    assert.is(decayed.length + undecayed.length, gpt.parameters().length);
    // nanoGPT's rule: every parameter of 2 or more dims (the embedding tables too), no vector.
    const [matrices, vectors] = decayGroups(gpt, 0.1, { decay: 'matrices' });
    assert.equal(
      [...matrices.params].map((p) => names.get(p)!).sort(),
      [...gpt.namedParameters()]
        .filter(([, p]) => p.rank >= 2)
        .map(([n]) => n)
        .sort(),
    );
    assert.ok([...matrices.params].map((p) => names.get(p)).includes('tokenEmbedding.weight'));
    assert.ok([...vectors.params].every((p) => p.rank === 1));
    assertThrows(() => decayGroups(gpt, 0.1, { decay: 'all' as never }), /decayGroups: decay must be 'linear' or 'matrices', got all/);
    // A weight shared by two modules (tied) is one parameter.
    const tied = new Sequential(new Linear(4, 4), new Linear(4, 4));
    const [l0, l1] = [tied.getModule('0') as Linear, tied.getModule('1') as Linear];
    (l1 as unknown as { registerParameter(n: string, t: sg.Tensor): void }).registerParameter('weight', l0.weight);
    assert.is(tied.parameters().length, 3);
    assert.is([...tied.namedParameters()].length, 3);
    assert.is(tied.parameterCount(), 16 + 4 + 4);
  });

  test('clipGradNorm scales to the max norm and returns the original norm', async () => {
    const a = T([0, 0]);
    const b = T([0]);
    setGrad(a, [3, 0]);
    setGrad(b, [4]);
    const norm = clipGradNorm([a, b], 1);
    assertClose([await norm.item()], [5], 1e-6);
    assertClose([...(await a.grad!.toArray()), ...(await b.grad!.toArray())], [0.6, 0, 0.8], 1e-5);
    setGrad(a, [0.3, 0]);
    setGrad(b, [0.4]);
    clipGradNorm([a, b], 1);
    assertClose(await a.grad!.toArray(), [0.3, 0], 1e-5); // below the limit: unchanged
    assertThrows(() => clipGradNorm([T([1])], 1), /clipGradNorm: no parameter has a gradient/);
  });

  test('warmup + cosine schedule', () => {
    const lr = warmupCosine({ lr: 1, warmupSteps: 10, totalSteps: 110, minLr: 0.1 });
    assertClose([lr(0), lr(4), lr(9), lr(10), lr(60), lr(110), lr(500)], [0.1, 0.5, 1, 1, 0.55, 0.1, 0.1], 1e-9);
    assertThrows(() => warmupCosine({ lr: 1, warmupSteps: 10, totalSteps: 5 }), /warmupCosine: expected lr > 0, 0 <= warmupSteps < totalSteps/);
  });

  test('save/load round trip of a patched GPT, including block coordinates', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sparsegrad-'));
    const path = join(dir, 'model.safetensors');
    sg.manualSeed(11);
    const config = { vocabSize: 20, seqLen: 8, dModel: 32, heads: 2, layers: 2 };
    const a = new GPT(config);
    await new BlockSparseModelPatcher().addPattern(String.raw`layers\.[0-9]+\.mlp\.fc1`, { density: 0.25, blockSize: 16 }).patchModel(a);
    await save(a, path, { note: 'test' });
    // A model with another random pattern loads the saved pattern.
    sg.manualSeed(12);
    const b = new GPT(config);
    await new BlockSparseModelPatcher().addPattern(String.raw`layers\.[0-9]+\.mlp\.fc1`, { density: 0.5, blockSize: 16 }).patchModel(b);
    const { metadata } = await load(b, path);
    assert.is(metadata.note, 'test');
    const fa = a.getModule('layers.1.mlp.fc1') as BlockSparseLinear;
    const fb = b.getModule('layers.1.mlp.fc1') as BlockSparseLinear;
    assert.equal([...fb.layout.rowIdx], [...fa.layout.rowIdx]);
    assert.equal([...fb.layout.colIdx], [...fa.layout.colIdx]);
    const ids = tensor(
      Int32Array.from({ length: 16 }, (_, i) => i % 20),
      [2, 8],
      { dtype: 'int32', backend },
    );
    assertClose(await b.forward(ids).toArray(), await a.forward(ids).toArray(), 1e-6);
    // A file with the header layout the Python reader expects.
    const bytes = readFileSync(path);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    assert.is((8 + headerLen) % 8, 0);
    const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString());
    assert.equal(header['layers.0.mlp.fc1.blockCoords'].dtype, 'I32');
    assert.equal(header['layers.0.mlp.fc1.weight'].shape, [4, 16, 16]);
    assert.is(header.__metadata__.format, 'pt');
  });

  test('a block-sparse GPT stopped, saved and resumed (optimizer built before loading) equals an uninterrupted run', async () => {
    const config = { vocabSize: 16, seqLen: 8, dModel: 32, heads: 2, layers: 1 };
    const build = async (seed: number) => {
      sg.manualSeed(seed);
      const m = new GPT(config);
      await new BlockSparseModelPatcher().addPattern(String.raw`layers\.[0-9]+\.mlp\.fc[12]`, { density: 0.5, blockSize: 16 }).patchModel(m);
      return m;
    };
    const x = tensor(
      Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 16),
      [2, 8],
      { dtype: 'int32', backend },
    );
    const y = tensor(
      Int32Array.from({ length: 16 }, (_, i) => (i * 5 + 3) % 16),
      [2, 8],
      { dtype: 'int32', backend },
    );
    const train = (m: GPT, opt: AdamW, steps: number) => {
      for (let i = 0; i < steps; i++)
        sg.tidy(() => {
          sg.crossEntropy(m.forward(x), y).backward();
          opt.step();
          opt.zeroGrad();
        });
    };
    const straight = await build(1);
    train(straight, new AdamW(straight.parameters(), { lr: 1e-2 }), 4);
    const first = await build(1);
    const firstOpt = new AdamW(first.parameters(), { lr: 1e-2 });
    train(first, firstOpt, 2);
    const fc1 = () => first.getModule('layers.0.mlp.fc1') as BlockSparseLinear;
    const halfway = await fc1().weight.toArray();
    const modelBytes = await encodeSafetensors(first.stateDict());
    const optBytes = await encodeSafetensors(firstOpt.stateDict().tensors);
    // Another seed: another block pattern, which loading must replace in place.
    const resumed = await build(2);
    const opt = new AdamW(resumed.parameters(), { lr: 1e-2 });
    const weightBefore = (resumed.getModule('layers.0.mlp.fc1') as BlockSparseLinear).weight;
    await resumed.loadStateDict(decodeSafetensors(modelBytes, 'model', { backend }).tensors);
    opt.loadStateDict({ tensors: decodeSafetensors(optBytes, 'optimizer', { backend }).tensors, step: 2 });
    assert.ok((resumed.getModule('layers.0.mlp.fc1') as BlockSparseLinear).weight === weightBefore, 'the parameter keeps its identity');
    train(resumed, opt, 2);
    const tol = backend.name === 'cpu' ? 0 : 1e-5;
    const want = straight.stateDict();
    for (const [name, t] of Object.entries(resumed.stateDict())) {
      const got = await t.toArray();
      const ref = await want[name].toArray();
      if (tol === 0) assert.equal([...got], [...ref], `${name} bit for bit`);
      else assertClose(got, ref, tol, name);
    }
    const moved = await (resumed.getModule('layers.0.mlp.fc1') as BlockSparseLinear).weight.toArray();
    assert.ok(
      moved.some((v, i) => v !== halfway[i]),
      'the block-sparse weight kept training after the resume',
    );
  });

  test('an optimizer whose parameter was replaced by a load of another block count throws instead of skipping it', async () => {
    sg.manualSeed(3);
    const small = new BlockSparseLinear(32, 32, { density: 0.25, blockSize: 16 });
    const big = new BlockSparseLinear(32, 32, { density: 0.75, blockSize: 16 });
    const opt = new SGD(big.parameters(), { lr: 0.1 });
    await big.loadStateDict(small.stateDict());
    assert.is(big.weight.shape[0], 1);
    assertThrows(() => opt.step(), /SGD\.step: parameter 0 \(shape \[3, 16, 16\]\) was disposed/);
  });

  test('broken, foreign and mismatched files get clear errors; a failed save leaves the old file intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sparsegrad-'));
    const path = join(dir, 'm.safetensors');
    const model = new Linear(4, 2);
    await save(model, path);
    const good = readFileSync(path);
    writeFileSync(join(dir, 'trunc.safetensors'), good.subarray(0, good.length - 5));
    await assertRejects(
      () => load(model, join(dir, 'trunc.safetensors')),
      /load: .*trunc.safetensors is truncated: tensor '.*' ends at byte \d+ of the data but the file has \d+/,
    );
    writeFileSync(join(dir, 'text.safetensors'), 'hello, this is not a checkpoint');
    await assertRejects(() => load(model, join(dir, 'text.safetensors')), /load: .*text.safetensors is not a safetensors file/);
    writeFileSync(join(dir, 'tiny.safetensors'), 'abc');
    await assertRejects(() => load(model, join(dir, 'tiny.safetensors')), /is not a safetensors file \(only 3 bytes\)/);
    await assertRejects(() => load(model, join(dir, 'missing.safetensors')), /load: cannot read .*missing.safetensors: ENOENT/);
    await assertRejects(
      () => load(new Linear(4, 3), path),
      /loadStateDict: 'weight' has shape \[2, 4\] \(float32\) in the state but \[3, 4\] \(float32\) in the model/,
    );
    await assertRejects(
      () => load(new Linear(4, 2, { bias: false }), path),
      /loadStateDict: state does not match the model: missing keys \[\], unexpected keys \[bias\]/,
    );
    // Byte ranges that overlap, leave a gap or leave bytes over are damage, not data.
    const handMade = (entries: Record<string, [number, number]>, dataBytes: number) => {
      const header: Record<string, unknown> = {};
      for (const [name, offsets] of Object.entries(entries)) header[name] = { dtype: 'F32', shape: [(offsets[1] - offsets[0]) / 4], data_offsets: offsets };
      const json = Buffer.from(JSON.stringify(header));
      const out = Buffer.alloc(8 + json.length + dataBytes);
      out.writeBigUInt64LE(BigInt(json.length), 0);
      json.copy(out, 8);
      return out;
    };
    assert.is(Object.keys(decodeSafetensors(handMade({ a: [0, 8], b: [8, 12] }, 12), 'ok').tensors).length, 2);
    assertThrows(
      () => decodeSafetensors(handMade({ a: [0, 8], b: [4, 12] }, 12), 'overlap.safetensors'),
      /load: overlap\.safetensors is damaged: tensor 'b' \(bytes 4-12\) overlaps the tensor before it, which ends at byte 8/,
    );
    assertThrows(
      () => decodeSafetensors(handMade({ a: [0, 4], b: [8, 12] }, 12), 'gap.safetensors'),
      /load: gap\.safetensors is damaged: bytes 4-8 of the data belong to no tensor \(gap before 'b'\)/,
    );
    assertThrows(() => decodeSafetensors(handMade({ a: [4, 8] }, 8), 'lead.safetensors'), /bytes 0-4 of the data belong to no tensor/);
    assertThrows(
      () => decodeSafetensors(handMade({ a: [0, 4] }, 8), 'tail.safetensors'),
      /tail\.safetensors is damaged: the header describes 4 bytes of tensor data but the file holds 8/,
    );
    assertThrows(() => decodeSafetensors(handMade({ a: [0, 8], b: [0, 8] }, 8), 'alias.safetensors'), /tensor '.' \(bytes 0-8\) overlaps/);
    // BF16 and F16 as PyTorch writes them (bytes set by hand from the formats' definitions): read
    // as bfloat16 / float16 tensors where the backend holds them, else as float32; values exact.
    const halfFile = (() => {
      const header = { w: { dtype: 'BF16', shape: [2, 2], data_offsets: [0, 8] }, h: { dtype: 'F16', shape: [3], data_offsets: [8, 14] } };
      const json = Buffer.from(JSON.stringify(header));
      const out = Buffer.alloc(8 + json.length + 14);
      out.writeBigUInt64LE(BigInt(json.length), 0);
      json.copy(out, 8);
      [0x3f80, 0xc000, 0x3eab, 0x7fc0, 0x3c00, 0x7bff, 0x0001].forEach((bits, i) => out.writeUInt16LE(bits, 8 + json.length + 2 * i));
      return out;
    })();
    const halves = decodeSafetensors(halfFile, 'half.safetensors', { backend }).tensors;
    const w = [...(await halves.w.toArray())];
    assert.equal(w.slice(0, 3), [1, -2, 0.333984375]);
    assert.ok(Number.isNaN(w[3]));
    assert.equal([...(await halves.h.toArray())], [1, 65504, 2 ** -24]);
    assert.is(halves.w.dtype, backend.dtypes.includes('bfloat16') ? 'bfloat16' : 'float32');
    assert.is(halves.h.dtype, backend.dtypes.includes('float16') ? 'float16' : 'float32');
    // A 16-bit tensor is written in its own dtype and reads back bit for bit; loading it into a
    // float32 model converts it, as PyTorch's load_state_dict does.
    if (backend.dtypes.includes('bfloat16')) {
      const again = decodeSafetensors(await encodeSafetensors({ w: halves.w }), 'again', { backend }).tensors.w;
      assert.is(again.dtype, 'bfloat16');
      assert.equal(Array.from(await again.toArray()).slice(0, 3), [1, -2, 0.333984375]);
      const lin = new Linear(2, 1, { bias: false });
      await lin.loadStateDict({ weight: again.reshape(4).slice(0, 0, 2).reshape(1, 2) });
      assert.is(lin.weight.dtype, 'float32');
      assert.equal(Array.from(await lin.weight.toArray()), [1, -2]);
      await assertRejects(
        () => lin.loadStateDict({ weight: tensor(Int32Array.of(1, 2), [1, 2], { backend }) }),
        /loadStateDict: 'weight' has shape \[1, 2\] \(int32\) in the state but \[1, 2\] \(float32\)/,
      );
    }
    // Written as BF16 / F16: PyTorch's dtype codes, half the bytes, values rounded to nearest even; int32 stays I32.
    const values = {
      x: tensor(Float32Array.from([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 70000]), [4], { backend }),
      i: tensor(Int32Array.from([7, -1]), [2], { dtype: 'int32', backend }),
    };
    for (const [float, code, expect] of [
      ['bfloat16', 'BF16', [1, 1, 1 + 2 ** -6, 70144]],
      ['float16', 'F16', [1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, Infinity]], // 10 mantissa bits hold both; 70000 > 65504
    ] as const) {
      const bytes = await encodeSafetensors(values, {}, { float });
      const headerLen = Number(Buffer.from(bytes).readBigUInt64LE(0));
      const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + headerLen)).toString());
      assert.equal([header.x.dtype, header.i.dtype], [code, 'I32']);
      assert.is(header.x.data_offsets[1] - header.x.data_offsets[0], 8);
      const back = decodeSafetensors(bytes, float, { backend }).tensors;
      assert.equal([...(await back.x.toArray())], [...expect], float);
      assert.equal([...(await back.i.toArray())], [7, -1]);
    }
    // A model saved in bfloat16 loads back as its weights rounded to bfloat16, in half the bytes.
    const lin = new Linear(64, 32);
    const bfPath = join(dir, 'bf16.safetensors');
    await save(lin, bfPath, {}, { float: 'bfloat16' });
    await save(lin, join(dir, 'f32.safetensors'));
    assert.ok(readFileSync(bfPath).length < 0.6 * readFileSync(join(dir, 'f32.safetensors')).length);
    const reloaded = new Linear(64, 32);
    await load(reloaded, bfPath);
    assert.equal([...(await reloaded.weight.toArray())], [...sg.bfloat16ToFloat32(sg.float32ToBfloat16(await lin.weight.toArray()))]);
    const short = Buffer.from(halfFile);
    assertThrows(
      () => decodeSafetensors(short.subarray(0, short.length - 2), 'short.safetensors'),
      /short\.safetensors is truncated: tensor 'h' ends at byte 14 of the data but the file has 12/,
    );
    // A save that fails half-way (a disposed parameter) must not touch the existing checkpoint.
    const broken = new Linear(4, 2);
    broken.bias!.dispose();
    await assertRejects(() => save(broken, path), /was disposed/);
    assert.equal(readFileSync(path), good);
    assert.equal(
      readdirSync(dir).filter((f) => f.includes('.tmp-')),
      [],
    );
    assert.ok(existsSync(path));
  });

  test('safetensors encode/decode round trip of float32 and int32', async () => {
    const bytes = await encodeSafetensors(
      { a: tensor([[1.5, -2]], undefined, { backend }), b: tensor(new Int32Array([7, -8, 9]), undefined, { backend }) },
      { k: 'v' },
    );
    const { tensors, metadata } = decodeSafetensors(bytes, 'memory', { backend });
    assert.equal(await tensors.a.toNested(), [[1.5, -2]]);
    assert.is(tensors.b.dtype, 'int32');
    assert.equal([...(await tensors.b.toArray())], [7, -8, 9]);
    assert.is(metadata.k, 'v');
  });

  test.run();
}
