import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { tensor, type Tensor } from '@sparsegrad/core';
import { CliError } from './errors.ts';
import { buildCharVocab, byteTokenizer, charTokenizer, type Tokenizer } from './tokenizer.ts';

export interface Corpus {
  /** Where the text came from, for the log. */
  source: string;
  text: string;
}

/**
 * The default corpus: nlp-corpus (MIT), ~100k English sentences shipped with the npm package, so
 * training needs no network. Its documented API (`all()`) gives the sentences, joined here with
 * newlines.
 */
export async function defaultCorpus(): Promise<Corpus> {
  let corpus: { all(): string[] };
  try {
    // The package ships no types: its documented `all()` returns the sentences.
    corpus = (await import('nlp-corpus' as string)) as { all(): string[] };
  } catch {
    throw new CliError('the default corpus (npm package nlp-corpus) is not installed; run npm install, or pass --data FILE');
  }
  return { source: 'nlp-corpus (100,000 English sentences)', text: corpus.all().join('\n') };
}

/** Opens --data and checks that it is a non-empty file; returns its size in bytes. */
function checkDataFile(path: string): number {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new CliError(`--data ${path} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`--data ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (size === 0) throw new CliError(`--data ${path} is empty`);
  return size;
}

/** The first `limit` bytes of a file (all of it if smaller), read without loading the rest. */
function readPrefix(path: string, limit: number): Uint8Array {
  const size = checkDataFile(path);
  const bytes = new Uint8Array(Math.min(size, limit));
  const fd = openSync(path, 'r');
  try {
    let at = 0;
    while (at < bytes.length) {
      const n = readSync(fd, bytes, at, bytes.length - at, at);
      if (n === 0) break;
      at += n;
    }
    return bytes.subarray(0, at);
  } finally {
    closeSync(fd);
  }
}

/**
 * The first `maxChars` characters of a UTF-8 text file: at most 4 bytes a character are read, so
 * a file far larger than the limit is never loaded whole. A file that is not valid UTF-8 is read
 * with replacement characters, and `warn` says so (--tokenizer byte reads any file exactly).
 */
export function fileCorpus(path: string, maxChars: number, warn: (s: string) => void): Corpus {
  const bytes = readPrefix(path, maxChars * 4);
  let text: string;
  try {
    // stream: a character cut by the read limit is held back instead of failing the decode.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
  } catch {
    warn(`warning: --data ${path} is not valid UTF-8; undecodable bytes become U+FFFD (use --tokenizer byte to train on the bytes)`);
    text = new TextDecoder('utf-8').decode(bytes, { stream: true });
  }
  return { source: path, text: text.length > maxChars ? sliceChars(text, maxChars) : text };
}

/** The first `n` code points of a string. */
function sliceChars(text: string, n: number): string {
  let end = 0;
  for (let i = 0; i < n && end < text.length; i++) end += text.codePointAt(end)! > 0xffff ? 2 : 1;
  return text.slice(0, end);
}

/** The first `maxBytes` bytes of --data (or of the default corpus in UTF-8), for the byte tokenizer. */
export async function byteCorpus(path: string | undefined, maxBytes: number): Promise<{ source: string; bytes: Uint8Array }> {
  if (path) return { source: path, bytes: readPrefix(path, maxBytes) };
  const corpus = await defaultCorpus();
  return { source: corpus.source, bytes: new TextEncoder().encode(corpus.text).subarray(0, maxBytes) };
}

export function makeTokenizer(kind: string, text: string): Tokenizer {
  if (kind === 'byte') return byteTokenizer();
  if (kind === 'char') return charTokenizer(buildCharVocab(text));
  throw new CliError(`unknown --tokenizer '${kind}'; expected char or byte`);
}

/** Token ids split into training and held-out parts (the last `heldOut` fraction). */
export interface Dataset {
  train: Int32Array;
  valid: Int32Array;
}

export function splitDataset(ids: Int32Array, heldOut: number, seq: number): Dataset {
  const cut = Math.floor(ids.length * (1 - heldOut));
  const ds = { train: ids.subarray(0, cut), valid: ids.subarray(cut) };
  for (const [name, part] of Object.entries(ds)) {
    if (part.length < seq + 2) {
      throw new CliError(
        `the ${name === 'train' ? 'training' : 'held-out'} text has ${part.length} tokens, fewer than --seq ${seq} + 2; use a larger --data file or a smaller --seq`,
      );
    }
  }
  return ds;
}

/** A seeded stream of random windows: inputs [batch, seq] and next-token targets. */
export class BatchSampler {
  private state: number;
  constructor(
    private readonly ids: Int32Array,
    private readonly batch: number,
    private readonly seq: number,
    seed: number,
  ) {
    this.state = seed >>> 0 || 1;
  }
  /** The generator position, saved in checkpoints so --resume sees the same batches. */
  get position(): number {
    return this.state;
  }
  set position(s: number) {
    this.state = s >>> 0 || 1;
  }
  private next(): number {
    // xorshift32
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state / 4294967296;
  }
  sample(): [Tensor, Tensor] {
    const { batch, seq, ids } = this;
    const x = new Int32Array(batch * seq);
    const y = new Int32Array(batch * seq);
    for (let b = 0; b < batch; b++) {
      const start = Math.floor(this.next() * (ids.length - seq - 1));
      x.set(ids.subarray(start, start + seq), b * seq);
      y.set(ids.subarray(start + 1, start + seq + 1), b * seq);
    }
    return [tensor(x, [batch, seq], { dtype: 'int32' }), tensor(y, [batch, seq], { dtype: 'int32' })];
  }
}

/** Cross entropy (nats/token) of the held-out text under the training text's token frequencies (add-one smoothed). */
export function unigramLoss(train: Int32Array, valid: Int32Array, vocabSize: number): number {
  const counts = new Float64Array(vocabSize).fill(1);
  for (const t of train) counts[t]++;
  const total = train.length + vocabSize;
  let nll = 0;
  for (const t of valid) nll -= Math.log(counts[t] / total);
  return nll / valid.length;
}
