/**
 * What --resume accepts on the command line. A resumed run is the checkpoint's run: flags that
 * would make it another run (model sizes, data, tokenizer, patterns, batch, optimizer settings,
 * seed) must be left out or repeat the checkpoint's value; the flags below may change, and the
 * new values are stored in the checkpoint from then on.
 */
import { modelConfig, patchSpecs, trainingSpec, type Values } from './args.ts';
import type { RunConfig } from './checkpoint.ts';
import { CliError } from './errors.ts';

/** Flags a resumed run may change (docs/cli.md lists them). */
export const RESUMABLE_FLAGS = [
  'steps',
  'eval-every',
  'checkpoint-every',
  'stop-after',
  'backend',
  'precision',
  'capture',
  'out',
  'resume',
  'allow-unmatched',
  'help',
];

/** Throws if a flag given with --resume contradicts the checkpoint's configuration. */
export function checkResumeFlags(values: Values & { given: Set<string> }, config: RunConfig): void {
  const given = [...values.given].filter((f) => !RESUMABLE_FLAGS.includes(f));
  if (given.length === 0) return;
  const model = modelConfig(values, config.model.vocabSize);
  const training = trainingSpec(values);
  const stored: Record<string, [unknown, unknown]> = {
    data: [values.data ?? 'default', config.data],
    tokenizer: [values.tokenizer, config.tokenizer.type],
    'max-chars': [Number(values['max-chars']), config.maxChars],
    layers: [model.layers, config.model.layers],
    'd-model': [model.dModel, config.model.dModel],
    heads: [model.heads, config.model.heads],
    seq: [model.seqLen, config.model.seqLen],
    dropout: [model.dropout ?? 0, config.model.dropout ?? 0],
    'no-bias': [!model.bias, config.model.bias === false],
    gelu: [model.gelu ?? 'tanh', config.model.gelu ?? 'tanh'],
    'tie-embeddings': [!!model.tieEmbeddings, !!config.model.tieEmbeddings],
    'init-std': [model.initStd, config.model.initStd],
    beta2: [training.beta2, config.training.beta2 ?? 0.999],
    'min-lr': [training.minLr, config.training.minLr],
    'grad-accum': [training.gradAccum, config.training.gradAccum ?? 1],
    'val-fraction': [training.valFraction, config.training.valFraction ?? 0.05],
    'eval-mode': [training.evalMode, config.training.evalMode ?? 'fixed'],
    'decay-params': [training.decayParams, config.training.decayParams ?? 'linear'],
    batch: [training.batch, config.training.batch],
    lr: [training.lr, config.training.lr],
    warmup: [training.warmup, config.training.warmup],
    'weight-decay': [training.weightDecay, config.training.weightDecay],
    clip: [training.clip, config.training.clip],
    seed: [training.seed, config.training.seed],
    'eval-batches': [training.evalBatches, config.training.evalBatches],
  };
  for (const flag of given) {
    if (flag === 'sparsify' || flag === 'density' || flag === 'block-size') {
      const patches = patchSpecs(values);
      if (JSON.stringify(patches) !== JSON.stringify(config.patches)) {
        throw new CliError(
          `--${flag} contradicts the checkpoint, whose patterns are ${describePatches(config)}; leave the patch flags out with --resume (flags that may change: ${changeable()})`,
        );
      }
      continue;
    }
    const pair = stored[flag];
    if (!pair) throw new CliError(`--${flag} cannot be changed on --resume (flags that may change: ${changeable()})`);
    if (pair[0] !== pair[1]) {
      throw new CliError(
        `--${flag} ${String(pair[0])} contradicts the checkpoint, which was trained with ${String(pair[1])}; leave it out with --resume (flags that may change: ${changeable()})`,
      );
    }
  }
}

function describePatches(config: RunConfig): string {
  return config.patches.length
    ? config.patches.map((p) => `/${p.pattern}/ at density ${p.density} with ${p.blockSize}x${p.blockSize} blocks`).join(', ')
    : 'none (a dense model)';
}

function changeable(): string {
  return RESUMABLE_FLAGS.filter((f) => !['resume', 'help', 'out'].includes(f))
    .map((f) => `--${f}`)
    .join(', ');
}
