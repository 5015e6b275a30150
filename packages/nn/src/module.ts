import { cast, contiguous, isFloating, noGrad, opError, tensor, type Tensor } from '@sparsegrad/core';

export type StateDict = Record<string, Tensor>;

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

const NAME = /^[A-Za-z0-9_]+$/;

/**
 * Base class of every layer and model. Children and tensors are registered explicitly under a
 * name (the same name as the field that holds them, so that setModule can swap both); dotted
 * paths like `encoder.layers.0.mlp.fc1` address any descendant.
 */
export abstract class Module {
  private readonly _modules = new Map<string, Module>();
  private readonly _parameters = new Map<string, Tensor>();
  private readonly _buffers = new Map<string, { tensor: Tensor; persistent: boolean }>();
  training = true;

  protected registerModule<M extends Module>(name: string, module: M): M {
    this.checkName('registerModule', name);
    if (!(module instanceof Module)) throw opError('registerModule', `'${name}' must be a Module, got ${describe(module)}`);
    this._modules.set(name, module);
    return module;
  }

  protected registerParameter(name: string, t: Tensor): Tensor {
    this.checkName('registerParameter', name);
    t.requiresGrad = true;
    this._parameters.set(name, t);
    return t;
  }

  /** State that is not trained; persistent buffers are part of stateDict. */
  protected registerBuffer(name: string, t: Tensor, opts: { persistent?: boolean } = {}): Tensor {
    this.checkName('registerBuffer', name);
    this._buffers.set(name, { tensor: t, persistent: opts.persistent ?? true });
    return t;
  }

  private checkName(op: string, name: string): void {
    if (!NAME.test(name)) throw opError(op, `invalid name '${name}' (expected letters, digits or underscores, no dots)`);
  }

  /** Direct children in registration order. */
  children(): [string, Module][] {
    return [...this._modules.entries()];
  }

