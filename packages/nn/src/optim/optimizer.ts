import { Tensor, adamSteps, contiguous, keep, noGrad, notReplayable, opError, tidy, varying, zerosLike, type AdamStepSpec } from '@sparsegrad/core';

/**
 * A parameter group (as in torch.optim): parameters that share settings different from the
 * optimizer's defaults. Transformer recipes put biases, norm weights and embeddings in a group
 * without weight decay (see decayGroups).
 */
export interface ParamGroup {
  params: Iterable<Tensor>;
  /** Overrides the optimizer's weightDecay for this group. */
  weightDecay?: number;
}

interface Group {
  params: Tensor[];
  weightDecay?: number;
}

/**
 * Base optimiser: holds parameters (a list, or parameter groups) and per-parameter state tensors
 * (kept outside tidy scopes). Updates run without gradient recording and write into the
 * parameters in place (assign), so modules keep their parameter objects.
 */
export abstract class Optimizer {
  /** Every parameter, group after group: the order of stateDict's indices. */
  readonly params: Tensor[];
  readonly groups: readonly Readonly<Group>[];
  lr: number;
  protected stepCount = 0;
  private readonly state = new Map<Tensor, Record<string, Tensor>>();

  constructor(params: Iterable<Tensor> | readonly ParamGroup[], lr: number) {
    const op = this.constructor.name;
    const list = [...params] as (Tensor | ParamGroup)[];
    const grouped = list.length > 0 && list.every((g) => !(g instanceof Tensor) && typeof g === 'object' && g !== null && 'params' in g);
    this.groups = grouped ? (list as ParamGroup[]).map((g) => ({ params: [...g.params], weightDecay: g.weightDecay })) : [{ params: list as Tensor[] }];
    this.params = this.groups.flatMap((g) => g.params);
    if (this.params.length === 0) throw opError(op, 'received no parameters to optimise');
    const seen = new Set<Tensor>();
    this.params.forEach((p, i) => {
      if (!(p instanceof Tensor)) throw opError(op, `parameter ${i} is not a Tensor (pass tensors, or groups { params, weightDecay })`);
      if (seen.has(p)) throw opError(op, `parameter ${i} (shape [${p.shape.join(', ')}]) is listed twice; it would be updated twice per step`);
      seen.add(p);
    });
    for (const g of this.groups) {
      if (g.weightDecay !== undefined && !(g.weightDecay >= 0)) throw opError(op, `a group's weightDecay must be >= 0, got ${g.weightDecay}`);
    }
    if (!(lr > 0)) throw opError(op, `lr must be positive, got ${lr}`);
    this.lr = lr;
  }

  /** A state tensor for p (zeros like p on first use). */
  protected slot(p: Tensor, name: string): Tensor {
    let s = this.state.get(p);
    if (!s) this.state.set(p, (s = {}));
    return (s[name] ??= keep(noGrad(() => zerosLike(p))));
  }

  /** Applies one update from the current .grad of every parameter (those without a gradient are skipped). */
  step(): void {
    if (!(this.lr >= 0) || !Number.isFinite(this.lr)) throw opError(`${this.constructor.name}.step`, `lr must be a finite non-negative number, got ${this.lr}`);
    // A disposed parameter was replaced behind the optimizer's back (e.g. a state load that changed
    // its shape): skipping it would stop training it without a word.
    const gone = this.params.findIndex((p) => p.isDisposed);
    if (gone >= 0) {
      const p = this.params[gone];
      throw opError(
        `${this.constructor.name}.step`,
        `parameter ${gone} (shape [${p.shape.join(', ')}]) was disposed; the module replaced it after this optimizer was built (build the optimizer after loading state that changes parameter shapes)`,
      );
    }
    // In a captured step the update is a span (capture.ts): before every replay the step count
    // advances and the updates are queued again, with this step's learning rate and corrections.
    const again: (() => void)[] = [];
    let replayable = true;
    varying(
      () => {
        this.stepCount++;
        noGrad(() => {
          for (const g of this.groups) {
            const live = g.params.filter((p) => p.grad);
            if (!live.length) continue;
            const f = this.updateAll(live, g.weightDecay ?? this.weightDecay);
            if (f) again.push(f);
            else replayable = false;
          }
        });
      },
      () => {
        this.stepCount++;
        for (const f of again) f();
      },
    );
    if (!replayable) notReplayable(`${this.constructor.name}.step updates with tensor ops a replay could not repeat`);
  }

  /** The weight decay of parameters outside groups that set their own. */
  abstract readonly weightDecay: number;

  /**
   * Updates every parameter of the list from its .grad (a fused optimizer takes the list at once);
   * returns a function that queues the same update again with the optimizer's current values (a
   * captured step's replays), or null where it cannot.
   */
  protected abstract updateAll(params: readonly Tensor[], weightDecay: number): (() => void) | null;

