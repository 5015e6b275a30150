import { arange, opError, releasing, type Tensor } from '@sparsegrad/core';
import { Module } from '../module.ts';
import { checkTransformerSizes } from './config.ts';
import { Dropout, Embedding, GELU, LayerNorm, ModuleList } from '../layers/basic.ts';
import { MultiHeadAttention, type LinearLike } from '../layers/attention.ts';
import { Linear } from '../layers/linear.ts';

export interface BertConfig {
  vocabSize: number;
  seqLen: number;
  dModel: number;
  heads: number;
  layers: number;
  /** Hidden size of the feed-forward part (default 4 * dModel). */
  intermediateSize?: number;
  dropout?: number;
}

/** One post-LN BERT encoder layer; paths attention.{query,key,value,output}, intermediate, output. */
export class BertLayer extends Module {
  attention: MultiHeadAttention;
  attentionNorm: LayerNorm;
  intermediate: LinearLike;
  act: GELU;
  output: LinearLike;
  outputNorm: LayerNorm;
  dropout: Dropout;
  constructor(dModel: number, heads: number, intermediateSize: number, dropout: number) {
    super();
    this.attention = this.registerModule('attention', new MultiHeadAttention(dModel, heads, { dropout }));
    this.attentionNorm = this.registerModule('attentionNorm', new LayerNorm(dModel, 1e-12));
    this.intermediate = this.registerModule('intermediate', new Linear(dModel, intermediateSize));
    this.act = this.registerModule('act', new GELU('none'));
    this.output = this.registerModule('output', new Linear(intermediateSize, dModel));
    this.outputNorm = this.registerModule('outputNorm', new LayerNorm(dModel, 1e-12));
    this.dropout = this.registerModule('dropout', new Dropout(dropout));
  }
  /** The intermediates are released (freed as soon as backward no longer needs them, see releasing()). */
  forward(x: Tensor, attentionMask?: Tensor): Tensor {
    return releasing(() => {
      const h = this.attentionNorm.forward(x.add(this.dropout.forward(this.attention.forward(x, attentionMask))));
      const ff = this.output.forward(this.act.forward(this.intermediate.forward(h)));
      return this.outputNorm.forward(h.add(this.dropout.forward(ff)));
    });
  }
}

export class BertEmbeddings extends Module {
  word: Embedding;
  position: Embedding;
  norm: LayerNorm;
  dropout: Dropout;
  constructor(config: BertConfig) {
    super();
    this.word = this.registerModule('word', new Embedding(config.vocabSize, config.dModel, { std: 0.02 }));
    this.position = this.registerModule('position', new Embedding(config.seqLen, config.dModel, { std: 0.02 }));
    this.norm = this.registerModule('norm', new LayerNorm(config.dModel, 1e-12));
    this.dropout = this.registerModule('dropout', new Dropout(config.dropout ?? 0));
  }
  forward(ids: Tensor): Tensor {
    const positions = arange(0, ids.shape[1], 1, { backend: ids.backend });
    return this.dropout.forward(this.norm.forward(this.word.forward(ids).add(this.position.forward(positions))));
  }
}

export class BertEncoder extends Module {
  layers: ModuleList<BertLayer>;
  constructor(config: BertConfig) {
    super();
    const inter = config.intermediateSize ?? 4 * config.dModel;
    this.layers = this.registerModule(
      'layers',
      new ModuleList(Array.from({ length: config.layers }, () => new BertLayer(config.dModel, config.heads, inter, config.dropout ?? 0))),
    );
  }
  forward(h: Tensor, attentionMask?: Tensor): Tensor {
    for (const layer of this.layers) h = layer.forward(h, attentionMask);
    return h;
  }
}

/** A BERT-like encoder: embeddings, then encoder.layers.N; returns hidden states [B, T, dModel]. */
export class Bert extends Module {
  embeddings: BertEmbeddings;
  encoder: BertEncoder;
  constructor(readonly config: BertConfig) {
    super();
    checkTransformerSizes('Bert', config);
    this.embeddings = this.registerModule('embeddings', new BertEmbeddings(config));
    this.encoder = this.registerModule('encoder', new BertEncoder(config));
  }
  /** ids [B, T] int32; attentionMask [B, T] float (1 = token, 0 = padding). */
  forward(ids: Tensor, attentionMask?: Tensor): Tensor {
    if (ids.rank !== 2 || ids.dtype !== 'int32') throw opError('Bert', `expected int32 token ids [batch, seq], got ${ids.dtype} [${ids.shape.join(', ')}]`);
    if (ids.shape[1] > this.config.seqLen) throw opError('Bert', `sequence length ${ids.shape[1]} exceeds the model's seqLen ${this.config.seqLen}`);
    // The activations are released (freed as backward passes them, see releasing()).
    return releasing(() => this.encoder.forward(this.embeddings.forward(ids), attentionMask));
  }
}