  /** This module ('') and every descendant with its dotted path, depth first. */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, m] of this._modules) yield* m.namedModules(prefix ? `${prefix}.${name}` : name);
  }

  /** Every parameter under its first dotted name; a parameter shared by two modules (tied) appears once. */
  *namedParameters(prefix = ''): Generator<[string, Tensor]> {
    const seen = new Set<Tensor>();
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [name, p] of m._parameters) {
        if (seen.has(p)) continue;
        seen.add(p);
        yield [path ? `${path}.${name}` : name, p];
      }
    }
  }

  *namedBuffers(prefix = ''): Generator<[string, Tensor, boolean]> {
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [name, b] of m._buffers) yield [path ? `${path}.${name}` : name, b.tensor, b.persistent];
    }
  }

  /**
   * Every parameter once, in namedParameters() order (without building names: training loops call
   * this every step). A tied parameter is listed once, so an optimizer updates it once.
   */
  parameters(): Tensor[] {
    const out: Tensor[] = [];
    const seen = new Set<Tensor>();
    const walk = (m: Module) => {
      for (const p of m._parameters.values()) {
        if (!seen.has(p)) {
          seen.add(p);
          out.push(p);
        }
      }
      for (const c of m._modules.values()) walk(c);
    };
    walk(this);
    return out;
  }

  /** Number of trainable scalars (a block-sparse weight counts only its stored blocks). */
  parameterCount(): number {
    return this.parameters().reduce((n, p) => n + p.size, 0);
  }

  /** Parameters and persistent buffers under their dotted names. */
  stateDict(): StateDict {
    const out: StateDict = {};
    for (const [k, p] of this.namedParameters()) out[k] = p;
    for (const [k, b, persistent] of this.namedBuffers()) if (persistent) out[k] = b;
    return out;
  }

  /**
   * Copies tensors from `state` into this module's parameters and buffers (shapes must match).
   * strict (default) throws on missing or unexpected keys; otherwise they are reported.
   */
  async loadStateDict(state: StateDict, opts: { strict?: boolean } = {}): Promise<LoadResult> {
    const strict = opts.strict ?? true;
    const used = new Set<string>();
    const missing: string[] = [];
    // A tied parameter is stored under one of its names (stateDict lists it once): its other names
    // are not missing. Two different tensors for one tied parameter cannot both be loaded: checked
    // before anything is copied.
    const tied = this.tiedNames();
    for (const names of tied) {
      const present = names.filter((n) => n in state);
      if (present.length > 1) await checkTiedState('loadStateDict', present, state);
    }
    for (const [path, m] of this.namedModules()) await m.loadOwnState(path ? `${path}.` : '', state, used, missing);
    for (const names of tied) {
      if (!names.some((n) => used.has(n))) continue;
      for (const n of names) {
        const at = missing.indexOf(n);
        if (at >= 0) missing.splice(at, 1);
      }
    }
    const unexpected = Object.keys(state).filter((k) => !used.has(k));
    if (strict && (missing.length || unexpected.length)) {
      throw opError('loadStateDict', `state does not match the model: missing keys [${missing.join(', ')}], unexpected keys [${unexpected.join(', ')}]`);
    }
    return { missingKeys: missing, unexpectedKeys: unexpected };
  }

  /** Loads this module's own tensors (not its children's). Layers with structural state override it. */
  protected async loadOwnState(prefix: string, state: StateDict, used: Set<string>, missing: string[]): Promise<void> {
    const own: [string, Tensor][] = [
      ...this._parameters.entries(),
      ...[...this._buffers.entries()].filter(([, b]) => b.persistent).map(([n, b]) => [n, b.tensor] as [string, Tensor]),
    ];
    for (const [name, t] of own) {
      const key = prefix + name;
      const src = state[key];
      if (!src) {
        missing.push(key);
        continue;
      }
      used.add(key);
      // A floating tensor of another floating dtype is converted, as PyTorch's load_state_dict
      // copies (a bfloat16 checkpoint into float32 parameters); int32 never mixes with floats.
      const converts = src.dtype !== t.dtype && isFloating(src.dtype) && isFloating(t.dtype);
      if (src.shape.join() !== t.shape.join() || (src.dtype !== t.dtype && !converts)) {
        throw opError(
          'loadStateDict',
          `'${key}' has shape [${src.shape.join(', ')}] (${src.dtype}) in the state but [${t.shape.join(', ')}] (${t.dtype}) in the model`,
        );
      }
      if (src.backend !== t.backend) {
        const moved = await moveTo(src, t);
        t.assign(moved);
        moved.dispose();
      } else {
        // A copy the parameter owns alone (PyTorch's load_state_dict copies too): sharing the state
        // tensor's buffer would make every optimizer step out of place, and captureStep refuse it,
        // for as long as the caller keeps the state.
        const copy = noGrad(() => (converts ? cast(src, t.dtype) : contiguous(src)));
        t.assign(copy);
        copy.dispose();
      }
    }
  }

  /**
   * Makes `to` this module's parameter `name` as well, shared with its owner (tied weights, e.g. a
   * language model's output layer and its token embedding): one tensor, trained once, stored once.
   */
  tieParameter(name: string, to: Tensor): void {
    const old = this._parameters.get(name);
    if (!old) throw opError('tieParameter', `${this.constructor.name} has no parameter '${name}'`);
    if (old.shape.join() !== to.shape.join())
      throw opError('tieParameter', `'${name}' has shape [${old.shape.join(', ')}], the tensor to tie [${to.shape.join(', ')}]`);
    this.replaceParameter(name, to);
  }

  /** The dotted names of each parameter that more than one module holds. */
  tiedNames(): string[][] {
    const names = new Map<Tensor, string[]>();
    for (const [path, m] of this.namedModules()) {
      for (const [name, p] of m._parameters) {
        const key = path ? `${path}.${name}` : name;
        names.set(p, [...(names.get(p) ?? []), key]);
      }
    }
    return [...names.values()].filter((n) => n.length > 1);
  }

  /** Replaces this module's own parameter (used by layers whose parameter shape depends on loaded state). */
  protected replaceParameter(name: string, t: Tensor): void {
    const old = this._parameters.get(name);
    if (!old) throw opError('replaceParameter', `no parameter '${name}'`);
    this.registerParameter(name, t);
    (this as unknown as Record<string, unknown>)[name] = t;
    if (old !== t) old.dispose();
  }

  protected replaceBuffer(name: string, t: Tensor): void {
    const old = this._buffers.get(name);
    if (!old) throw opError('replaceBuffer', `no buffer '${name}'`);
    this._buffers.set(name, { tensor: t, persistent: old.persistent });
    (this as unknown as Record<string, unknown>)[name] = t;
    if (old.tensor !== t) old.tensor.dispose();
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** The descendant at a dotted path ('' is this module). */
  getModule(path: string): Module {
    if (path === '') return this;
    let m: Module = this;
    for (const part of path.split('.')) {
      const next = m._modules.get(part);
      if (!next) throw opError('getModule', `no module at '${path}' ('${part}' is not a child of a ${m.constructor.name})`);
      m = next;
    }
    return m;
  }

  /** Replaces the descendant at a dotted path, updating the field of the same name on its parent. */
  setModule(path: string, module: Module): void {
    if (!(module instanceof Module)) throw opError('setModule', `expected a Module for '${path}', got ${describe(module)}`);
    const cut = path.lastIndexOf('.');
    const parent = this.getModule(cut < 0 ? '' : path.slice(0, cut));
    const name = path.slice(cut + 1);
    if (!parent._modules.has(name)) throw opError('setModule', `no module at '${path}' to replace`);
    parent._modules.set(name, module);
    const fields = parent as unknown as Record<string, unknown>;
    if (fields[name] instanceof Module) fields[name] = module;
    parent.onChildReplaced(name, module);
  }

  /** Hook for containers that keep children in other structures too (ModuleList, Sequential). */
  protected onChildReplaced(_name: string, _module: Module): void {}

  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
    for (const [, b] of this.namedBuffers()) b.dispose();
  }

  /** A one-line description for module trees (layers override to show their sizes). */
  describe(): string {
    return this.constructor.name;
  }

  /** The module tree with parameter counts, one line per module. */
  summary(): string {
    const lines: string[] = [];
    for (const [path, m] of this.namedModules()) {
      const depth = path === '' ? 0 : path.split('.').length;
      const own = [...m._parameters.values()].reduce((n, p) => n + p.size, 0);
      const total = m.parameterCount();
      lines.push(
        `${'  '.repeat(depth)}${path.split('.').pop() || '(root)'}: ${m.describe()}  params=${total.toLocaleString('en-US')}${own && own !== total ? ` (own ${own.toLocaleString('en-US')})` : ''}`,
      );
    }
    return lines.join('\n');
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

async function moveTo(src: Tensor, like: Tensor): Promise<Tensor> {
  return tensor(await src.toArray(), [...src.shape], { dtype: like.dtype, backend: like.backend });
}

/** Throws unless the state's tensors under the names of one tied parameter hold the same values. */
async function checkTiedState(op: string, names: string[], state: StateDict): Promise<void> {
  const [first, ...rest] = names;
  const ref = await state[first].toArray();
  for (const n of rest) {
    if (state[n] === state[first]) continue;
    const other = await state[n].toArray();
    if (other.some((v, i) => !Object.is(v, ref[i])))
      throw opError(op, `'${first}' and '${n}' are one tied parameter in the model but hold different values in the state`);
  }
}
