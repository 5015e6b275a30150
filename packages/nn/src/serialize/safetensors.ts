/**
 * The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length, a JSON header mapping names to {dtype, shape, data_offsets}, then raw
 * little-endian tensor bytes. Readable by Python's safetensors and PyTorch. BF16 and F16 tensors
 * (as Hugging Face checkpoints hold them) are read as bfloat16 and float16 tensors where the
 * backend holds those dtypes, else as float32 (exactly); 16-bit tensors are written as BF16 and
 * F16, and float32 tensors can be written as either (rounded to nearest even).
 */
import {
  bfloat16ToFloat32,
  type DType,
  getBackend,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  opError,
  tensor,
  type Backend,
  type Tensor,
} from '@sparsegrad/core';

/** What a file's dtype code becomes here, and its bytes per element. */
const FROM_CODE: Record<string, { dtype: DType; bytes: number }> = {
  F32: { dtype: 'float32', bytes: 4 },
  I32: { dtype: 'int32', bytes: 4 },
  BF16: { dtype: 'bfloat16', bytes: 2 },
  F16: { dtype: 'float16', bytes: 2 },
};
/** How float32 tensors are stored. */
export type StoredFloat = 'float32' | 'bfloat16' | 'float16';
const FLOAT_CODES: Record<StoredFloat, string> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' };
/** Refuse absurd headers before allocating (the reference implementation caps it at 100 MB too). */
const MAX_HEADER = 100_000_000;

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/**
 * Serialises named tensors (read back from their backend) with optional string metadata; float32
 * tensors are stored as `opts.float` (default float32; bfloat16 and float16 round to nearest even).
 */
export async function encodeSafetensors(
  tensors: Record<string, Tensor>,
  metadata: Record<string, string> = {},
  opts: { float?: StoredFloat } = {},
): Promise<Uint8Array<ArrayBuffer>> {
  const float = opts.float ?? 'float32';
  if (!(float in FLOAT_CODES)) throw opError('save', `float must be float32, bfloat16 or float16, got '${String(float)}'`);
  const names = Object.keys(tensors).sort();
  const header: Record<string, HeaderEntry | Record<string, string>> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    let data: ArrayBufferView = await t.toArray();
    // 16-bit tensors keep their dtype (their float32 values convert back exactly).
    const stored: DType = t.dtype === 'float32' ? float : t.dtype;
    if (stored === 'bfloat16') data = float32ToBfloat16(data as Float32Array);
    if (stored === 'float16') data = float32ToFloat16(data as Float32Array);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const code = stored === 'int32' ? 'I32' : FLOAT_CODES[stored as StoredFloat];
    header[name] = { dtype: code, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Pad the header with spaces so the data starts 8-byte aligned (as the Python writer does).
  const headerBytes = new Uint8Array(json.length + ((8 - ((8 + json.length) % 8)) % 8)).fill(0x20);
  headerBytes.set(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

export interface DecodedSafetensors {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

/** Parses and validates a safetensors file; `source` names it in error messages. */
export function decodeSafetensors(bytes: Uint8Array, source: string, opts: { backend?: Backend } = {}): DecodedSafetensors {
  const op = 'load';
  if (bytes.length < 8) throw opError(op, `${source} is not a safetensors file (only ${bytes.length} bytes)`);
  const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLen > MAX_HEADER || headerLen < 2) throw opError(op, `${source} is not a safetensors file (header length ${headerLen} is implausible)`);
  if (8 + headerLen > bytes.length) throw opError(op, `${source} is truncated: the header needs ${headerLen} bytes but only ${bytes.length - 8} follow`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch {
    throw opError(op, `${source} is not a safetensors file (its header is not valid JSON)`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw opError(op, `${source} is not a safetensors file (header is not a JSON object)`);
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const data = bytes.subarray(8 + headerLen);
  const entries = checkEntries(header, data.length, source);
  const tensors: Record<string, Tensor> = {};
  try {
    for (const [name, e] of entries) {
      const [begin, end] = e.data_offsets;
      // A fresh, aligned copy (Buffer.slice would return a view into Node's shared pool).
      const copy = new Uint8Array(end - begin);
      copy.set(data.subarray(begin, end));
      const values =
        e.dtype === 'I32'
          ? new Int32Array(copy.buffer)
          : e.dtype === 'F32'
            ? new Float32Array(copy.buffer)
            : (e.dtype === 'BF16' ? bfloat16ToFloat32 : float16ToFloat32)(new Uint16Array(copy.buffer));
      const dtype = FROM_CODE[e.dtype].dtype;
      const backend = opts.backend ?? getBackend();
      tensors[name] = tensor(values, e.shape, { dtype: backend.dtypes.includes(dtype) ? dtype : 'float32', backend });
    }
  } catch (e) {
    for (const t of Object.values(tensors)) t.dispose();
    throw e;
  }
  return { tensors, metadata };
}

/**
 * Validates every header entry before anything is allocated. As in the reference reader, the
 * tensors' byte ranges must tile the data exactly: sorted by offset, each begins where the
 * previous one ends, the first at 0 and the last at the end of the file (no overlap, no gap).
 */
function checkEntries(header: Record<string, unknown>, dataLength: number, source: string): [string, HeaderEntry][] {
  const op = 'load';
  const out: [string, HeaderEntry][] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = raw as HeaderEntry;
    const code = FROM_CODE[e?.dtype];
    if (!code) throw opError(op, `${source}: tensor '${name}' has dtype ${e?.dtype}; sparsegrad reads F32, BF16, F16 and I32`);
    if (
      !Array.isArray(e.shape) ||
      !e.shape.every((d) => Number.isInteger(d) && d >= 0) ||
      !Array.isArray(e.data_offsets) ||
      e.data_offsets.length !== 2 ||
      !e.data_offsets.every((o) => Number.isSafeInteger(o) && o >= 0)
    ) {
      throw opError(op, `${source}: tensor '${name}' has a malformed header entry`);
    }
    const [begin, end] = e.data_offsets;
    const count = e.shape.reduce((a, b) => a * b, 1);
    if (end - begin !== count * code.bytes) {
      throw opError(
        op,
        `${source}: tensor '${name}' of shape [${e.shape.join(', ')}] (${e.dtype}) has ${end - begin} bytes of data, expected ${count * code.bytes}`,
      );
    }
    if (end > dataLength) throw opError(op, `${source} is truncated: tensor '${name}' ends at byte ${end} of the data but the file has ${dataLength}`);
    out.push([name, e]);
  }
  const sorted = [...out].sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0] || a[1].data_offsets[1] - b[1].data_offsets[1]);
  let at = 0;
  for (const [name, e] of sorted) {
    const [begin, end] = e.data_offsets;
    if (begin < at) throw opError(op, `${source} is damaged: tensor '${name}' (bytes ${begin}-${end}) overlaps the tensor before it, which ends at byte ${at}`);
    if (begin > at) throw opError(op, `${source} is damaged: bytes ${at}-${begin} of the data belong to no tensor (gap before '${name}')`);
    at = end;
  }
  if (at !== dataLength) throw opError(op, `${source} is damaged: the header describes ${at} bytes of tensor data but the file holds ${dataLength}`);
  return out;
}
