import * as assert from 'uvu/assert';
import * as sg from '@sparsegrad/core';
import { setBackend } from '@sparsegrad/core';
import { tensor, type Tensor } from '@sparsegrad/core';
import {
  Bert,
  BertLayer,
  BlockSparseLinear,
  BlockSparseModelPatcher,
  Dropout,
  GPT,
  LayerNorm,
  Linear,
  ModelPatcher,
  Module,
  ModuleList,
  PseudoBlockSparseLinear,
  ReLU,
  Sequential,
  TransformerBlock,
} from '@sparsegrad/nn';
import { assertClose, assertRejects, assertThrows, backendSuites, gradCheck, randomArray } from '../../core/test/helpers.ts';

class Block extends Module {
  fc1: Linear;
  act: ReLU;
  fc2: Linear;
  constructor() {
    super();
    this.fc1 = this.registerModule('fc1', new Linear(32, 64));
    this.act = this.registerModule('act', new ReLU());
    this.fc2 = this.registerModule('fc2', new Linear(64, 32, { bias: false }));
  }
  forward(x: Tensor) {
    return this.fc2.forward(this.act.forward(this.fc1.forward(x)));
  }
}
class Net extends Module {
  layers: ModuleList<Block>;
  head: Sequential;
  constructor() {
    super();
    this.layers = this.registerModule('layers', new ModuleList([new Block(), new Block()]));
    this.head = this.registerModule('head', new Sequential(new LayerNorm(32), new Dropout(0.5)));
  }
}

/** Dense reference of a block-sparse layer: x W_dense^T + b in float64. */
function denseLinearRef(x: ArrayLike<number>, m: number, w: ArrayLike<number>, out: number, inn: number, b?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(m * out);
  for (let i = 0; i < m; i++)
    for (let o = 0; o < out; o++) {
      let s = b ? b[o] : 0;
      for (let k = 0; k < inn; k++) s += x[i * inn + k] * w[o * inn + k];
      y[i * out + o] = s;
    }
  return y;
}

