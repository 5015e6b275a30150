import { manualSeed } from '@sparsegrad/core';
import { BlockSparseModelPatcher, GPT, Linear, type GPTConfig, type PatchReport, type BlockSparsePatternParams } from '@sparsegrad/nn';
import { CliError } from './errors.ts';
import type { PatchSpec } from './checkpoint.ts';

export interface Trainee {
  model: GPT;
  report: PatchReport<BlockSparsePatternParams> | null;
}

/** The GPT of `config`, initialised from `seed`, with the patch patterns applied. */
export async function buildModel(config: GPTConfig, patches: PatchSpec[], seed: number, opts: { allowUnmatched?: boolean } = {}): Promise<Trainee> {
  manualSeed(seed);
  let model: GPT;
  try {
    model = new GPT(config);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  if (patches.length === 0) return { model, report: null };
  const patcher = new BlockSparseModelPatcher();
  try {
    for (const p of patches) patcher.addPattern(p.pattern, { density: p.density, blockSize: p.blockSize });
    const report = await patcher.patchModel(model, { warn: () => {} });
    if (report.unmatched.length && !opts.allowUnmatched) throw unmatched(model, report.unmatched[0]);
    return { model, report };
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError((e as Error).message);
  }
}

function unmatched(model: GPT, pattern: string): CliError {
  const paths = BlockSparseModelPatcher.patchableLayers(model)
    .slice(0, 4)
    .map((l) => l.path)
    .join(', ');
  return new CliError(`--sparsify /${pattern}/ matches no module (patchable paths look like ${paths}, ...); pass --allow-unmatched to continue anyway`);
}

/**
 * Checks patch patterns against a built model without patching it: a match that is not a Linear,
 * sizes the block size does not divide, or a pattern that matches nothing (unless allowed). compare
 * checks every variant before it trains any.
 */
export function checkPatches(model: GPT, patches: PatchSpec[], opts: { allowUnmatched?: boolean } = {}): void {
  const modules = [...model.namedModules()].filter(([path]) => path !== '');
  for (const p of patches) {
    const regex = new RegExp(`^(?:${p.pattern})$`);
    const hits = modules.filter(([path]) => regex.test(path));
    if (hits.length === 0 && !opts.allowUnmatched) throw unmatched(model, p.pattern);
    for (const [path, m] of hits) {
      if (!(m instanceof Linear)) throw new CliError(`patchModel: '${path}' matches a pattern but is a ${m.constructor.name}, not a Linear`);
      if (m.inFeatures % p.blockSize || m.outFeatures % p.blockSize) {
        throw new CliError(
          `patchModel: '${path}' is Linear(${m.inFeatures} -> ${m.outFeatures}); both sizes must be multiples of the block size ${p.blockSize}`,
        );
      }
    }
  }
}
