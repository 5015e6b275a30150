/**
 * Kernel arguments packed as the C ABI lays out a kernel's parameters: each at an offset aligned
 * to its size, pointers as 8 bytes. The addon passes the driver one pointer per parameter (the
 * offsets), so the packing here must follow each kernel's signature in native/kernels/.
 */
import { MAX_OPERANDS, MAX_RANK } from './layout.ts';

export class Args {
  // Room for the largest by-value struct (a tensor list of lists.ts, ~2.9 KB) and a few scalars.
  private readonly bytes = new Uint8Array(4096);
  private readonly view = new DataView(this.bytes.buffer);
  private readonly offs = new Uint32Array(32);
  private at = 0;
  private count = 0;

  reset(): this {
    this.at = 0;
    this.count = 0;
    return this;
  }
  private slot(size: number, align = size): number {
    this.at = Math.ceil(this.at / align) * align;
    const o = this.at;
    this.offs[this.count++] = o;
    this.at += size;
    return o;
  }
  ptr(p: number): this {
    const o = this.slot(8);
    this.view.setUint32(o, p % 4294967296, true);
    this.view.setUint32(o + 4, Math.floor(p / 4294967296), true);
    return this;
  }
  u32(v: number): this {
    this.view.setUint32(this.slot(4), v >>> 0, true);
    return this;
  }
  i32(v: number): this {
    this.view.setInt32(this.slot(4), v | 0, true);
    return this;
  }
  f32(v: number): this {
    this.view.setFloat32(this.slot(4), v, true);
    return this;
  }
  /** A struct passed by value (e.g. a 128-byte CUtensorMap, aligned to 64). */
  raw(data: Uint8Array, align: number): this {
    this.bytes.set(data, this.slot(data.length, align));
    return this;
  }
  /** The Strided struct of native/kernels/common.cuh (4-byte fields, so 4-byte aligned). */
  strided(n: number, shape: readonly number[], flat: boolean, ops: { offset: number; strides: readonly number[] }[]): this {
    const o = this.slot(4);
    this.at = o;
    const w = (v: number) => {
      this.view.setInt32(this.at, v | 0, true);
      this.at += 4;
    };
    w(n);
    w(shape.length);
    w(flat ? 1 : 0);
    for (let d = 0; d < MAX_RANK; d++) w(shape[d] ?? 1);
    for (let k = 0; k < MAX_OPERANDS; k++) w(ops[k]?.offset ?? 0);
    for (let k = 0; k < MAX_OPERANDS; k++) for (let d = 0; d < MAX_RANK; d++) w(ops[k]?.strides[d] ?? 0);
    return this;
  }
  get data(): Uint8Array {
    return this.bytes.subarray(0, this.at);
  }
  get offsets(): Uint32Array {
    return this.offs.subarray(0, this.count);
  }
}
