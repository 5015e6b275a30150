// The README's example: a BlockSparseLinear drop-in, then a BERT-like encoder patched by regex.
import { manualSeed, randn, setBackend } from '@sparsegrad/core';
import { Bert, BlockSparseLinear, BlockSparseModelPatcher, Linear } from '@sparsegrad/nn';

await setBackend('auto'); // cuda, then webgpu, then cpu
manualSeed(0);

// const fc = new Linear(1024, 256);
const fc = new BlockSparseLinear(1024, 256, { density: 0.1 });
const y = fc.forward(randn([8, 1024]));
console.log(`BlockSparseLinear: output [${y.shape}], ${fc.parameterCount()} parameters instead of ${new Linear(1024, 256).parameterCount()}`);

const model = new Bert({ vocabSize: 30522, seqLen: 512, dModel: 768, heads: 12, layers: 12 });
console.log(`parameters before: ${model.parameterCount().toLocaleString('en-US')}`);
const patcher = new BlockSparseModelPatcher();
patcher.addPattern(String.raw`encoder\.layers\.[0-9]+\.intermediate`, { density: 0.5 });
patcher.addPattern(String.raw`encoder\.layers\.[0-9]+\.output`, { density: 0.5 });
patcher.addPattern(String.raw`encoder\.layers\.[0-9]+\.attention\.output`, { density: 0.5 });
const report = await patcher.patchModel(model);
console.log(`patched ${report.patched.length} layers, e.g. ${report.patched[0].path}: ${report.patched[0].from} -> ${report.patched[0].to}`);
console.log(`parameters after:  ${model.parameterCount().toLocaleString('en-US')}`);
