import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliError } from './errors.ts';
import type { PatchSpec, TrainingSpec } from './checkpoint.ts';
import type { GPTConfig } from '@sparsegrad/nn';
import { BLOCK_SIZES } from '@sparsegrad/core';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags shared by train and compare (defaults sized for a laptop CPU). */
export const TRAINING_FLAGS: Options = {
  data: { type: 'string' },
  tokenizer: { type: 'string', default: 'char' },
  backend: { type: 'string', default: 'auto' },
  precision: { type: 'string', default: 'highest' },
  capture: { type: 'boolean', default: false },
  layers: { type: 'string', default: '4' },
  'd-model': { type: 'string', default: '128' },
  heads: { type: 'string', default: '4' },
  seq: { type: 'string', default: '128' },
  batch: { type: 'string', default: '16' },
  steps: { type: 'string', default: '300' },
  lr: { type: 'string', default: '3e-3' },
  warmup: { type: 'string', default: '30' },
  'weight-decay': { type: 'string', default: '0.01' },
  clip: { type: 'string', default: '1' },
  dropout: { type: 'string', default: '0' },
  'no-bias': { type: 'boolean', default: false },
  gelu: { type: 'string', default: 'tanh' },
  'tie-embeddings': { type: 'boolean', default: false },
  'init-std': { type: 'string' },
  beta2: { type: 'string', default: '0.999' },
  'min-lr': { type: 'string' },
  'grad-accum': { type: 'string', default: '1' },
  'val-fraction': { type: 'string', default: '0.05' },
  'eval-mode': { type: 'string', default: 'fixed' },
  'decay-params': { type: 'string', default: 'linear' },
  'eval-every': { type: 'string', default: '50' },
  'eval-batches': { type: 'string', default: '8' },
  'max-chars': { type: 'string', default: '4000000' },
  seed: { type: 'string', default: '0' },
  out: { type: 'string' },
  'block-size': { type: 'string', multiple: true },
  'allow-unmatched': { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
};

export type Values = Record<string, string | string[] | boolean | undefined>;

/**
 * Parses a command's flags. `--name=value` and `--name value` are the same, a negative number
 * included (`--steps -5` reaches the validators, which say what was expected). `given` holds the
 * names of the flags written on the command line (defaults are not), for --resume.
 */
export function parse(command: string, argv: string[], options: Options): Values & { given: Set<string> } {
  const args: string[] = [];
  for (const a of argv) {
    const flag = args.at(-1);
    if (/^-\.?\d/.test(a) && isValueFlag(flag, options)) args[args.length - 1] = `${flag}=${a}`;
    else args.push(a);
  }
  try {
    const { values, tokens } = parseArgs({ args, options, strict: true, allowPositionals: false, tokens: true });
    const given = new Set(tokens.filter((t) => t.kind === 'option').map((t) => (t as { name: string }).name));
    return Object.assign(values as Values, { given });
  } catch (e) {
    throw new CliError(`${command}: ${(e as Error).message.split('\n')[0]}`);
  }
}

function isValueFlag(arg: string | undefined, options: Options): boolean {
  return !!arg && arg.startsWith('--') && !arg.includes('=') && options[arg.slice(2)]?.type === 'string';
}

export function int(values: Record<string, unknown>, name: string, min = 1): number {
  const raw = values[name] as string;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) throw new CliError(`--${name} must be an integer >= ${min}, got '${raw}'`);
  return v;
}

export function num(values: Record<string, unknown>, name: string, check: (v: number) => boolean, expected: string): number {
  const raw = values[name] as string;
  const v = Number(raw);
  if (raw === undefined || raw === '' || !Number.isFinite(v) || !check(v)) throw new CliError(`--${name} must be ${expected}, got '${raw}'`);
  return v;
}

export function density(raw: string): number {
  const v = Number(raw);
  if (!Number.isFinite(v) || !(v > 0 && v <= 1)) throw new CliError(`--density must be in (0, 1], got '${raw}'`);
  return v;
}

export function blockSize(raw: string): number {
  const v = Number(raw);
  if (!(BLOCK_SIZES as readonly number[]).includes(v)) throw new CliError(`--block-size must be one of ${BLOCK_SIZES.join(', ')}, got '${raw}'`);
  return v;
}