  /**
   * State tensors keyed "<parameter index>.<slot>" (parameters in constructor order) and the
   * step count, for checkpoints.
   */
  stateDict(): { tensors: Record<string, Tensor>; step: number } {
    const tensors: Record<string, Tensor> = {};
    this.params.forEach((p, i) => {
      for (const [slot, t] of Object.entries(this.state.get(p) ?? {})) tensors[`${i}.${slot}`] = t;
    });
    return { tensors, step: this.stepCount };
  }

  /** Restores what stateDict() returned (shapes must match the parameters). */
  loadStateDict(state: { tensors: Record<string, Tensor>; step: number }): void {
    const op = `${this.constructor.name}.loadStateDict`;
    if (!Number.isInteger(state.step) || state.step < 0) throw opError(op, `step must be a non-negative integer, got ${state.step}`);
    for (const [key, t] of Object.entries(state.tensors)) {
      const [index, slot] = key.split('.');
      const p = this.params[Number(index)];
      if (!p || !slot) throw opError(op, `state entry '${key}' does not name a parameter slot (there are ${this.params.length} parameters)`);
      if (t.shape.join() !== p.shape.join())
        throw opError(op, `state '${key}' has shape [${t.shape.join(', ')}], parameter ${index} has [${p.shape.join(', ')}]`);
      // A copy the slot owns alone (see Module.loadOwnState): shared buffers make steps out of place.
      const copy = noGrad(() => contiguous(t));
      this.slot(p, slot).assign(copy);
      copy.dispose();
    }
    this.stepCount = state.step;
  }

  /** Clears every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.params) p.grad = null;
  }

  dispose(): void {
    for (const s of this.state.values()) for (const t of Object.values(s)) t.dispose();
    this.state.clear();
  }
}

export class SGD extends Optimizer {
  readonly momentum: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  constructor(params: Iterable<Tensor> | readonly ParamGroup[], opts: { lr: number; momentum?: number; weightDecay?: number; nesterov?: boolean }) {
    super(params, opts.lr);
    this.momentum = opts.momentum ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
    this.nesterov = opts.nesterov ?? false;
    if (!(this.momentum >= 0 && this.momentum < 1)) throw opError('SGD', `momentum must be in [0, 1), got ${this.momentum}`);
    if (!(this.weightDecay >= 0)) throw opError('SGD', `weightDecay must be >= 0, got ${this.weightDecay}`);
  }
  protected updateAll(params: readonly Tensor[], weightDecay: number): null {
    for (const p of params) tidy(() => this.update(p, p.grad!, weightDecay));
    return null;
  }
  private update(p: Tensor, g: Tensor, weightDecay: number): void {
    let d = weightDecay ? g.add(p.mul(weightDecay)) : g;
    if (this.momentum) {
      const buf = this.slot(p, 'momentum');
      buf.assign(this.stepCount === 1 ? d : buf.mul(this.momentum).add(d));
      d = this.nesterov ? d.add(buf.mul(this.momentum)) : buf;
    }
    p.assign(p.sub(d.mul(this.lr)));
  }
}

export interface AdamOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** Adam; weightDecay is the classic L2 term added to the gradient. */
export class Adam extends Optimizer {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  protected readonly decoupled: boolean = false;
  constructor(params: Iterable<Tensor> | readonly ParamGroup[], opts: AdamOptions) {
    super(params, opts.lr);
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    for (const [k, v] of [
      ['beta1', this.beta1],
      ['beta2', this.beta2],
    ] as const) {
      if (!(v >= 0 && v < 1)) throw opError(this.constructor.name, `${k} must be in [0, 1), got ${v}`);
    }
    if (!(this.eps > 0)) throw opError(this.constructor.name, `eps must be positive, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw opError(this.constructor.name, `weightDecay must be >= 0, got ${this.weightDecay}`);
  }
  /** Every parameter in one fused update (the formula is in core's Backend.adamStep). */
  protected updateAll(params: readonly Tensor[], weightDecay: number): (() => void) | null {
    const slots = params.map((p) => ({ p, g: p.grad!, m: this.slot(p, 'expAvg'), v: this.slot(p, 'expAvgSq') }));
    const again = tidy(() => adamSteps(slots, this.spec(weightDecay)));
    return again && (() => again(this.spec(weightDecay)));
  }
  private spec(weightDecay: number): AdamStepSpec {
    return {
      lr: this.lr,
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      weightDecay,
      decoupled: this.decoupled,
      biasCorrection1: 1 - this.beta1 ** this.stepCount,
      biasCorrection2: 1 - this.beta2 ** this.stepCount,
    };
  }
}

/** Adam with decoupled weight decay (Loshchilov & Hutter): p -= lr * wd * p before the Adam step. */
export class AdamW extends Adam {
  protected override readonly decoupled = true;
  constructor(params: Iterable<Tensor> | readonly ParamGroup[], opts: AdamOptions) {
    super(params, { weightDecay: 0.01, ...opts });
  }
}
