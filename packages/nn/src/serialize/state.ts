/**
 * A model's state as safetensors bytes, and back: what save() and load() write to and read from
 * files in Node, usable as they are in a browser (download the bytes, fetch them back).
 */
import type { LoadResult, Module } from '../module.ts';
import { decodeSafetensors, encodeSafetensors, type StoredFloat } from './safetensors.ts';

/**
 * The model's stateDict as safetensors bytes; metadata strings are stored in the header. `float`
 * stores the float32 tensors as bfloat16 or float16 (half the bytes, rounded; loading reads them
 * back as float32).
 */
export function saveToBytes(model: Module, metadata: Record<string, string> = {}, opts: { float?: StoredFloat } = {}): Promise<Uint8Array<ArrayBuffer>> {
  return encodeSafetensors(model.stateDict(), { format: 'pt', ...metadata }, opts);
}

/**
 * Loads safetensors bytes into the model (strict by default) on the backend of its parameters;
 * returns the header's metadata too. `source` names the bytes in errors (a file path, a URL).
 */
export async function loadFromBytes(
  model: Module,
  bytes: Uint8Array,
  opts: { strict?: boolean; source?: string } = {},
): Promise<LoadResult & { metadata: Record<string, string> }> {
  const backend = model.parameters()[0]?.backend;
  const { tensors, metadata } = decodeSafetensors(bytes, opts.source ?? 'safetensors bytes', { backend });
  try {
    const result = await model.loadStateDict(tensors, { strict: opts.strict });
    return { ...result, metadata };
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}
