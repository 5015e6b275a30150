import { dropout, layerNorm, ones, opError, randn, zeros, type Tensor } from '@sparsegrad/core';
import { Module } from '../module.ts';

/** A lookup table [numEmbeddings, dim] indexed by int32 ids. */
export class Embedding extends Module {
  weight: Tensor;
  constructor(
    readonly numEmbeddings: number,
    readonly dim: number,
    opts: { std?: number } = {},
  ) {
    super();
    if (!Number.isInteger(numEmbeddings) || numEmbeddings <= 0 || !Number.isInteger(dim) || dim <= 0) {
      throw opError('Embedding', `numEmbeddings and dim must be positive integers, got ${numEmbeddings} and ${dim}`);
    }
    this.weight = this.registerParameter('weight', randn([numEmbeddings, dim], { std: opts.std ?? 1 }));
  }
  /** ids [...] int32 -> [..., dim] */
  forward(ids: Tensor): Tensor {
    if (ids.dtype !== 'int32') throw opError('Embedding', `expected int32 ids, got ${ids.dtype}`);
    return this.weight.indexSelect(0, ids.reshape(-1)).reshape([...ids.shape, this.dim]);
  }
  override describe(): string {
    return `Embedding(${this.numEmbeddings}, ${this.dim})`;
  }
}

export class LayerNorm extends Module {
  weight: Tensor;
  bias: Tensor | null;
  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    opts: { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', ones([dim]));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', zeros([dim]));
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.dim, this.weight, this.bias, this.eps);
  }
  override describe(): string {
    return `LayerNorm(${this.dim}${this.bias ? '' : ', no bias'})`;
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0.1) {
    super();
    if (!(p >= 0 && p < 1)) throw opError('Dropout', `p must be in [0, 1), got ${p}`);
  }
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }
  override describe(): string {
    return `Dropout(p=${this.p})`;
  }
}

export class GELU extends Module {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.gelu(this.approximate);
  }
  override describe(): string {
    return `GELU(${this.approximate})`;
  }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}

/** Anything with a one-tensor forward. */
export interface Callable {
  forward(x: Tensor): Tensor;
}

/** Modules applied in order; children are named 0, 1, 2, ... */
export class Sequential extends Module {
  private readonly items: (Module & Callable)[];
  constructor(...modules: (Module & Callable)[]) {
    super();
    this.items = modules;
    modules.forEach((m, i) => this.registerModule(String(i), m));
  }
  forward(x: Tensor): Tensor {
    return this.items.reduce((h, m) => m.forward(h), x);
  }
  protected override onChildReplaced(name: string, module: Module): void {
    this.items[Number(name)] = module as Module & Callable;
  }
}

/** A list of modules addressed by index (layers.0, layers.1, ...). */
export class ModuleList<M extends Module = Module> extends Module {
  private readonly items: M[] = [];
  constructor(modules: M[] = []) {
    super();
    for (const m of modules) this.push(m);
  }
  push(m: M): void {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
  }
  get length(): number {
    return this.items.length;
  }
  at(i: number): M {
    const m = this.items[i];
    if (!m) throw opError('ModuleList', `index ${i} is out of range for ${this.items.length} modules`);
    return m;
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
  protected override onChildReplaced(name: string, module: Module): void {
    this.items[Number(name)] = module as M;
  }
}
