import { CliError } from './errors.ts';

export interface TokenizerSpec {
  type: 'char' | 'byte';
  /** char: the characters of the vocabulary in id order; id 0 is the unknown character. */
  vocab?: string[];
}

/** Maps text to int32 ids and back. */
export interface Tokenizer {
  readonly spec: TokenizerSpec;
  readonly vocabSize: number;
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
}

const UNKNOWN = '\u0000';

/**
 * Character-level tokenizer. The vocabulary is every character seen at least `minCount` times
 * in the training text; others map to id 0 (shown as U+FFFD when decoded).
 */
export function charTokenizer(vocab: string[]): Tokenizer {
  const index = new Map(vocab.map((c, i) => [c, i]));
  return {
    spec: { type: 'char', vocab },
    vocabSize: vocab.length,
    encode: (text) => Int32Array.from(text, (c) => index.get(c) ?? 0),
    decode: (ids) => Array.from(ids, (i) => (i === 0 ? '\uFFFD' : (vocab[i] ?? '\uFFFD'))).join(''),
  };
}

export function buildCharVocab(text: string, minCount = 2): string[] {
  const counts = new Map<string, number>();
  for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
  const kept = [...counts]
    .filter(([c, n]) => n >= minCount && c !== UNKNOWN)
    .map(([c]) => c)
    .sort();
  return [UNKNOWN, ...kept];
}

/** Byte-level tokenizer over UTF-8 (vocabulary 256). */
export function byteTokenizer(): Tokenizer {
  return {
    spec: { type: 'byte' },
    vocabSize: 256,
    encode: (text) => Int32Array.from(new TextEncoder().encode(text)),
    decode: (ids) => new TextDecoder().decode(Uint8Array.from(ids)),
  };
}

export function tokenizerFromSpec(spec: TokenizerSpec): Tokenizer {
  if (spec?.type === 'byte') return byteTokenizer();
  if (spec?.type === 'char' && Array.isArray(spec.vocab) && spec.vocab.length > 1) return charTokenizer(spec.vocab);
  throw new CliError(`checkpoint has an unusable tokenizer description (${JSON.stringify(spec)?.slice(0, 80)})`);
}
