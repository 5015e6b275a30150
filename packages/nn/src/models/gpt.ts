import { arange, crossEntropy, opError, randn, releasing, zeros, type Tensor } from '@sparsegrad/core';
import { Module } from '../module.ts';
import { checkTransformerSizes } from './config.ts';
import { Dropout, Embedding, LayerNorm, ModuleList } from '../layers/basic.ts';
import { TransformerBlock } from '../layers/attention.ts';
import { Linear } from '../layers/linear.ts';

export interface GPTConfig {
  vocabSize: number;
  /** Longest sequence (number of learned positions). */
  seqLen: number;
  dModel: number;
  heads: number;
  layers: number;
  dropout?: number;
  mlpRatio?: number;
  /** Biases in every linear layer and layer norm (default true; nanoGPT's bias=False: false). */
  bias?: boolean;
  /** The MLPs' GELU: 'tanh' (default, GPT-2) or 'none' (exact). */
  gelu?: 'tanh' | 'none';
  /** The output layer's weight is the token embedding (GPT-2 and nanoGPT tie them; default false). */
  tieEmbeddings?: boolean;
  /**
   * GPT-2's initialisation: every linear weight and embedding N(0, initStd), the residual
   * projections (attention.output, mlp.fc2) N(0, initStd / sqrt(2 layers)), biases 0. Unset: linear
   * layers keep their uniform initialisation and embeddings N(0, 0.02).
   */
  initStd?: number;
}

/**
 * A decoder-only Transformer (GPT-2 layout, pre-LN). Module paths:
 * tokenEmbedding, positionEmbedding, layers.N.{ln1, attention.{query,key,value,output}, ln2, mlp.{fc1,fc2}}, norm, head.
 */
export class GPT extends Module {
  tokenEmbedding: Embedding;
  positionEmbedding: Embedding;
  drop: Dropout;
  layers: ModuleList<TransformerBlock>;
  norm: LayerNorm;
  head: Linear;

  constructor(readonly config: GPTConfig) {
    super();
    checkTransformerSizes('GPT', config);
    checkGptOptions(config);
    const { vocabSize, seqLen, dModel, heads, layers } = config;
    const bias = config.bias ?? true;
    this.tokenEmbedding = this.registerModule('tokenEmbedding', new Embedding(vocabSize, dModel, { std: 0.02 }));
    this.positionEmbedding = this.registerModule('positionEmbedding', new Embedding(seqLen, dModel, { std: 0.02 }));
    this.drop = this.registerModule('drop', new Dropout(config.dropout ?? 0));
    this.layers = this.registerModule(
      'layers',
      new ModuleList(
        Array.from(
          { length: layers },
          () => new TransformerBlock(dModel, heads, { causal: true, dropout: config.dropout, mlpRatio: config.mlpRatio, bias, gelu: config.gelu }),
        ),
      ),
    );
    this.norm = this.registerModule('norm', new LayerNorm(dModel, 1e-5, { bias }));
    this.head = this.registerModule('head', new Linear(dModel, vocabSize, { bias: false }));
    if (config.initStd !== undefined) this.initGpt2(config.initStd);
    if (config.tieEmbeddings) this.head.tieParameter('weight', this.tokenEmbedding.weight);
  }

  /** GPT-2's initialisation (see GPTConfig.initStd), drawn from the current seed in module order. */
  private initGpt2(std: number): void {
    const residual = std / Math.sqrt(2 * this.config.layers);
    // Each parameter takes over its draw's buffer alone (the draw is disposed): a buffer shared with
    // a live tensor would make every optimizer step out of place, and captureStep refuse the step.
    const set = (p: Tensor, value: Tensor) => {
      p.assign(value);
      value.dispose();
    };
    for (const [path, m] of this.namedModules()) {
      if (m instanceof Linear) {
        set(m.weight, randn(m.weight.shape, { std: /(^|\.)(attention\.output|mlp\.fc2)$/.test(path) ? residual : std }));
        if (m.bias) set(m.bias, zeros(m.bias.shape));
      } else if (m instanceof Embedding) {
        set(m.weight, randn(m.weight.shape, { std }));
      }
    }
  }

  /** ids [B, T] int32 -> logits [B, T, vocabSize] */
  forward(ids: Tensor): Tensor {
    if (ids.rank !== 2 || ids.dtype !== 'int32') throw opError('GPT', `expected int32 token ids [batch, seq], got ${ids.dtype} [${ids.shape.join(', ')}]`);
    const t = ids.shape[1];
    if (t > this.config.seqLen) throw opError('GPT', `sequence length ${t} exceeds the model's seqLen ${this.config.seqLen}`);
    // The activations are released (freed as backward passes them, see releasing()).
    return releasing(() => {
      const positions = arange(0, t, 1, { backend: ids.backend });
      let h = this.drop.forward(this.tokenEmbedding.forward(ids).add(this.positionEmbedding.forward(positions)));
      for (const layer of this.layers) h = layer.forward(h);
      return this.head.forward(this.norm.forward(h));
    });
  }

  /** Mean next-token cross entropy of ids [B, T] predicting targets [B, T]. */
  loss(ids: Tensor, targets: Tensor): Tensor {
    return crossEntropy(this.forward(ids), targets);
  }
}

function checkGptOptions(config: GPTConfig): void {
  const { gelu, initStd } = config;
  if (gelu !== undefined && gelu !== 'tanh' && gelu !== 'none') throw opError('GPT', `gelu must be 'tanh' or 'none', got '${String(gelu)}'`);
  if (initStd !== undefined && !(Number.isFinite(initStd) && initStd > 0)) throw opError('GPT', `initStd must be a positive number, got ${initStd}`);
}
