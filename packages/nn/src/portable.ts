/**
 * @sparsegrad/nn without Node: modules, layers, models, optimisers, the model patchers and model
 * state as safetensors bytes. Bundlers resolve the package to this file for browsers (the
 * "browser" condition of package.json); index.ts adds checkpoint files for Node.
 */
export { Module, type StateDict, type LoadResult } from './module.ts';
export { Linear, BlockSparseLinear, PseudoBlockSparseLinear, type BlockSparseOptions } from './layers/linear.ts';
export { Embedding, LayerNorm, Dropout, GELU, ReLU, Sequential, ModuleList, type Callable } from './layers/basic.ts';
export { MultiHeadAttention, MLP, TransformerBlock, type LinearLike, type TransformerBlockOptions } from './layers/attention.ts';
export { GPT, type GPTConfig } from './models/gpt.ts';
export { Bert, BertLayer, BertEncoder, BertEmbeddings, type BertConfig } from './models/bert.ts';
export { Optimizer, SGD, Adam, AdamW, type AdamOptions, type ParamGroup } from './optim/optimizer.ts';
export { clipGradNorm, decayGroups, warmupCosine, type WarmupCosineOptions } from './optim/utils.ts';
export { GradScaler, type GradScalerOptions } from './optim/grad-scaler.ts';
export { encodeSafetensors, decodeSafetensors, type DecodedSafetensors, type StoredFloat } from './serialize/safetensors.ts';
export { saveToBytes, loadFromBytes } from './serialize/state.ts';
export { ModelPatcher, BlockSparseModelPatcher, type ModuleFactory, type PatchReport, type PatchRecord, type BlockSparsePatternParams } from './patcher.ts';
