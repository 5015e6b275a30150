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
  try {
    const report = await patcherFor(patches).patchModel(model, { warn: () => {} });
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

function patcherFor(patches: PatchSpec[]): BlockSparseModelPatcher {
  const patcher = new BlockSparseModelPatcher();
  for (const p of patches) patcher.addPattern(p.pattern, { density: p.density, blockSize: p.blockSize });
  return patcher;
}

/**
 * Checks patch patterns against a built model without patching it (the patcher's own checks: a
 * match that is not a Linear, sizes the block size does not divide, a pattern that matches
 * nothing unless allowed). compare checks every variant before it trains any.
 */
export function checkPatches(model: GPT, patches: PatchSpec[], opts: { allowUnmatched?: boolean } = {}): void {
  let unmatchedPatterns: string[];
  try {
    unmatchedPatterns = patcherFor(patches).checkModel(model);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  if (unmatchedPatterns.length && !opts.allowUnmatched) throw unmatched(model, unmatchedPatterns[0]);
}
