import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { decodeSafetensors, encodeSafetensors, writeFileAtomic, type Optimizer } from '@sparsegrad/nn';
import type { Tensor } from '@sparsegrad/core';
import type { GPTConfig } from '@sparsegrad/nn';
import { CliError } from './errors.ts';
import type { TokenizerSpec } from './tokenizer.ts';
import type { Trainee } from './model.ts';

export interface PatchSpec {
  pattern: string;
  density: number;
  blockSize: number;
}

export interface TrainingSpec {
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  clip: number;
  seed: number;
  evalEvery: number;
  evalBatches: number;
  /** AdamW's beta2 (absent in checkpoints written before it was stored: 0.999). */
  beta2?: number;
  /** The cosine schedule's floor (absent: a tenth of lr). */
  minLr?: number;
  /** Micro-batches of `batch` sequences per optimizer step (absent: 1). */
  gradAccum?: number;
  /** Fraction of the text held out for evaluation, from its end (absent: 0.05). */
  valFraction?: number;
  /**
   * 'fixed' (absent): the same held-out batches at every evaluation. 'random': fresh random batches
   * of each split at every evaluation, their mean reported for both (nanoGPT's estimate_loss).
   */
  evalMode?: 'fixed' | 'random';
  /**
   * Which parameters AdamW decays: 'linear' (absent): linear layers' weights; 'matrices': every
   * parameter of two or more dimensions, embeddings included (nanoGPT's rule).
   */
  decayParams?: 'linear' | 'matrices';
}

/** Everything needed to rebuild a model and continue or sample from it. */
export interface RunConfig {
  model: GPTConfig;
  tokenizer: TokenizerSpec;
  patches: PatchSpec[];
  training: TrainingSpec;
  /** --data path or 'default', and how many characters of it were used. */
  data: string;
  maxChars: number;
  /** Steps between checkpoints (absent in checkpoints written before it was stored: 100). */
  checkpointEvery?: number;
}

export interface TrainingState {
  step: number;
  samplerPosition: number;
  /** The random evaluation's samplers (held-out, training split), with --eval-mode random. */
  evalPositions?: [number, number];
  history: { step: number; trainLoss: number; evalLoss?: number; trainSplitLoss?: number }[];
}

const FORMAT = 'sparsegrad-checkpoint';
const POINTER = 'checkpoint.json';

/**
 * A checkpoint directory holds step-NNNNNN/ folders (model and optimizer safetensors, state) and
 * checkpoint.json naming the newest complete one. A new step is written to a temporary folder,
 * renamed into place, and only then does checkpoint.json (written atomically) point at it: a
 * crash at any moment leaves the previous checkpoint intact and referenced.
 */
