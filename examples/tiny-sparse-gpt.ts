/**
 * A two-minute tour: trains a small character-level GPT twice on the same text, once dense and
 * once with its MLP layers patched to 25% block density, and prints parameters, speed and loss.
 * (The full `sparsegrad` command with corpora, checkpoints and plots is the next milestone.)
 *
 *   npx tsx examples/tiny-sparse-gpt.ts [--steps 200] [--backend cpu|webgpu|cuda|auto]
 */
import { parseArgs } from 'node:util';
import { manualSeed, setBackend, tensor, tidy, type Tensor } from '@sparsegrad/core';
import { AdamW, BlockSparseModelPatcher, GPT, clipGradNorm } from '@sparsegrad/nn';

const TEXT = `It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.
However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well
fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters.
"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?"
Mr. Bennet replied that he had not. "But it is," returned she; "for Mrs. Long has just been here, and she told me all about it."
Mr. Bennet made no answer. "Do you not want to know who has taken it?" cried his wife impatiently.
"You want to tell me, and I have no objection to hearing it." This was invitation enough.
"Why, my dear, you must know, Mrs. Long says that Netherfield is taken by a young man of large fortune from the north of England;
that he came down on Monday in a chaise and four to see the place, and was so much delighted with it, that he agreed with Mr. Morris
immediately; that he is to take possession before Michaelmas, and some of his servants are to be in the house by the end of next week."`;

const { values } = parseArgs({ options: { steps: { type: 'string', default: '200' }, backend: { type: 'string', default: 'cpu' } } });
const backend = await setBackend(values.backend as 'cpu');
const steps = Number(values.steps);
const vocab = [...new Set(TEXT)].sort();
const ids = Int32Array.from(TEXT, (ch) => vocab.indexOf(ch));
const split = Math.floor(ids.length * 0.9);
const seq = 64;
const batch = 16;

function batchFrom(data: Int32Array, rng: () => number): [Tensor, Tensor] {
  const x = new Int32Array(batch * seq);
  const y = new Int32Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    const start = Math.floor(rng() * (data.length - seq - 1));
    x.set(data.subarray(start, start + seq), b * seq);
    y.set(data.subarray(start + 1, start + seq + 1), b * seq);
  }
  return [tensor(x, [batch, seq], { dtype: 'int32' }), tensor(y, [batch, seq], { dtype: 'int32' })];
}

async function run(label: string, sparsify: boolean) {
  manualSeed(0);
  let s = 1;
  const rng = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  const model = new GPT({ vocabSize: vocab.length, seqLen: seq, dModel: 64, heads: 4, layers: 2 });
  if (sparsify) {
    const report = await new BlockSparseModelPatcher().addPattern(String.raw`layers\.[0-9]+\.mlp\.fc[12]`, { density: 0.25, blockSize: 32 }).patchModel(model);
    for (const r of report.patched) console.log(`  patched ${r.path}: ${r.parametersBefore} -> ${r.parametersAfter} parameters`);
  }
  const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
  const t0 = performance.now();
  for (let step = 0; step < steps; step++) {
    const loss = tidy(() => {
      const [x, y] = batchFrom(ids.subarray(0, split), rng);
      const l = model.loss(x, y);
      l.backward();
      clipGradNorm(model.parameters(), 1).dispose();
      opt.step();
      opt.zeroGrad();
      return l;
    });
    if (step % 50 === 0 || step === steps - 1) console.log(`  ${label} step ${step}: loss ${(await loss.item()).toFixed(3)}`);
    loss.dispose();
  }
  const ms = (performance.now() - t0) / steps;
  model.eval();
  const evalLoss = tidy(() => {
    const [x, y] = batchFrom(ids.subarray(split - seq), rng);
    return model.loss(x, y);
  });
  return { label, params: model.parameterCount(), ms, evalLoss: await evalLoss.item() };
}

console.log(`backend: ${backend.name} (${backend.device.description}); ${ids.length} characters, vocabulary ${vocab.length}`);
const rows = [await run('dense', false), await run('sparse MLP 0.25', true)];
console.log('\nvariant          | parameters | ms/step | eval loss');
for (const r of rows) console.log(`${r.label.padEnd(16)} | ${String(r.params).padStart(10)} | ${r.ms.toFixed(1).padStart(7)} | ${r.evalLoss.toFixed(3)}`);
