import { manualSeed } from '@sparsegrad/core';
import { BlockSparseModelPatcher, GPT, type GPTConfig, type PatchReport, type BlockSparsePatternParams } from '@sparsegrad/nn';
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
    if (report.unmatched.length && !opts.allowUnmatched) {
      const paths = BlockSparseModelPatcher.patchableLayers(model).slice(0, 4).map((l) => l.path).join(', ');
      throw new CliError(`--sparsify /${report.unmatched[0]}/ matches no module (patchable paths look like ${paths}, ...); pass --allow-unmatched to continue anyway`);
    }
    return { model, report };
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError((e as Error).message);
  }
}
