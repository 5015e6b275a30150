import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { TRAINING_FLAGS, int, modelConfig, parse, patchSpecs, trainingSpec, type Values } from '../args.ts';
import { readCheckpoint, type LoadedCheckpoint, type RunConfig } from '../checkpoint.ts';
import { checkResumeFlags } from '../resume.ts';
import { openRunDir } from '../rundir.ts';
import { CliError } from '../errors.ts';
import { buildModel, type Trainee } from '../model.ts';
import { Progress } from '../progress.ts';
import { chooseBackend, prepareData } from '../setup.ts';
import { train } from '../trainer.ts';

export const TRAIN_HELP = `sparsegrad train [options]
  Trains the decoder-only GPT of @sparsegrad/nn on --data FILE (default: the nlp-corpus English sentences).
  --backend auto|cpu|webgpu|cuda   --precision highest|high|medium (float32 products: fp32, TF32, BF16 tensor cores)
                                   or bf16|fp16 (mixed precision: autocast, float32 masters; fp16 with loss scaling)
  --capture                        record the training step once and replay it (CUDA graphs on cuda)
  --tokenizer char|byte   --max-chars N (text used, default 4000000)
  --layers 4 --d-model 128 --heads 4 --seq 128 --batch 16 --steps 300 --lr 3e-3 --warmup 30
  --weight-decay 0.01 --clip 1 --dropout 0 --eval-every 50 --eval-batches 8 --seed 0
  --beta2 0.999 --min-lr LR (default lr/10) --grad-accum 1 --val-fraction 0.05 (held out, from the end)
  --eval-mode fixed|random (random: fresh batches of both splits each evaluation, as nanoGPT)
  --decay-params linear|matrices (AdamW decays linear layers' weights, or every 2-D parameter as nanoGPT)
  --no-bias --gelu tanh|exact --tie-embeddings --init-std STD (GPT-2 initialisation)
  --sparsify REGEX --density D [--block-size 32]   (repeatable; REGEX matches module paths such as layers.0.mlp.fc1)
  --allow-unmatched   keep going when a --sparsify pattern matches nothing
  --out DIR           checkpoint folder (default runs/train-<time>); --checkpoint-every N steps (default 100)
  --resume            continue from the checkpoint in --out
  --stop-after N      train at most N steps in this invocation, then checkpoint and exit (resume later)
Ctrl-C, SIGTERM and SIGHUP save a checkpoint and exit. With --resume only --steps, --eval-every,
--checkpoint-every, --stop-after, --backend and --precision may differ from the checkpoint.`;

export function printModel(trainee: Trainee, log: (s: string) => void): void {
  log(`model (${trainee.model.parameterCount().toLocaleString('en-US')} parameters):`);
  log(trainee.model.summary());
  printPatchReport(trainee, log);
}

export function printPatchReport(trainee: Trainee, log: (s: string) => void): void {
  const r = trainee.report;
  if (!r) return;
  log(`patched ${r.patched.length} layers: parameters ${r.parametersBefore.toLocaleString('en-US')} -> ${r.parametersAfter.toLocaleString('en-US')}`);
  for (const p of r.patched) {
    // What was built: a layer holds a whole number of blocks (at least one), so the density can differ from the one asked for.
    const built = p.density ?? p.params.density;
    const density = `density ${Number(built.toPrecision(4))}${built === p.params.density ? '' : ` (requested ${p.params.density}: a whole number of blocks, at least one)`}`;
    log(
      `  ${p.path}: ${p.inFeatures} -> ${p.outFeatures}, ${density}, ${p.params.blockSize ?? 32}x${p.params.blockSize ?? 32} blocks, parameters ${p.parametersBefore.toLocaleString('en-US')} -> ${p.parametersAfter.toLocaleString('en-US')}`,
    );
  }
}

/**
 * Asks the training loop to stop after the current step (it then evaluates and saves) on Ctrl-C,
 * SIGTERM (a container stop) or SIGHUP (a closed terminal); a second signal aborts at once.
 */