export async function saveCheckpoint(dir: string, config: RunConfig, run: Trainee, optimizer: Optimizer, state: TrainingState): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const name = `step-${String(state.step).padStart(6, '0')}`;
  const tmp = join(dir, `.${name}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    writeFileAtomic(join(tmp, 'model.safetensors'), await encodeSafetensors(run.model.stateDict(), { format: 'pt', step: String(state.step) }));
    const opt = optimizer.stateDict();
    writeFileAtomic(join(tmp, 'optimizer.safetensors'), await encodeSafetensors(byParameterName(opt.tensors, run, optimizer), { step: String(opt.step) }));
    writeFileAtomic(join(tmp, 'state.json'), JSON.stringify(state));
    rmSync(join(dir, name), { recursive: true, force: true });
    renameSync(tmp, join(dir, name));
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  writeFileAtomic(join(dir, POINTER), JSON.stringify({ format: FORMAT, version: 1, latest: name, config }, null, 2));
  for (const old of readdirSync(dir)) if (/^step-\d+$/.test(old) && old !== name) rmSync(join(dir, old), { recursive: true, force: true });
  return join(dir, name);
}

export interface LoadedCheckpoint {
  config: RunConfig;
  dir: string;
  state: TrainingState;
}

/** Reads and validates checkpoint.json and the state of the step it names. */
export function readCheckpoint(dir: string): LoadedCheckpoint {
  const pointer = join(dir, POINTER);
  if (!existsSync(pointer)) throw new CliError(`${dir} is not a sparsegrad checkpoint (no ${POINTER})`);
  let meta: { format?: string; latest?: string; config?: RunConfig };
  try {
    meta = JSON.parse(readFileSync(pointer, 'utf8'));
  } catch {
    throw new CliError(`${pointer} is damaged (not valid JSON)`);
  }
  if (meta.format !== FORMAT || typeof meta.latest !== 'string' || !meta.config?.model) throw new CliError(`${pointer} is not a sparsegrad checkpoint`);
  const latest = /^step-(\d{6,})$/.exec(meta.latest);
  if (!latest) throw new CliError(`${pointer} is damaged: it names '${meta.latest}', not a step-NNNNNN folder`);
  const step = join(dir, meta.latest);
  let state: TrainingState;
  try {
    state = JSON.parse(readFileSync(join(step, 'state.json'), 'utf8'));
  } catch {
    throw new CliError(`checkpoint ${step} is incomplete or damaged (state.json missing or invalid)`);
  }
  // A damaged state must never become a run at another step (or a step-undefined/ folder).
  const valid =
    state &&
    typeof state === 'object' &&
    Number.isInteger(state.step) &&
    state.step === Number(latest[1]) &&
    Number.isInteger(state.samplerPosition) &&
    (state.evalPositions === undefined ||
      (Array.isArray(state.evalPositions) && state.evalPositions.length === 2 && state.evalPositions.every(Number.isInteger))) &&
    Array.isArray(state.history);
  if (!valid)
    throw new CliError(
      `checkpoint ${step} is damaged: its state.json does not hold the step (${Number(latest[1])}), sampler position and history of that step`,
    );
  return { config: meta.config, dir: step, state };
}

/** Loads model (and optionally optimizer) tensors from a checkpoint step folder into a built model. */
export async function loadCheckpointWeights(ckpt: LoadedCheckpoint, run: Trainee, optimizer?: Optimizer): Promise<void> {
  const read = (file: string) => {
    const path = join(ckpt.dir, file);
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(path);
    } catch {
      throw new CliError(`checkpoint file ${path} is missing`);
    }
    try {
      return decodeSafetensors(bytes, path);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
  };
  const model = read('model.safetensors');
  try {
    await run.model.loadStateDict(model.tensors);
  } catch (e) {
    throw new CliError(`checkpoint does not fit the model: ${(e as Error).message}`);
  } finally {
    for (const t of Object.values(model.tensors)) t.dispose();
  }
  if (optimizer) {
    const opt = read('optimizer.safetensors');
    try {
      optimizer.loadStateDict({ tensors: byOptimizerIndex(opt.tensors, run, optimizer), step: Number(opt.metadata.step ?? 0) });
    } catch (e) {
      throw new CliError(`checkpoint's optimizer state does not fit the model: ${(e as Error).message}`);
    } finally {
      for (const t of Object.values(opt.tensors)) t.dispose();
    }
  }
}

/**
 * Optimizer state is stored under parameter names ("layers.0.mlp.fc1.weight.expAvg"), not the
 * optimizer's parameter positions, which depend on how its groups are formed: a checkpoint then
 * never hands one parameter's moments to another.
 */
function byParameterName(tensors: Record<string, Tensor>, run: Trainee, optimizer: Optimizer): Record<string, Tensor> {
  const names = new Map([...run.model.namedParameters()].map(([n, p]) => [p, n]));
  return Object.fromEntries(
    Object.entries(tensors).map(([key, t]) => {
      const dot = key.indexOf('.');
      return [`${names.get(optimizer.params[Number(key.slice(0, dot))])}.${key.slice(dot + 1)}`, t];
    }),
  );
}

/** The inverse of byParameterName; checkpoints written before it keyed state by position in model.parameters(). */
function byOptimizerIndex(tensors: Record<string, Tensor>, run: Trainee, optimizer: Optimizer): Record<string, Tensor> {
  const named = new Map(run.model.namedParameters());
  const ordered = run.model.parameters();
  return Object.fromEntries(
    Object.entries(tensors).map(([key, t]) => {
      const dot = key.lastIndexOf('.');
      const legacy = /^(\d+)\.(\w+)$/.exec(key);
      const p = legacy ? ordered[Number(legacy[1])] : named.get(key.slice(0, dot));
      const index = p ? optimizer.params.indexOf(p) : -1;
      if (index < 0) throw new CliError(`optimizer state '${key}' names no parameter of the model`);
      return [`${index}.${legacy ? legacy[2] : key.slice(dot + 1)}`, t];
    }),
  );
}
