import {
  MATMUL_PRECISIONS,
  lastBackendChoice,
  setBackend,
  setFloat32MatmulPrecision,
  type Backend,
  type HalfDType,
  type MatmulPrecision,
} from '@sparsegrad/core';
import { CliError } from './errors.ts';
import { byteCorpus, defaultCorpus, fileCorpus, makeTokenizer, splitDataset, unigramLoss, type Dataset } from './data.ts';
import type { Tokenizer } from './tokenizer.ts';
import { byteTokenizer, tokenizerFromSpec, type TokenizerSpec } from './tokenizer.ts';

/** --precision: a float32 matmul precision, or mixed precision (autocast to a 16-bit dtype). */
const AUTOCAST: Record<string, HalfDType> = { bf16: 'bfloat16', fp16: 'float16' };
export const PRECISIONS = [...MATMUL_PRECISIONS, ...Object.keys(AUTOCAST)];

/** Selects the backend and the precision; returns the backend and the autocast dtype (null for a float32 precision). */
export async function chooseBackend(name: string, log: (s: string) => void, precision = 'highest'): Promise<{ backend: Backend; autocast: HalfDType | null }> {
  const allowed = ['auto', 'cpu', 'webgpu', 'cuda'];
  if (!allowed.includes(name)) throw new CliError(`unknown --backend '${name}'; expected one of ${allowed.join(', ')}`);
  if (!PRECISIONS.includes(precision)) throw new CliError(`unknown --precision '${precision}'; expected one of ${PRECISIONS.join(', ')}`);
  const autocast = AUTOCAST[precision] ?? null;
  setFloat32MatmulPrecision(autocast ? 'highest' : (precision as MatmulPrecision));
  let backend: Backend;
  try {
    backend = await setBackend(name);
  } catch (e) {
    throw new CliError((e as Error).message.replace(/^setBackend: /, '--backend: '));
  }
  if (autocast && !backend.dtypes.includes(autocast)) {
    throw new CliError(`--precision ${precision}: the ${backend.name} backend cannot hold ${autocast} tensors (it holds ${backend.dtypes.join(', ')})`);
  }
  const what = autocast
    ? `; mixed precision: products in ${autocast} under autocast, float32 parameters and optimizer${autocast === 'float16' ? ', dynamic loss scaling' : ''}`
    : precision === 'highest'
      ? ''
      : `; float32 matmul precision '${precision}'`;
  log(`backend: ${backend.name} - ${backend.device.description} (${lastBackendChoice()})${what}`);
  return { backend, autocast };
}

export interface PreparedData {
  source: string;
  tokenizer: Tokenizer;
  data: Dataset;
  unigram: number;
}

/**
 * Loads the data (at most --max-chars characters of the file or the default corpus; bytes for the
 * byte tokenizer, which reads any file exactly), builds or reuses a tokenizer, holds out the last
 * `valFraction` of the tokens (default 0.05) and
 * computes the unigram baseline.
 */
export async function prepareData(
  opts: { data?: string; tokenizer: string | TokenizerSpec; maxChars: number; seq: number; valFraction?: number },
  log: (s: string) => void,
): Promise<PreparedData> {
  const kind = typeof opts.tokenizer === 'string' ? opts.tokenizer : opts.tokenizer.type;
  let tokenizer: Tokenizer;
  let ids: Int32Array;
  let read: string;
  if (kind === 'byte') {
    const { source, bytes } = await byteCorpus(opts.data, opts.maxChars);
    tokenizer = byteTokenizer();
    ids = Int32Array.from(bytes);
    read = `${source}, ${bytes.length.toLocaleString('en-US')} bytes`;
  } else {
    const corpus = opts.data ? fileCorpus(opts.data, opts.maxChars, log) : await defaultCorpus();
    const text = opts.data ? corpus.text : corpus.text.slice(0, opts.maxChars);
    tokenizer = typeof opts.tokenizer === 'string' ? makeTokenizer(opts.tokenizer, text) : tokenizerFromSpec(opts.tokenizer);
    ids = tokenizer.encode(text);
    read = `${corpus.source}, ${text.length.toLocaleString('en-US')} characters`;
  }
  const data = splitDataset(ids, opts.valFraction ?? 0.05, opts.seq);
  const unigram = unigramLoss(data.train, data.valid, tokenizer.vocabSize);
  log(
    `data: ${read} -> ${ids.length.toLocaleString('en-US')} ${tokenizer.spec.type} tokens (vocabulary ${tokenizer.vocabSize}); ${data.valid.length.toLocaleString('en-US')} held out`,
  );
  log(`unigram baseline: ${unigram.toFixed(4)} nats/token on the held-out text`);
  return { source: opts.data ?? 'default', tokenizer, data, unigram };
}