export function interruptFlag(log: (s: string) => void): { stop: () => boolean; exitCode: () => number; dispose: () => void } {
  const SIGNALS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const;
  let received: keyof typeof SIGNALS | null = null;
  const handlers = Object.keys(SIGNALS).map((name) => {
    const signal = name as keyof typeof SIGNALS;
    const handler = () => {
      if (received) process.exit(128 + SIGNALS[signal]);
      received = signal;
      log(`\n${signal === 'SIGINT' ? 'interrupt' : signal}: finishing the current step and saving a checkpoint (again to abort)`);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  return {
    stop: () => received !== null,
    exitCode: () => 128 + SIGNALS[received ?? 'SIGINT'],
    dispose: () => handlers.forEach(([signal, handler]) => process.off(signal, handler)),
  };
}

export async function trainCommand(argv: string[], log: (s: string) => void): Promise<number> {
  const values = parse('train', argv, {
    ...TRAINING_FLAGS,
    sparsify: { type: 'string', multiple: true },
    density: { type: 'string', multiple: true },
    resume: { type: 'boolean', default: false },
    'checkpoint-every': { type: 'string', default: '100' },
    'stop-after': { type: 'string' },
  });
  if (values.help) {
    log(TRAIN_HELP);
    return 0;
  }
  // Arguments, checkpoints and the --out folder are checked before a backend is chosen: loading a
  // GPU backend takes time (and its native library may print warnings), which a mistyped flag or
  // an unwritable folder should not cost.
  const stopAfter = values['stop-after'] === undefined ? undefined : int(values, 'stop-after');
  let config: RunConfig;
  let resume: LoadedCheckpoint | undefined;
  const out = (values.out as string | undefined) ?? join('runs', `train-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  if (values.resume) {
    if (!values.out) throw new CliError('--resume needs --out DIR naming the checkpoint folder to continue');
    resume = readCheckpoint(out);
    config = resume.config;
    checkResumeFlags(values, config);
    // Flags that may change on resume; their new values are saved with the next checkpoint.
    if (values.given.has('steps')) config.training.steps = int(values, 'steps');
    if (values.given.has('eval-every')) config.training.evalEvery = int(values, 'eval-every');
    if (values.given.has('checkpoint-every')) config.checkpointEvery = int(values, 'checkpoint-every');
    if (resume.state.step >= config.training.steps)
      throw new CliError(`the checkpoint in ${out} already reached step ${resume.state.step} of ${config.training.steps}; pass a larger --steps`);
  } else {
    if (values.out && existsSync(join(out, 'checkpoint.json'))) {
      throw new CliError(`${out} already holds a checkpoint; pass --resume to continue it or choose another --out`);
    }
    const training = trainingSpec(values);
    const patches = patchSpecs(values);
    config = {
      model: modelConfig(values, 1),
      tokenizer: { type: 'char' },
      patches,
      training,
      data: (values.data as string | undefined) ?? 'default',
      maxChars: int(values, 'max-chars'),
      checkpointEvery: int(values, 'checkpoint-every'),
    };
  }
  const checkpointEvery = config.checkpointEvery ?? 100;
  const runDir = openRunDir(out);
  if (resume) log(`resuming ${out} at step ${resume.state.step} of ${config.training.steps}`);
  try {
    return await trainIn(values, config, resume, out, checkpointEvery, stopAfter, log);
  } finally {
    runDir.release();
  }
}

async function trainIn(
  values: Values,
  config: RunConfig,
  resume: LoadedCheckpoint | undefined,
  out: string,
  checkpointEvery: number,
  stopAfter: number | undefined,
  log: (s: string) => void,
): Promise<number> {
  const { autocast } = await chooseBackend(values.backend as string, log, values.precision as string);
  const prepared = await prepareData(
    {
      data: config.data === 'default' ? undefined : config.data,
      tokenizer: resume ? config.tokenizer : (values.tokenizer as string),
      maxChars: config.maxChars,
      seq: config.model.seqLen,
      valFraction: config.training.valFraction,
    },
    log,
  );
  config.tokenizer = prepared.tokenizer.spec;
  config.model.vocabSize = prepared.tokenizer.vocabSize;
  const trainee = await buildModel(config.model, config.patches, config.training.seed, { allowUnmatched: !!values['allow-unmatched'] });
  printModel(trainee, log);
  const interrupt = interruptFlag(log);
  try {
    const result = await train({
      label: 'train',
      config,
      trainee,
      data: prepared.data,
      progress: new Progress(),
      out,
      checkpointEvery,
      resume,
      shouldStop: interrupt.stop,
      stopAfter,
      autocast,
      capture: !!values.capture,
    });
    const stoppedEarly = result.interrupted && !interrupt.stop();
    log(
      `${stoppedEarly ? 'stopped (--stop-after) at' : result.interrupted ? 'interrupted at' : 'finished'} step ${result.step}: eval loss ${result.evalLoss.toFixed(4)} (unigram baseline ${prepared.unigram.toFixed(4)}), ${Math.round(result.tokensPerSec)} tokens/s, ${result.msPerStep.toFixed(1)} ms/step`,
    );
    log(`checkpoint: ${result.checkpoint} (sample with: sparsegrad sample --checkpoint ${out} --prompt "The ")`);
    return result.interrupted && !stoppedEarly ? interrupt.exitCode() : 0;
  } finally {
    interrupt.dispose();
  }
}
