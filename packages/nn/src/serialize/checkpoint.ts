/** Checkpoint files in Node (the only Node-specific part of @sparsegrad/nn: see portable.ts). */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { opError } from '@sparsegrad/core';
import type { LoadResult, Module } from '../module.ts';
import type { StoredFloat } from './safetensors.ts';
import { loadFromBytes, saveToBytes } from './state.ts';

/**
 * Writes bytes to a temporary file beside `path`, flushes it to disk, then renames it over
 * `path`: a crash at any point leaves either the old file or the complete new one.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      const buf = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Saves the model's stateDict as safetensors (atomically). Metadata strings are stored in the
 * header; `float: 'bfloat16' | 'float16'` stores float32 tensors in half the bytes (see saveToBytes).
 */
export async function save(model: Module, path: string, metadata: Record<string, string> = {}, opts: { float?: StoredFloat } = {}): Promise<void> {
  if (typeof path !== 'string' || !path) throw opError('save', `expected a file path, got ${String(path)}`);
  writeFileAtomic(path, await saveToBytes(model, metadata, opts));
}

/** Loads a safetensors file into the model (strict by default); returns the file's metadata too. */
export async function load(model: Module, path: string, opts: { strict?: boolean } = {}): Promise<LoadResult & { metadata: Record<string, string> }> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw opError('load', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return loadFromBytes(model, bytes, { ...opts, source: path });
}
