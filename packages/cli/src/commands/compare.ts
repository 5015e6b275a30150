import { join } from 'node:path';
import { TRAINING_FLAGS, blockSize, checkRegex, density, int, modelConfig, parse, trainingSpec, type Values } from '../args.ts';
import type { PatchSpec, RunConfig, TrainingSpec } from '../checkpoint.ts';
import { CliError } from '../errors.ts';
import { buildModel, checkPatches } from '../model.ts';
import { hasEntries, openRunDir } from '../rundir.ts';
import { Progress } from '../progress.ts';
import { comparisonTable, writePlots, writeReport, type VariantResult } from '../report.ts';
import { chooseBackend, prepareData } from '../setup.ts';
import { train } from '../trainer.ts';
import { interruptFlag, printModel, printPatchReport } from './train.ts';

export const MLP_PATTERN = String.raw`layers\.[0-9]+\.mlp\.fc[12]`;

export const COMPARE_HELP = `sparsegrad compare [options]
  Trains a dense GPT and sparsified variants with the same seed, data and budget, then writes
  report.md, metrics.json, loss.svg and loss.png into --out (default runs/compare-<time>).
  --densities 0.25[,0.5,...]   one variant per density
  --sparsify REGEX             layers to sparsify (default: the MLP layers, ${MLP_PATTERN})
  --block-size 32              block size of the sparse layers
  and every training option of sparsegrad train (--steps, --d-model, --backend, ...).`;

export async function compareCommand(argv: string[], log: (s: string) => void): Promise<number> {
  const values = parse('compare', argv, {
    ...TRAINING_FLAGS,
    densities: { type: 'string', default: '0.25' },
    sparsify: { type: 'string', default: MLP_PATTERN },
  });
  if (values.help) {
    log(COMPARE_HELP);
    return 0;
  }
  // Arguments are checked before a backend is chosen (see trainCommand); the model's shape here with
  // a placeholder vocabulary, the real one once the data is read.
  const pattern = checkRegex(values.sparsify as string);
  const densities = String(values.densities)
    .split(',')
    .map((d) => density(d.trim()));
  const bs = blockSize(((values['block-size'] as string[] | undefined) ?? ['32']).at(-1)!);
  const training = trainingSpec(values);
  const maxChars = int(values, 'max-chars');
  modelConfig(values, 1);
  const out = (values.out as string | undefined) ?? join('runs', `compare-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  // A compare writes a whole folder (report, plots, a checkpoint per variant): it never writes into
  // one that holds anything, an earlier run's results included.
  if (hasEntries(out)) throw new CliError(`--out ${out} is not empty (an earlier run?); compare never overwrites results: choose another --out`);
  const runDir = openRunDir(out);
  try {
    return await compareIn(values, argv, { pattern, densities, bs, training, maxChars, out }, log);
  } finally {
    runDir.release();
  }
}

async function compareIn(
  values: Values,
  argv: string[],
  opts: { pattern: string; densities: number[]; bs: number; training: TrainingSpec; maxChars: number; out: string },
  log: (s: string) => void,
): Promise<number> {
  const { pattern, densities, bs, training, maxChars, out } = opts;
  const { backend, autocast } = await chooseBackend(values.backend as string, log, values.precision as string);
  const prepared = await prepareData(
    { data: values.data as string | undefined, tokenizer: values.tokenizer as string, maxChars, seq: int(values, 'seq', 2), valFraction: training.valFraction },
    log,
  );
  const model = modelConfig(values, prepared.tokenizer.vocabSize);
  const variants: { name: string; patches: PatchSpec[] }[] = [
    { name: 'dense', patches: [] },
    ...densities.map((d) => ({ name: `sparse ${d}`, patches: [{ pattern, density: d, blockSize: bs }] })),
  ];
  // Every variant's patterns and block sizes are checked before the first one trains.
  const probe = await buildModel(model, [], training.seed);
  try {
    for (const v of variants) checkPatches(probe.model, v.patches, { allowUnmatched: !!values['allow-unmatched'] });
  } finally {
    probe.model.dispose();
  }
  const results: VariantResult[] = [];
  const interrupt = interruptFlag(log);
  try {
    for (const v of variants) {
      const config: RunConfig = { model, tokenizer: prepared.tokenizer.spec, patches: v.patches, training, data: prepared.source, maxChars };
      const trainee = await buildModel(model, v.patches, training.seed, { allowUnmatched: !!values['allow-unmatched'] });
      log(`\n== ${v.name} ==`);
      if (v.name === 'dense') printModel(trainee, log);
      else printPatchReport(trainee, log);
      const result = await train({
        label: v.name,
        config,
        trainee,
        data: prepared.data,
        progress: new Progress(),
        out: join(out, v.name.replace(/\s+/g, '-')),
        shouldStop: interrupt.stop,
        autocast,
        capture: !!values.capture,
      });
      results.push({ name: v.name, parameters: trainee.model.parameterCount(), result });
      trainee.model.dispose();
      if (result.interrupted) throw new CliError(`compare interrupted during '${v.name}' (its checkpoint was saved); no report written`, interrupt.exitCode());
    }
  } finally {
    interrupt.dispose();
  }
  const header = `# sparsegrad compare\n\nBackend: ${backend.name} (${backend.device.description}). Data: ${prepared.source === 'default' ? 'nlp-corpus' : prepared.source}, ${prepared.tokenizer.spec.type} tokens, vocabulary ${prepared.tokenizer.vocabSize}.\nModel: GPT, ${model.layers} layers, d_model ${model.dModel}, ${model.heads} heads, sequence ${model.seqLen}; batch ${training.batch}, ${training.steps} steps, lr ${training.lr}, seed ${training.seed}. Sparse variants: /${pattern}/ with ${bs}x${bs} blocks.\nCommand: \`sparsegrad compare ${argv.join(' ')}\``;
  const extra = `Unigram baseline (held-out cross entropy of the training text's token frequencies): ${prepared.unigram.toFixed(4)} nats/token. "vs dense" is the relative eval-loss difference; "step speedup" is dense ms/step over the variant's. Time per step excludes the first two (warm-up) steps.`;
  const report = writeReport(out, header, results, extra);
  const plots = await writePlots(out, results);
  log(`\n${comparisonTable(results)}\n\nunigram baseline: ${prepared.unigram.toFixed(4)} nats/token`);
  log(`wrote ${report}, ${plots.map((p) => p.split('/').pop()).join(', ')} and metrics.json in ${out}`);
  return 0;
}