for (const { backend, test } of await backendSuites('nn modules')) {
  // Modules and creation functions without an explicit backend use the current one.
  test.before(async () => void (await setBackend(backend.name)));

  test('registration: dotted paths, parameters, stateDict, get/setModule, train/eval', () => {
    const net = new Net();
    const paths = [...net.namedModules()].map(([p]) => p);
    assert.equal(paths, [
      '',
      'layers',
      'layers.0',
      'layers.0.fc1',
      'layers.0.act',
      'layers.0.fc2',
      'layers.1',
      'layers.1.fc1',
      'layers.1.act',
      'layers.1.fc2',
      'head',
      'head.0',
      'head.1',
    ]);
    assert.equal(Object.keys(net.stateDict()), [
      'layers.0.fc1.weight',
      'layers.0.fc1.bias',
      'layers.0.fc2.weight',
      'layers.1.fc1.weight',
      'layers.1.fc1.bias',
      'layers.1.fc2.weight',
      'head.0.weight',
      'head.0.bias',
    ]);
    assert.is(net.parameterCount(), 2 * (32 * 64 + 64 + 64 * 32) + 64);
    assert.is(net.getModule('layers.1.fc2'), net.layers.at(1).fc2);
    const replacement = new Linear(64, 32);
    net.setModule('layers.1.fc2', replacement);
    assert.is(net.layers.at(1).fc2, replacement);
    net.eval();
    assert.is(net.getModule('head.1').training, false);
    assertThrows(() => net.getModule('layers.7'), /getModule: no module at 'layers.7' \('7' is not a child of a ModuleList\)/);
  });

  test('Linear matches a float64 reference; gradient check', async () => {
    const lin = new Linear(5, 3);
    const x = randomArray(4 * 5, 1);
    const y = await lin.forward(tensor(Float32Array.from(x), [4, 5], { backend })).toArray();
    assertClose(y, denseLinearRef(Float32Array.from(x), 4, await lin.weight.toArray(), 3, 5, await lin.bias!.toArray()), 1e-5);
    assertThrows(() => lin.forward(sg.zeros([2, 4], { backend })), /Linear: expected input with last dimension 5, got shape \[2, 4\]/);
  });

  for (const bs of [16, 32]) {
    for (const density of [0.25, 0.5, 1]) {
      test(`BlockSparseLinear equals its masked dense weight (bs ${bs}, density ${density}) and passes a gradient check`, async () => {
        sg.manualSeed(bs + density * 100);
        const layer = new BlockSparseLinear(2 * bs, 3 * bs, { density, blockSize: bs });
        assert.is(layer.weight.shape[0], Math.round(density * 6));
        const dense = await layer.denseWeight().toArray();
        const mask = layer.layout;
        // The dense view has zeros exactly outside the stored blocks.
        for (let r = 0; r < 3; r++)
          for (let c = 0; c < 2; c++) {
            const stored = [...mask.rowIdx].some((rr, i) => rr === r && mask.colIdx[i] === c);
            if (!stored) for (let i = 0; i < bs; i++) assert.is(dense[(r * bs + i) * 2 * bs + c * bs], 0);
          }
        const x = Float32Array.from(randomArray(7 * 2 * bs, 3));
        const y = await layer.forward(tensor(x, [7, 2 * bs], { backend })).toArray();
        assertClose(y, denseLinearRef(x, 7, dense, 3 * bs, 2 * bs, await layer.bias!.toArray()), 1e-5);
        if (bs === 16) {
          const blocks = { data: randomArray(layer.weight.size, 9), shape: [...layer.weight.shape] };
          // The layer's own forward, with the block data as an explicit input.
          await gradCheck(
            (xx, w) => sg.bsrMatmul(xx, w, layer.layout).add(layer.bias!.detach()),
            [{ data: randomArray(3 * 2 * bs, 4), shape: [3, 2 * bs] }, blocks],
            { backend },
          );
        }
      });
    }
  }

  test('fromLinear keeps the largest blocks; PseudoBlockSparseLinear computes the same function', async () => {
    sg.manualSeed(5);
    const lin = new Linear(64, 32);
    // Make block (row 0, col 1) dominant so it must be kept at density 0.5.
    const w = await lin.weight.toArray();
    for (let i = 0; i < 32; i++) for (let j = 32; j < 64; j++) w[i * 64 + j] *= 10;
    lin.weight.assign(tensor(w, [32, 64], { backend }));
    const sparse = await BlockSparseLinear.fromLinear(lin, { density: 0.5, blockSize: 32 });
    assert.equal([...sparse.layout.colIdx], [1]);
    const pseudo = await PseudoBlockSparseLinear.fromLinear(lin, { density: 0.5, blockSize: 32 });
    const x = tensor(Float32Array.from(randomArray(5 * 64, 2)), [5, 64], { backend });
    assertClose(await sparse.forward(x).toArray(), await pseudo.forward(x).toArray(), 1e-5);
    const expected = new Float32Array(w);
    for (let i = 0; i < 32; i++) for (let j = 0; j < 32; j++) expected[i * 64 + j] = 0;
    assertClose(await sparse.forward(x).toArray(), denseLinearRef(await x.toArray(), 5, expected, 32, 64, await lin.bias!.toArray()), 1e-5);
  });

  test('BlockSparseModelPatcher on a nested BERT-like encoder: report, counts, first pattern wins', async () => {
    sg.manualSeed(2);
    const bert = new Bert({ vocabSize: 50, seqLen: 8, dModel: 64, heads: 4, layers: 3 });
    const patcher = new BlockSparseModelPatcher();
    assert.equal(
      patcher
        .patchableLayers(bert)
        .slice(0, 6)
        .map((l) => l.path),
      [
        'encoder.layers.0.attention.query',
        'encoder.layers.0.attention.key',
        'encoder.layers.0.attention.value',
        'encoder.layers.0.attention.output',
        'encoder.layers.0.intermediate',
        'encoder.layers.0.output',
      ],
    );
    patcher.addPattern(String.raw`encoder\.layers\.0\.intermediate`, { density: 0.25, blockSize: 16 });
    patcher.addPattern(String.raw`encoder\.layers\.[0-9]+\.intermediate`, { density: 0.5, blockSize: 32 });
    patcher.addPattern(/encoder\.layers\.[0-9]+\.output/, { density: 0.5, blockSize: 32 });
    patcher.addPattern('encoder\\.layers\\.[0-9]+\\.attention\\.output', { density: 0.5, pseudo: true });
    const ids = tensor(
      Int32Array.from({ length: 16 }, (_, i) => (i * 3) % 50),
      [2, 8],
      { dtype: 'int32', backend },
    );
    const before = bert.parameterCount();
    const warnings: string[] = [];
    const report = await patcher.patchModel(bert, { warn: (m) => warnings.push(m) });
    assert.equal(
      report.patched.map((r) => r.path),
      [
        'encoder.layers.0.attention.output',
        'encoder.layers.0.intermediate',
        'encoder.layers.0.output',
        'encoder.layers.1.attention.output',
        'encoder.layers.1.intermediate',
        'encoder.layers.1.output',
        'encoder.layers.2.attention.output',
        'encoder.layers.2.intermediate',
        'encoder.layers.2.output',
      ],
    );
    assert.is(report.patched[1].params.density, 0.25);
    assert.is(report.patched[1].inFeatures, 64);
    assert.is(report.patched[1].outFeatures, 256);
    assert.is(report.patched[1].parametersBefore, 64 * 256 + 256);
    assert.is(report.patched[1].parametersAfter, 64 * 256 * 0.25 + 256);
    assert.is(report.patched[4].params.density, 0.5);
    assert.ok(bert.getModule('encoder.layers.0.intermediate') instanceof BlockSparseLinear);
    assert.ok(bert.getModule('encoder.layers.2.attention.output') instanceof PseudoBlockSparseLinear);
    assert.is(report.parametersBefore, before);
    assert.is(report.parametersAfter, bert.parameterCount());
    // 64x256 weights: layer 0 intermediate keeps 25% of 64*256, the others 50%.
    const dense = 64 * 256;
    assert.is(before - report.parametersAfter, dense * 0.75 + 2 * dense * 0.5 + 3 * dense * 0.5);
    assert.equal(warnings, []);
    const h = bert.forward(ids);
    assert.equal([...h.shape], [2, 8, 64]);
    assert.ok((await h.toArray()).every(Number.isFinite));
  });

  test('patcher warnings and errors', async () => {
    const net = new Net();
    const warnings: string[] = [];
    const report = await new BlockSparseModelPatcher().addPattern('nothing\\.here', { density: 0.5 }).patchModel(net, { warn: (m) => warnings.push(m) });
    assert.equal(report.unmatched, ['nothing\\.here']);
    assert.match(warnings[0], /patchModel: pattern \/nothing\\.here\/ matched no module/);
    await assertRejects(
      () => new BlockSparseModelPatcher().addPattern('layers\\.0\\.act', { density: 0.5 }).patchModel(net),
      /patchModel: 'layers.0.act' matches a pattern but is a ReLU, not a Linear/,
    );
    assertThrows(() => new BlockSparseModelPatcher().addPattern('layers.(', { density: 0.5 }), /addPattern: invalid regular expression \/layers.\(\//);
    assertThrows(() => new BlockSparseModelPatcher().addPattern('x', { density: 1.2 }), /addPattern: density must be in \(0, 1\], got 1.2/);
    assertThrows(
      () => new BlockSparseLinear(100, 64, { density: 0.5 }),
      /BlockSparseLinear: inFeatures \(100\) and outFeatures \(64\) must be multiples of blockSize 32/,
    );
    assertThrows(() => new BlockSparseLinear(64, 64, { density: 0 }), /density must be in \(0, 1\], got 0/);
    const odd = new Sequential(new Linear(40, 64));
    await assertRejects(
      () => new BlockSparseModelPatcher().addPattern('0', { density: 0.5, blockSize: 32 }).patchModel(odd),
      /patchModel: '0' is Linear\(40 -> 64\); both sizes must be multiples of the block size 32/,
    );
    // All or nothing: a bad match anywhere leaves every earlier match in place and working.
    const fc1 = net.getModule('layers.0.fc1');
    await assertRejects(
      () => new BlockSparseModelPatcher().addPattern(String.raw`layers\.[0-9]+\.(fc1|act)`, { density: 0.5 }).patchModel(net),
      /'layers.0.act' matches a pattern but is a ReLU/,
    );
    assert.ok(net.getModule('layers.0.fc1') === fc1 && !(fc1 as Linear).weight.isDisposed, 'the model is untouched after a check failed');
    let calls = 0;
    const failing = new ModelPatcher().addPattern(String.raw`layers\.[0-9]+\.fc1`, () => {
      if (++calls === 2) throw new Error('factory failed');
      return new Dropout(0.1);
    });
    await assertRejects(() => failing.patchModel(net), /factory failed/);
    assert.ok(net.getModule('layers.0.fc1') === fc1, 'the model is untouched after a factory failed');
    // A density below one block is built as one block, and the report says what was built.
    const tiny = new Sequential(new Linear(64, 64));
    const tinyReport = await new BlockSparseModelPatcher().addPattern('0', { density: 0.001, blockSize: 32 }).patchModel(tiny);
    assert.is(tinyReport.patched[0].params.density, 0.001);
    assert.is(tinyReport.patched[0].density, 0.25);
    assert.is((tiny.getModule('0') as BlockSparseLinear).layout.nnzBlocks, 1);
    // the generic patcher takes any factory
    const generic = await new ModelPatcher().addPattern('layers\\.[0-9]+\\.act', () => new Dropout(0.1)).patchModel(net);
    assert.is(generic.patched.length, 2);
    assert.ok(net.getModule('layers.1.act') instanceof Dropout);
  });

  test('Transformer and BERT layers, whose forward releases its intermediates, match finite differences', async () => {
    // Backward frees each released activation after the last rule reading it: a tensor freed too
    // early would throw or change the gradient.
    sg.manualSeed(6);
    const x = { data: randomArray(2 * 3 * 8, 7), shape: [2, 3, 8] };
    const gpt = new TransformerBlock(8, 2, { causal: true });
    await gradCheck((xx) => gpt.forward(xx), [x], { backend });
    const bert = new BertLayer(8, 2, 16, 0);
    await gradCheck((xx) => bert.forward(xx), [x], { backend });
  });

  test('GPT: shapes, errors, and a tiny model learns (loss goes down)', async () => {
    sg.manualSeed(4);
    const model = new GPT({ vocabSize: 16, seqLen: 16, dModel: 32, heads: 2, layers: 2 });
    await new BlockSparseModelPatcher().addPattern(String.raw`layers\.[0-9]+\.mlp\.fc[12]`, { density: 0.5, blockSize: 16 }).patchModel(model);
    const { AdamW } = await import('@sparsegrad/nn');
    const opt = new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0 });
    const seq = Int32Array.from({ length: 4 * 17 }, (_, i) => (i * 5 + Math.floor(i / 17)) % 16);
    const ids = tensor(seq, [4, 17], { dtype: 'int32', backend });
    const x = ids.slice(1, 0, 16).contiguous();
    const y = ids.slice(1, 1, 17).contiguous();
    const losses: number[] = [];
    for (let step = 0; step < 25; step++) {
      const loss = sg.tidy(() => {
        const l = model.loss(x, y);
        l.backward();
        opt.step();
        opt.zeroGrad();
        return l;
      });
      losses.push(await loss.item());
      loss.dispose();
    }
    assert.ok(losses[0] > 2.4 && losses[24] < losses[0] * 0.5, `loss ${losses[0]} -> ${losses[24]}`);
    assert.equal([...model.forward(x).shape], [4, 16, 16]);
    assertThrows(
      () => model.forward(tensor(new Int32Array(40), [2, 20], { dtype: 'int32', backend })),
      /GPT: sequence length 20 exceeds the model's seqLen 16/,
    );
    assertThrows(() => new GPT({ vocabSize: 16, seqLen: 8, dModel: 30, heads: 4, layers: 1 }), /GPT: dModel \(30\) must be divisible by heads \(4\)/);
    assertThrows(() => new GPT({ vocabSize: 16, seqLen: 0, dModel: 32, heads: 4, layers: 1 }), /GPT: seqLen must be a positive integer, got 0/);
    const withDropout = new GPT({ vocabSize: 16, seqLen: 8, dModel: 32, heads: 4, layers: 1, dropout: 0.1 });
    assert.equal([...withDropout.forward(x.slice(1, 0, 8)).shape], [4, 8, 16]);
  });

  test('GPT options: no biases, exact GELU, tied embeddings (trained once, stored once, loaded back), GPT-2 initialisation', async () => {
    const base = { vocabSize: 16, seqLen: 8, dModel: 32, heads: 2, layers: 2 };
    const count = (c: object) => new GPT({ ...base, ...c }).parameterCount();
    // Biases: 2 layers x (4 attention projections of 32 + fc1 128 + fc2 32 + 2 layer norms of 32) + the final norm's 32.
    assert.is(count({}) - count({ bias: false }), 2 * (4 * 32 + 128 + 32 + 2 * 32) + 32);
    const noBias = new GPT({ ...base, bias: false });
    assert.ok(![...noBias.namedParameters()].some(([name]) => name.endsWith('.bias')), 'no bias parameters');
    assert.match(new GPT({ ...base, gelu: 'none' }).summary(), /GELU\(none\)/);
    assert.not.match(new GPT({ ...base, gelu: 'none' }).summary(), /GELU\(tanh\)/);
    // Tied: the head's weight is the token embedding, counted and listed once.
    sg.manualSeed(3);
    const tied = new GPT({ ...base, tieEmbeddings: true });
    assert.ok(tied.head.weight === tied.tokenEmbedding.weight);
    assert.is(count({}) - tied.parameterCount(), 16 * 32);
    assert.equal(tied.tiedNames(), [['tokenEmbedding.weight', 'head.weight']]);
    const state = tied.stateDict();
    assert.ok('tokenEmbedding.weight' in state && !('head.weight' in state), 'stored once');
    // Both uses reach the one gradient: the tied model's gradient is the sum of the untied model's two.
    const ids = tensor(
      Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 16),
      [2, 8],
      { dtype: 'int32', backend },
    );
    const targets = tensor(
      Int32Array.from({ length: 16 }, (_, i) => (i * 3) % 16),
      [2, 8],
      { dtype: 'int32', backend },
    );
    const untied = new GPT(base);
    await untied.loadStateDict({ ...state, 'head.weight': state['tokenEmbedding.weight'] });
    sg.tidy(() => tied.loss(ids, targets).backward());
    sg.tidy(() => untied.loss(ids, targets).backward());
    const sum = sg.tidy(() => untied.tokenEmbedding.weight.grad!.add(untied.head.weight.grad!));
    assertClose(await tied.tokenEmbedding.weight.grad!.toArray(), await sum.toArray(), 1e-5, 'tied gradient');
    // Loading its own state back: the tied name is not missing; two different tensors for it are refused.
    const copy = new GPT({ ...base, tieEmbeddings: true });
    assert.equal((await copy.loadStateDict(state)).missingKeys, []);
    // Loaded parameters own their buffers (copies): the state tensors stay alive here.
    for (const [name, p] of copy.namedParameters()) assert.ok(p.ownsBuffer, `${name} owns its buffer after loadStateDict`);
    assertClose(await copy.head.weight.toArray(), await tied.tokenEmbedding.weight.toArray(), 0, 'loaded into the tied weight');
    await assertRejects(
      () => copy.loadStateDict({ ...untied.stateDict(), 'head.weight': sg.zeros([16, 32], { backend }) }),
      /loadStateDict: 'tokenEmbedding.weight' and 'head.weight' are one tied parameter in the model but hold different values in the state/,
    );
    // GPT-2 initialisation: N(0, std) weights, residual projections N(0, std / sqrt(2 layers)), zero biases.
    sg.manualSeed(5);
    const init = new GPT({ ...base, vocabSize: 64, dModel: 64, initStd: 0.02 });
    const std = async (t: Tensor) => {
      const v = [...(await t.toArray())];
      return Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length);
    };
    const near = (got: number, want: number, what: string) => assert.ok(Math.abs(got / want - 1) < 0.1, `${what}: std ${got}, expected ${want}`);
    const linear = (path: string) => init.getModule(path) as Linear;
    near(await std(linear('layers.0.mlp.fc1').weight), 0.02, 'fc1');
    near(await std(linear('layers.1.mlp.fc2').weight), 0.01, 'fc2 (residual)');
    near(await std(linear('layers.0.attention.output').weight), 0.01, 'attention.output (residual)');
    near(await std(init.tokenEmbedding.weight), 0.02, 'embedding');
    assert.equal([...new Set(await linear('layers.0.mlp.fc1').bias!.toArray())], [0]);
    // Each parameter holds its buffer alone (the draws are not kept alive), so optimizer steps
    // update it in place and captureStep can record them.
    for (const [name, p] of init.namedParameters()) assert.ok(p.ownsBuffer, `${name} owns its buffer after the initialisation`);
    // Patching a tied head unties it, says so, and leaves the embedding (which it shared) intact.
    const warnings: string[] = [];
    await new BlockSparseModelPatcher().addPattern('^head$', { density: 0.5, blockSize: 16 }).patchModel(copy, { warn: (w) => warnings.push(w) });
    assert.equal(warnings, [
      "patchModel: 'head.weight' was tied to 'tokenEmbedding.weight'; the replacement of 'head' has its own weights, so they are no longer tied",
    ]);
    assert.equal(copy.tiedNames(), []);
    assert.equal([...copy.forward(ids).shape], [2, 8, 16]);
    assertClose(await copy.tokenEmbedding.weight.toArray(), await tied.tokenEmbedding.weight.toArray(), 0, 'the embedding survives the patch');
    assertThrows(() => new GPT({ ...base, initStd: 0 }), /GPT: initStd must be a positive number, got 0/);
    assertThrows(() => new GPT({ ...base, gelu: 'exact' as 'none' }), /GPT: gelu must be 'tanh' or 'none', got 'exact'/);
  });

  test('attention: causal positions ignore the future; padding mask ignores padded keys', async () => {
    const { MultiHeadAttention } = await import('@sparsegrad/nn');
    sg.manualSeed(9);
    const attn = new MultiHeadAttention(16, 2, { causal: true });
    const a = Float32Array.from(randomArray(5 * 16, 1));
    const b = a.slice();
    for (let i = 3 * 16; i < 5 * 16; i++) b[i] += 1; // change the last two positions only
    const ya = await attn.forward(tensor(a, [1, 5, 16], { backend })).toArray();
    const yb = await attn.forward(tensor(b, [1, 5, 16], { backend })).toArray();
    assertClose(ya.slice(0, 3 * 16), yb.slice(0, 3 * 16), 1e-6, 'prefix unchanged');
    assert.ok(Math.abs(ya[4 * 16] - yb[4 * 16]) > 1e-4, 'suffix changed');
    const full = new MultiHeadAttention(16, 2);
    const mask = tensor([[1, 1, 1, 0, 0]], undefined, { backend });
    const ma = await full.forward(tensor(a, [1, 5, 16], { backend }), mask).toArray();
    const mb = await full.forward(tensor(b, [1, 5, 16], { backend }), mask).toArray();
    assertClose(ma.slice(0, 3 * 16), mb.slice(0, 3 * 16), 1e-6, 'padded keys ignored');
    assertThrows(() => new MultiHeadAttention(10, 3), /MultiHeadAttention: dModel \(10\) must be divisible by the number of heads \(3\)/);
  });

  test.run();
}
