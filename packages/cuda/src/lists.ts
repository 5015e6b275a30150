/**
 * Tensor lists for the list kernels of native/kernels/elementwise.cu (AdamList, ScaleList,
 * SumList): arrays of LIST_MAX pointers, then arrays of LIST_MAX u32 sizes, passed by value. A
 * longer list goes in several launches of at most LIST_MAX tensors.
 */
export const LIST_MAX = 48;

/** The struct bytes for one launch: each pointer array, then each u32 array, LIST_MAX entries each (unused ones zero). */
export function listStruct(pointers: readonly (readonly number[])[], words: readonly (readonly number[])[]): Uint8Array {
  const bytes = new Uint8Array((pointers.length * 8 + words.length * 4) * LIST_MAX);
  const view = new DataView(bytes.buffer);
  pointers.forEach((arr, a) => {
    if (arr.length > LIST_MAX) throw new Error(`cuda: a tensor list holds at most ${LIST_MAX} tensors, got ${arr.length}`);
    arr.forEach((p, i) => {
      const o = (a * LIST_MAX + i) * 8;
      view.setUint32(o, p % 4294967296, true);
      view.setUint32(o + 4, Math.floor(p / 4294967296), true);
    });
  });
  const base = pointers.length * 8 * LIST_MAX;
  words.forEach((arr, a) => arr.forEach((w, i) => view.setUint32(base + (a * LIST_MAX + i) * 4, w >>> 0, true)));
  return bytes;
}

/** Splits `items` into launches of at most LIST_MAX. */
export function listChunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += LIST_MAX) out.push(items.slice(i, i + LIST_MAX));
  return out;
}
