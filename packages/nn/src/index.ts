/** @sparsegrad/nn: modules, layers, models, optimisers, checkpoints and the model patchers. */
export { Module, type StateDict, type LoadResult } from './module.ts';
export { Linear, BlockSparseLinear, PseudoBlockSparseLinear, type BlockSparseOptions } from './layers/linear.ts';
export { Embedding, LayerNorm, Dropout, GELU, ReLU, Sequential, ModuleList, type Callable } from './layers/basic.ts';
export { MultiHeadAttention, MLP, TransformerBlock, type LinearLike, type TransformerBlockOptions } from './layers/attention.ts';
export { GPT, type GPTConfig } from './models/gpt.ts';
export { Bert, BertLayer, BertEncoder, BertEmbeddings, type BertConfig } from './models/bert.ts';
export { Optimizer, SGD, Adam, AdamW, type AdamOptions } from './optim/optimizer.ts';
export { clipGradNorm, warmupCosine, type WarmupCosineOptions } from './optim/utils.ts';
export { encodeSafetensors, decodeSafetensors, type DecodedSafetensors } from './serialize/safetensors.ts';
export { save, load, writeFileAtomic } from './serialize/checkpoint.ts';
export { ModelPatcher, BlockSparseModelPatcher, type ModuleFactory, type PatchReport, type PatchRecord, type BlockSparsePatternParams } from './patcher.ts';
