import { opError, releasing, scaledDotProductAttention, type Tensor } from '@sparsegrad/core';
import { Module } from '../module.ts';
import { Dropout, GELU, LayerNorm, type Callable } from './basic.ts';
import { Linear } from './linear.ts';

/** A Linear or anything that replaced it (BlockSparseLinear, PseudoBlockSparseLinear). */
export type LinearLike = Module & Callable;

/** Large negative additive mask value: exp() of it underflows to 0, and it stays finite on every backend. */
const MASKED = -1e9;

/** Scaled dot-product attention over `heads` heads with query/key/value/output projections. */
export class MultiHeadAttention extends Module {
  query: LinearLike;
  key: LinearLike;
  value: LinearLike;
  output: LinearLike;
  attnDropout: Dropout;
  readonly headDim: number;
  readonly causal: boolean;

  constructor(
    readonly dModel: number,
    readonly heads: number,
    opts: { causal?: boolean; dropout?: number; bias?: boolean } = {},
  ) {
    super();
    if (!Number.isInteger(heads) || heads <= 0 || dModel % heads !== 0) {
      throw opError('MultiHeadAttention', `dModel (${dModel}) must be divisible by the number of heads (${heads})`);
    }
    this.headDim = dModel / heads;
    this.causal = opts.causal ?? false;
    const bias = opts.bias ?? true;
    this.query = this.registerModule('query', new Linear(dModel, dModel, { bias }));
    this.key = this.registerModule('key', new Linear(dModel, dModel, { bias }));
    this.value = this.registerModule('value', new Linear(dModel, dModel, { bias }));
    this.output = this.registerModule('output', new Linear(dModel, dModel, { bias }));
    this.attnDropout = this.registerModule('attnDropout', new Dropout(opts.dropout ?? 0));
  }

  /**
   * x [B, T, D]; attentionMask [B, T] with 1 for tokens to attend to and 0 for padding. The
   * intermediates are released (freed as soon as backward no longer needs them, see releasing()).
   */
  forward(x: Tensor, attentionMask?: Tensor): Tensor {
    if (x.rank !== 3 || x.shape[2] !== this.dModel) {
      throw opError('MultiHeadAttention', `expected input [batch, seq, ${this.dModel}], got [${x.shape.join(', ')}]`);
    }
    return releasing(() => this.attend(x, attentionMask));
  }

  private attend(x: Tensor, attentionMask?: Tensor): Tensor {
    const [b, t] = x.shape;
    const split = (y: Tensor) => y.reshape(b, t, this.heads, this.headDim).permute(0, 2, 1, 3); // [B, H, T, hd]
    const q = split(this.query.forward(x));
    const k = split(this.key.forward(x));
    const v = split(this.value.forward(x));
    let mask: Tensor | null = null;
    if (attentionMask) {
      if (attentionMask.shape.join() !== `${b},${t}`) {
        throw opError('MultiHeadAttention', `attentionMask must have shape [${b}, ${t}], got [${attentionMask.shape.join(', ')}]`);
      }
      mask = attentionMask.sub(1).mul(-MASKED).reshape(b, 1, 1, t);
    }
    // The scaled scores, the mask and the causal cut live inside the op: only the weights
    // ([B, H, T, T]) are kept for backward.
    const dropout = this.attnDropout.training ? this.attnDropout.p : 0;
    const attended = scaledDotProductAttention(q, k, v, { scale: 1 / Math.sqrt(this.headDim), causal: this.causal, mask, dropout });
    const context = attended.permute(0, 2, 1, 3).reshape(b, t, this.dModel);
    return this.output.forward(context);
  }

  override describe(): string {
    return `MultiHeadAttention(${this.dModel}, heads=${this.heads}${this.causal ? ', causal' : ''})`;
  }
}

/** The position-wise feed-forward network: fc1 -> GELU -> fc2. */
export class MLP extends Module {
  fc1: LinearLike;
  act: GELU;
  fc2: LinearLike;
  constructor(dModel: number, hidden: number, approximate: 'none' | 'tanh' = 'tanh', opts: { bias?: boolean } = {}) {
    super();
    this.fc1 = this.registerModule('fc1', new Linear(dModel, hidden, opts));
    this.act = this.registerModule('act', new GELU(approximate));
    this.fc2 = this.registerModule('fc2', new Linear(hidden, dModel, opts));
  }
  forward(x: Tensor): Tensor {
    return releasing(() => this.fc2.forward(this.act.forward(this.fc1.forward(x))));
  }
}

export interface TransformerBlockOptions {
  causal?: boolean;
  dropout?: number;
  /** Hidden size of the MLP as a multiple of dModel (default 4). */
  mlpRatio?: number;
  /** Biases in the linear layers and layer norms (default true; nanoGPT's bias=False turns them off). */
  bias?: boolean;
  /** The MLP's GELU: 'tanh' (GPT-2's approximation, the default) or 'none' (exact, erf). */
  gelu?: 'tanh' | 'none';
}

/** A pre-LN Transformer block: x + attn(ln1(x)), then + mlp(ln2(x)). */
export class TransformerBlock extends Module {
  ln1: LayerNorm;
  attention: MultiHeadAttention;
  ln2: LayerNorm;
  mlp: MLP;
  dropout: Dropout;
  constructor(
    readonly dModel: number,
    heads: number,
    opts: TransformerBlockOptions = {},
  ) {
    super();
    const bias = opts.bias ?? true;
    this.ln1 = this.registerModule('ln1', new LayerNorm(dModel, 1e-5, { bias }));
    this.attention = this.registerModule('attention', new MultiHeadAttention(dModel, heads, { causal: opts.causal, dropout: opts.dropout, bias }));
    this.ln2 = this.registerModule('ln2', new LayerNorm(dModel, 1e-5, { bias }));
    this.mlp = this.registerModule('mlp', new MLP(dModel, Math.round(dModel * (opts.mlpRatio ?? 4)), opts.gelu ?? 'tanh', { bias }));
    this.dropout = this.registerModule('dropout', new Dropout(opts.dropout ?? 0));
  }
  /**
   * The intermediates are released (see releasing()): what no gradient rule reads (the branch
   * outputs once added, without dropout) is freed in the forward pass, the rest as backward passes
   * it. A module put in place of a submodule must therefore not keep its output or intermediates
   * for later use.
   */
  forward(x: Tensor, attentionMask?: Tensor): Tensor {
    return releasing(() => {
      const h = x.add(this.dropout.forward(this.attention.forward(this.ln1.forward(x), attentionMask)));
      return h.add(this.dropout.forward(this.mlp.forward(this.ln2.forward(h))));
    });
  }
}
