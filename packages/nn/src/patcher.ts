import { BLOCK_SIZES, opError } from '@sparsegrad/core';
import { Module } from './module.ts';
import { BlockSparseLinear, Linear, PseudoBlockSparseLinear } from './layers/linear.ts';

export type ModuleFactory = (module: Module, path: string) => Module | Promise<Module>;

interface Pattern<P> {
  source: string;
  regex: RegExp;
  params: P;
  matches: number;
}

function compile(op: string, pattern: RegExp | string): { regex: RegExp; source: string } {
  const source = pattern instanceof RegExp ? pattern.source : pattern;
  if (typeof source !== 'string') throw opError(op, `pattern must be a RegExp or a string, got ${typeof pattern}`);
  try {
    // Full-path match, as in pytorch_block_sparse: 'layers.1.mlp' does not match 'layers.1.mlp.fc1'.
    return { regex: new RegExp(`^(?:${source})$`, pattern instanceof RegExp ? pattern.flags.replace(/[gy]/g, '') : ''), source };
  } catch (e) {
    throw opError(op, `invalid regular expression /${source}/: ${(e as Error).message}`);
  }
}

export interface PatchRecord<P> {
  path: string;
  pattern: string;
  /** describe() of the module before and after. */
  from: string;
  to: string;
  params: P;
  /** Feature sizes when the replaced module has them (Linear and its sparse replacements). */
  inFeatures?: number;
  outFeatures?: number;
  /** The density actually built (a whole number of blocks, at least one), when the replacement has one. */
  density?: number;
  parametersBefore: number;
  parametersAfter: number;
}

export interface PatchReport<P> {
  patched: PatchRecord<P>[];
  /** Patterns that matched no module. */
  unmatched: string[];
  parametersBefore: number;
  parametersAfter: number;
}

/**
 * Replaces modules whose dotted path fully matches a pattern; the first matching pattern wins.
 * Subclasses decide what a match becomes through `replace`.
 */
export class ModelPatcher<P = ModuleFactory> {
  protected readonly patterns: Pattern<P>[] = [];

  addPattern(pattern: RegExp | string, params: P): this {
    const { regex, source } = compile('addPattern', pattern);
    this.patterns.push({ source, regex, params, matches: 0 });
    return this;
  }

  /** Throws if `module` at `path` cannot become what `params` asks for; runs for every match before anything is replaced. */
  protected checkMatch(_module: Module, _path: string, _params: P): void {}

  protected replace(module: Module, path: string, params: P): Module | Promise<Module> {
    if (typeof params !== 'function') throw opError('patchModel', `pattern for '${path}' has no factory function`);
    return (params as unknown as ModuleFactory)(module, path);
  }

  /**
   * Checks every match of the patterns in `model` without changing it (what patchModel checks
   * before it builds anything); returns the patterns that matched nothing.
   */
  checkModel(model: Module): string[] {
    if (!(model instanceof Module)) throw opError('checkModel', `expected a Module, got ${typeof model}`);
    this.matchAndCheck(model);
    return this.patterns.filter((p) => p.matches === 0).map((p) => p.source);
  }

  /** Each module whose path a pattern matches (first pattern wins; a replaced module's children are not visited), checked. */
  private matchAndCheck(model: Module): { path: string; module: Module; pattern: Pattern<P> }[] {
    for (const p of this.patterns) p.matches = 0;
    const matches: { path: string; module: Module; pattern: Pattern<P> }[] = [];
    for (const [path, module] of model.namedModules()) {
      if (path === '' || matches.some((m) => path.startsWith(`${m.path}.`))) continue;
      const pattern = this.patterns.find((p) => p.regex.test(path));
      if (!pattern) continue;
      pattern.matches++;
      this.checkMatch(module, path, pattern.params);
      matches.push({ path, module, pattern });
    }
    return matches;
  }