export function checkRegex(pattern: string): string {
  try {
    new RegExp(pattern);
  } catch (e) {
    throw new CliError(`--sparsify /${pattern}/ is not a valid regular expression: ${(e as Error).message}`);
  }
  return pattern;
}

/**
 * Pairs each --sparsify with a --density and --block-size given in the same order; a single
 * --density or --block-size applies to every pattern.
 */
export function patchSpecs(values: Record<string, unknown>): PatchSpec[] {
  const patterns = ((values.sparsify as string[] | undefined) ?? []).map(checkRegex);
  const densities = ((values.density as string[] | undefined) ?? []).map(density);
  const sizes = ((values['block-size'] as string[] | undefined) ?? []).map(blockSize);
  if (patterns.length === 0) {
    if (densities.length) throw new CliError('--density needs a --sparsify REGEX naming the layers to sparsify');
    return [];
  }
  const pick = <T>(list: T[], i: number, fallback: T, name: string): T => {
    if (list.length === 0) return fallback;
    if (list.length === 1) return list[0];
    if (list.length !== patterns.length)
      throw new CliError(`got ${patterns.length} --sparsify patterns but ${list.length} ${name} values; give one, or one per pattern`);
    return list[i];
  };
  if (densities.length === 0) throw new CliError('--sparsify needs a --density D in (0, 1]');
  return patterns.map((pattern, i) => ({ pattern, density: pick(densities, i, 1, '--density'), blockSize: pick(sizes, i, 32, '--block-size') }));
}

export function modelConfig(values: Record<string, unknown>, vocabSize: number): GPTConfig {
  const dModel = int(values, 'd-model');
  const heads = int(values, 'heads');
  if (dModel % heads !== 0) throw new CliError(`--d-model ${dModel} is not divisible by --heads ${heads}`);
  return {
    vocabSize,
    seqLen: int(values, 'seq', 2),
    dModel,
    heads,
    layers: int(values, 'layers'),
    dropout: num(values, 'dropout', (v) => v >= 0 && v < 1, 'in [0, 1)'),
    bias: !values['no-bias'],
    gelu: geluMode(values.gelu as string),
    tieEmbeddings: !!values['tie-embeddings'],
    ...(values['init-std'] === undefined ? {} : { initStd: num(values, 'init-std', (v) => v > 0, 'a positive number') }),
  };
}

function evalMode(raw: string): 'fixed' | 'random' {
  if (raw === 'fixed' || raw === 'random') return raw;
  throw new CliError(`--eval-mode must be fixed or random, got '${raw}'`);
}

function geluMode(raw: string): 'tanh' | 'none' {
  if (raw === 'tanh') return 'tanh';
  if (raw === 'exact') return 'none';
  throw new CliError(`--gelu must be tanh or exact, got '${raw}'`);
}

export function trainingSpec(values: Record<string, unknown>): TrainingSpec {
  const steps = int(values, 'steps');
  return {
    steps,
    batch: int(values, 'batch'),
    lr: num(values, 'lr', (v) => v > 0, 'a positive number'),
    warmup: int(values, 'warmup', 0),
    weightDecay: num(values, 'weight-decay', (v) => v >= 0, 'a non-negative number'),
    clip: num(values, 'clip', (v) => v > 0, 'a positive number'),
    seed: int(values, 'seed', 0),
    evalEvery: int(values, 'eval-every'),
    evalBatches: int(values, 'eval-batches'),
    beta2: num(values, 'beta2', (v) => v >= 0 && v < 1, 'in [0, 1)'),
    ...(values['min-lr'] === undefined ? {} : { minLr: num(values, 'min-lr', (v) => v >= 0, 'a non-negative number') }),
    gradAccum: int(values, 'grad-accum'),
    valFraction: num(values, 'val-fraction', (v) => v > 0 && v < 1, 'in (0, 1)'),
    evalMode: evalMode(values['eval-mode'] as string),
    decayParams: decayParams(values['decay-params'] as string),
  };
}

function decayParams(raw: string): 'linear' | 'matrices' {
  if (raw === 'linear' || raw === 'matrices') return raw;
  throw new CliError(`--decay-params must be linear or matrices, got '${raw}'`);
}
