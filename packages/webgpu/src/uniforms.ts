/**
 * A kernel's uniform words, named once: the WGSL side reads each name at its position and the
 * host side packs values in the same positions, so no position is written twice. Kernels declare
 * their words with `uniforms(...)` next to their WGSL; strided layouts use LAYOUT.
 */
import { type Param, u } from './context.ts';

export type WordType = 'u32' | 'i32' | 'f32';

export interface Uniforms<N extends string> {
  /** Each word's position in the uniform block. */
  readonly word: Readonly<Record<N, number>>;
  /** WGSL that binds every word to a `let` of its name (and type). */
  readonly lets: string;
  /** The words for a dispatch, in their positions: u32 unless the declaration typed them. */
  pack(values: Readonly<Record<N, number>>): Param[];
}

/** Per-element kernels (kernels/common.ts's perElement) read their element count from this word. */
export const COUNT_WORD = 0;

/** Words named in order from position 0; `types` marks the words that are not u32. */
export function uniforms<const N extends string>(names: readonly N[], types: Partial<Record<N, WordType>> = {}): Uniforms<N> {
  const word = Object.fromEntries(names.map((n, i) => [n, i])) as Record<N, number>;
  const kinds = names.map((n) => types[n] ?? 'u32');
  const reader = { u32: 'p', i32: 'pi', f32: 'pf' } as const;
  return {
    word,
    lets: names.map((n, i) => `let ${n} = ${reader[kinds[i]]}(${i}u);`).join(' '),
    // Every dispatch packs its words: the types are resolved once, above.
    pack(values) {
      return names.map((n, i) => {
        const v = values[n];
        return kinds[i] === 'u32' ? u(v) : kinds[i] === 'i32' ? { i32: v } : { f32: v };
      });
    },
  };
}

/** Dims of a merged strided layout (core's collapseDims leaves fewer for most views). */
export const MAX_RANK = 6;
/** Views a layout block holds at most (elementwise: three inputs; copies: source and destination). */
const MAX_VIEWS = 4;

/**
 * A merged strided layout (core's collapseDims) in the uniform block: word `count` the elements
 * (or work items), `rank`, the shape from `shape` (MAX_RANK words), then per view its offset and
 * MAX_RANK strides. Elementwise kernels pass their scalar operands from `scalars` on.
 */
export const LAYOUT = {
  count: COUNT_WORD,
  rank: 1,
  shape: 2,
  offset: (view: number) => 2 + MAX_RANK + view * (1 + MAX_RANK),
  stride: (view: number) => 3 + MAX_RANK + view * (1 + MAX_RANK),
  scalars: 40,
} as const;
if (LAYOUT.offset(MAX_VIEWS) > LAYOUT.scalars) throw new Error('webgpu: the layout block overlaps the scalar words');

/** The layout words of `views` over `shape` (the views only, not a contiguous output). */
export function layoutWords(op: string, count: number, shape: readonly number[], views: readonly { offset: number; strides: readonly number[] }[]): Param[] {
  if (shape.length > MAX_RANK) throw new Error(`webgpu: ${op}: views of rank ${shape.length} after merging dims are not supported (max ${MAX_RANK})`);
  if (views.length > MAX_VIEWS) throw new Error(`webgpu: ${op}: ${views.length} strided operands (max ${MAX_VIEWS})`);
  const words: Param[] = [];
  words[LAYOUT.count] = u(count);
  words[LAYOUT.rank] = u(shape.length);
  for (let d = 0; d < MAX_RANK; d++) words[LAYOUT.shape + d] = u(shape[d] ?? 1);
  views.forEach((v, j) => {
    words[LAYOUT.offset(j)] = u(v.offset);
    for (let d = 0; d < MAX_RANK; d++) words[LAYOUT.stride(j) + d] = u(v.strides[d] ?? 0);
  });
  return words;
}