  /**
   * Patches `model` in place and reports every replacement. Warns when a pattern matched nothing.
   * All or nothing: every match is checked and every replacement built before the first one is
   * swapped in, so an error leaves the model as it was. A module inside a replaced one is not
   * visited (it goes with its parent).
   */
  async patchModel(model: Module, opts: { warn?: (message: string) => void } = {}): Promise<PatchReport<P>> {
    if (!(model instanceof Module)) throw opError('patchModel', `expected a Module, got ${typeof model}`);
    const warn = opts.warn ?? ((m: string) => console.warn(m));
    const before = model.parameterCount();
    const matches = this.matchAndCheck(model);
    const replacements: Module[] = [];
    try {
      for (const { path, module, pattern } of matches) replacements.push(await this.replace(module, path, pattern.params));
    } catch (e) {
      matches.forEach(({ module }, i) => replacements[i] && replacements[i] !== module && replacements[i].dispose());
      throw e;
    }
    // A replaced module's parameter that another module shares (a tied weight) stays with that
    // module; the replacement has weights of its own, so the tie ends: say so.
    const tied = model.tiedNames();
    for (const { path } of matches) {
      for (const names of tied) {
        const own = names.filter((n) => n.startsWith(`${path}.`));
        const others = names.filter((n) => !n.startsWith(`${path}.`));
        if (own.length && others.length)
          warn(`patchModel: '${own[0]}' was tied to '${others[0]}'; the replacement of '${path}' has its own weights, so they are no longer tied`);
      }
    }
    const patched = matches.map(({ path, module, pattern }, i): PatchRecord<P> => {
      const replacement = replacements[i];
      model.setModule(path, replacement);
      const sizes = module as Partial<Record<'inFeatures' | 'outFeatures', number>>;
      const built = replacement as Partial<Record<'density', number>>;
      const record: PatchRecord<P> = {
        path,
        pattern: pattern.source,
        from: module.describe(),
        to: replacement.describe(),
        params: pattern.params,
        inFeatures: sizes.inFeatures,
        outFeatures: sizes.outFeatures,
        density: built.density,
        parametersBefore: module.parameterCount(),
        parametersAfter: replacement.parameterCount(),
      };
      return record;
    });
    // Free what the replaced modules held, except tensors the model still uses (tied weights).
    const alive = new Set([...model.parameters(), ...[...model.namedBuffers()].map(([, t]) => t)]);
    matches.forEach(({ module }, i) => {
      if (replacements[i] === module) return;
      for (const t of [...module.parameters(), ...[...module.namedBuffers()].map(([, b]) => b)]) if (!alive.has(t)) t.dispose();
    });
    const unmatched = this.patterns.filter((p) => p.matches === 0).map((p) => p.source);
    for (const u of unmatched) warn(`patchModel: pattern /${u}/ matched no module`);
    return { patched, unmatched, parametersBefore: before, parametersAfter: model.parameterCount() };
  }
}

export interface BlockSparsePatternParams {
  density: number;
  blockSize?: number;
  /** Use the masked-dense PseudoBlockSparseLinear instead (for debugging). */
  pseudo?: boolean;
}

/**
 * pytorch_block_sparse's BlockSparseModelPatcher: every matching Linear becomes a
 * BlockSparseLinear that keeps the largest blocks of its weight.
 */
export class BlockSparseModelPatcher extends ModelPatcher<BlockSparsePatternParams> {
  override addPattern(pattern: RegExp | string, params: BlockSparsePatternParams): this {
    const d = params?.density;
    if (typeof d !== 'number' || !(d > 0 && d <= 1)) throw opError('addPattern', `density must be in (0, 1], got ${String(d)}`);
    const bs = params.blockSize ?? 32;
    if (!(BLOCK_SIZES as readonly number[]).includes(bs)) throw opError('addPattern', `blockSize must be one of ${BLOCK_SIZES.join(', ')}, got ${bs}`);
    return super.addPattern(pattern, params);
  }

  protected override checkMatch(module: Module, path: string, params: BlockSparsePatternParams): void {
    if (!(module instanceof Linear)) {
      throw opError('patchModel', `'${path}' matches a pattern but is a ${module.constructor.name}, not a Linear`);
    }
    const bs = params.blockSize ?? 32;
    if (module.inFeatures % bs || module.outFeatures % bs) {
      throw opError('patchModel', `'${path}' is Linear(${module.inFeatures} -> ${module.outFeatures}); both sizes must be multiples of the block size ${bs}`);
    }
  }

  protected override replace(module: Module, path: string, params: BlockSparsePatternParams): Promise<Module> {
    this.checkMatch(module, path, params);
    const linear = module as Linear;
    const opts = { density: params.density, blockSize: params.blockSize ?? 32 };
    return params.pseudo ? PseudoBlockSparseLinear.fromLinear(linear, opts) : BlockSparseLinear.fromLinear(linear, opts);
  }

  /** Paths of every Linear that a pattern could target, with its sizes. */
  static patchableLayers(model: Module): { path: string; inFeatures: number; outFeatures: number }[] {
    return [...model.namedModules()]
      .filter((e): e is [string, Linear] => e[1] instanceof Linear)
      .map(([path, m]) => ({ path, inFeatures: m.inFeatures, outFeatures: m.outFeatures }));
  }

  patchableLayers(model: Module) {
    return BlockSparseModelPatcher.patchableLayers(model);
  }
}
