import type { BlockLayout } from '../backend.ts';
import { opError } from '../errors.ts';

export const BLOCK_SIZES = [16, 32, 64, 128] as const;

export function checkBlockGeometry(op: string, rows: number, cols: number, blockSize: number): void {
  if (!(BLOCK_SIZES as readonly number[]).includes(blockSize)) {
    throw opError(op, `blockSize must be one of ${BLOCK_SIZES.join(', ')}, got ${blockSize}`);
  }
  for (const [name, v] of [
    ['rows', rows],
    ['cols', cols],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0 || v % blockSize !== 0) {
      throw opError(op, `${name} (${v}) must be a positive multiple of the block size ${blockSize}`);
    }
  }
}

/**
 * Builds every index the kernels need from block coordinates. Blocks are sorted into
 * block-row-major (CSR) order; `order[i]` tells which input coordinate became block i.
 */
export function buildLayout(
  rows: number,
  cols: number,
  blockSize: number,
  coords: readonly (readonly [number, number])[],
): { layout: BlockLayout; order: number[] } {
  const R = rows / blockSize;
  const C = cols / blockSize;
  const order = coords.map((_, i) => i).sort((a, b) => coords[a][0] - coords[b][0] || coords[a][1] - coords[b][1]);
  const nnz = coords.length;
  const rowIdx = new Int32Array(nnz);
  const colIdx = new Int32Array(nnz);
  order.forEach((src, i) => {
    const [r, c] = coords[src];
    if (!Number.isInteger(r) || !Number.isInteger(c) || r < 0 || r >= R || c < 0 || c >= C) {
      throw opError('BlockSparseMatrix', `block coordinate (${r}, ${c}) is outside the ${R} x ${C} block grid`);
    }
    if (i > 0 && r === rowIdx[i - 1] && c === colIdx[i - 1]) throw opError('BlockSparseMatrix', `block (${r}, ${c}) is listed twice`);
    rowIdx[i] = r;
    colIdx[i] = c;
  });
  const rowPtr = new Int32Array(R + 1);
  for (const r of rowIdx) rowPtr[r + 1]++;
  for (let r = 0; r < R; r++) rowPtr[r + 1] += rowPtr[r];
  const colPtr = new Int32Array(C + 1);
  for (const c of colIdx) colPtr[c + 1]++;
  for (let c = 0; c < C; c++) colPtr[c + 1] += colPtr[c];
  const fillPos = colPtr.slice(0, C);
  const cscBlock = new Int32Array(nnz);
  // CSR order visits rows ascending, so each column's list comes out sorted by row.
  for (let b = 0; b < nnz; b++) cscBlock[fillPos[colIdx[b]]++] = b;
  const cscRow = Int32Array.from(cscBlock, (b) => rowIdx[b]);
  const layout: BlockLayout = Object.freeze({ rows, cols, blockSize, nnzBlocks: nnz, rowPtr, colIdx, rowIdx, colPtr, cscBlock, cscRow });
  return { layout, order };
}

const transposed = new WeakMap<BlockLayout, BlockLayout>();

/**
 * The layout of W^T, cached per layout: its block s (CSR order) is W's block cscBlock[s]
 * transposed, since W's CSC order is W^T's CSR order. For kernels that run faster on the
 * transposed problem (a wide W's SDDMM instead of a tall one's).
 */
export function transposedLayout(layout: BlockLayout): BlockLayout {
  let t = transposed.get(layout);
  if (!t) {
    const coords = Array.from(layout.cscBlock, (b) => [layout.colIdx[b], layout.rowIdx[b]] as const);
    t = buildLayout(layout.cols, layout.rows, layout.blockSize, coords).layout;
    transposed.set(layout, t);
  }
  return t;
}

/**
 * Runs of at most `per` consecutive blocks of one block row, as (first block, count) pairs: the
 * work items of GPU SDDMM kernels that compute several blocks of a row at once (they share dY's
 * columns).
 */
export function blockRowRuns(layout: BlockLayout, per: number): Int32Array {
  return runs(layout.rowPtr, per);
}

/**
 * Runs of at most `per` consecutive blocks of one block column, as (first CSC position, count)
 * pairs: SDDMM work items whose blocks share X's columns instead (see blockRowRuns).
 */
export function blockColumnRuns(layout: BlockLayout, per: number): Int32Array {
  return runs(layout.colPtr, per);
}

/**
 * The lines of a CSR / CSC pointer array (block rows of rowPtr, block columns of colPtr) ordered
 * longest first, ties in index order. GPU kernels that give each (line, token tile) to one
 * workgroup launch the long lines first, so that the last workgroups to finish are short ones
 * (list scheduling with the longest jobs first ends with less idle hardware).
 */
export function linesLongestFirst(ptr: Int32Array): Int32Array {
  const lines = Array.from({ length: ptr.length - 1 }, (_, i) => i);
  lines.sort((a, b) => ptr[b + 1] - ptr[b] - (ptr[a + 1] - ptr[a]) || a - b);
  return Int32Array.from(lines);
}

function runs(ptr: Int32Array, per: number): Int32Array {
  const pairs: number[] = [];
  for (let r = 0; r + 1 < ptr.length; r++) {
    for (let e = ptr[r]; e < ptr[r + 1]; e += per) pairs.push(e, Math.min(per, ptr[r + 1] - e));
  }
  return Int32Array.from(pairs);
}

/**
 * The work table of union tiles (GPU kernels that multiply `group` block rows, or block columns,
 * at once and load each activation block once for all of them): groups of `group` block rows
 * (forward) or block columns (dX), `members` naming the block row (column) of each group's slots
 * (-1: an empty slot of the last group); per group the sorted union of the activation blocks they
 * touch (columns, resp. rows), and for each union entry the block of each member at that
 * position (-1: none). CSR over groups.
 *
 * Groups are consecutive members, or with `clustered` chosen greedily so that members share
 * their activation blocks: a group starts from the member with the most blocks left and adds the
 * member that widens its union least. Union tiles move each union entry's activation tile once
 * per group, so fewer entries are less traffic: for random 32x32 layouts of 128 block rows by 32
 * block columns, 14% / 22% / 29% fewer entries at density 0.5 / 0.25 / 0.1 (4-8% for 32 by 128).
 */
export function buildUnionTable(
  layout: BlockLayout,
  forward: boolean,
  group: number,
  clustered = false,
): { ptr: Int32Array; idx: Int32Array; blk: Int32Array; members: Int32Array } {
  const bs = layout.blockSize;
  const count = (forward ? layout.rows : layout.cols) / bs;
  // A member's blocks as (activation block, block) pairs.
  const entriesOf = (r: number): [number, number][] => {
    const [begin, end] = forward ? [layout.rowPtr[r], layout.rowPtr[r + 1]] : [layout.colPtr[r], layout.colPtr[r + 1]];
    const out: [number, number][] = [];
    for (let e = begin; e < end; e++) {
      const b = forward ? e : layout.cscBlock[e];
      out.push([forward ? layout.colIdx[b] : layout.rowIdx[b], b]);
    }
    return out;
  };
  const order = clustered ? clusterMembers(count, group, (r) => entriesOf(r).map(([other]) => other)) : [...Array(count).keys()];
  const ptr = [0];
  const idx: number[] = [];
  const blk: number[] = [];
  const members = new Int32Array(Math.ceil(count / group) * group).fill(-1);
  for (let g0 = 0; g0 < count; g0 += group) {
    const at = new Map<number, number[]>();
    for (let g = 0; g < group && g0 + g < count; g++) {
      const r = order[g0 + g];
      members[g0 + g] = r;
      for (const [other, b] of entriesOf(r)) {
        let slot = at.get(other);
        if (!slot) at.set(other, (slot = new Array<number>(group).fill(-1)));
        slot[g] = b;
      }
    }
    for (const other of [...at.keys()].sort((a, b) => a - b)) {
      idx.push(other);
      blk.push(...at.get(other)!);
    }
    ptr.push(idx.length);
  }
  return { ptr: Int32Array.from(ptr), idx: Int32Array.from(idx), blk: Int32Array.from(blk), members };
}

/**
 * A union table (buildUnionTable) with its groups reordered longest union first, ties in table
 * order; `members` moves with them, so a kernel must store through it. GPU kernels that hand out
 * (group, token tile) work in table order then end on short groups (see linesLongestFirst).
 */
export function unionGroupsLongestFirst(t: { ptr: Int32Array; idx: Int32Array; blk: Int32Array; members: Int32Array }): {
  ptr: Int32Array;
  idx: Int32Array;
  blk: Int32Array;
  members: Int32Array;
} {
  const group = t.members.length / (t.ptr.length - 1);
  const order = linesLongestFirst(t.ptr);
  const ptr = [0];
  const idx: number[] = [];
  const blk: number[] = [];
  const members = new Int32Array(t.members.length);
  order.forEach((g, i) => {
    for (let e = t.ptr[g]; e < t.ptr[g + 1]; e++) {
      idx.push(t.idx[e]);
      for (let j = 0; j < group; j++) blk.push(t.blk[e * group + j]);
    }
    ptr.push(idx.length);
    members.set(t.members.subarray(g * group, (g + 1) * group), i * group);
  });
  return { ptr: Int32Array.from(ptr), idx: Int32Array.from(idx), blk: Int32Array.from(blk), members };
}

/**
 * Members 0 .. count-1 ordered into groups of `group` (see buildUnionTable): greedy, deterministic.
 * Each group starts from the member with the most columns left and adds, `group - 1` times, the
 * member that widens the group's union least (the lowest index on ties). Columns are bitsets, so
 * a member's growth costs cols / 32 word operations instead of a set lookup per block: the
 * 16x16 forward table of a [16384, 4096] layout at density 0.5 took ~0.9 s with sets.
 */
function clusterMembers(count: number, group: number, columnsOf: (member: number) => number[]): number[] {
  const columns = Array.from({ length: count }, (_, r) => columnsOf(r));
  let width = 0;
  for (const cs of columns) for (const c of cs) width = Math.max(width, c + 1);
  const words = Math.ceil(width / 32);
  const bits = new Uint32Array(count * words);
  columns.forEach((cs, r) => cs.forEach((c) => (bits[r * words + (c >>> 5)] |= 1 << (c & 31))));
  const union = new Uint32Array(words);
  const taken = new Uint8Array(count);
  const order: number[] = [];
  while (order.length < count) {
    let seed = -1;
    for (let r = 0; r < count; r++) if (!taken[r] && (seed < 0 || columns[r].length > columns[seed].length)) seed = r;
    taken[seed] = 1;
    order.push(seed);
    union.set(bits.subarray(seed * words, (seed + 1) * words));
    for (let g = 1; g < group && order.length < count; g++) {
      let best = -1;
      let bestGrowth = Infinity;
      for (let r = 0; r < count && bestGrowth > 0; r++) {
        if (taken[r]) continue;
        let growth = 0;
        for (let w = 0; w < words; w++) growth += popcount(bits[r * words + w] & ~union[w]);
        if (growth < bestGrowth) [best, bestGrowth] = [r, growth];
      }
      taken[best] = 1;
      order.push(best);
      for (let w = 0; w < words; w++) union[w] |= bits[best * words + w];
    }
  }
  return order;
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** The fraction of the layout's blocks that are stored. */
/** What a layout's density (and the routes that depend on it) reads of it. */
export type LayoutShape = Pick<BlockLayout, 'rows' | 'cols' | 'blockSize' | 'nnzBlocks'>;

export function layoutDensity(layout: LayoutShape): number {
  const { rows, cols, blockSize: bs } = layout;
  return layout.nnzBlocks / ((rows / bs) * (cols / bs));
}

/** Limits of a 2-D SDDMM tile (see buildTileItems): block rows, block columns and blocks per item. */
export interface TileLimits {
  rows: number;
  cols: number;
  blocks: number;
}

/**
 * The work items of 2-D SDDMM tiles (GPU kernels that compute the blocks of `rows` consecutive
 * block rows and up to `cols` block columns at once, loading each operand slab once for every
 * block of its row or column): per group of block rows, the block columns its blocks use, in
 * order, cut into items of at most `cols` columns and `blocks` blocks, with about as many blocks
 * each (a small last item would reload the group's row slabs for a few blocks).
 * With `fill`, a group may instead be cut into items of exactly `blocks` blocks (a column's
 * blocks then split between two items, each loading its slab), where that takes fewer passes of
 * the kernel's thread slots: a kernel whose threads hold two blocks each (of `blocks` / 2 slots)
 * takes as long for an item of 17 blocks as for one of 32 (the CUDA fp32 kernel: ceil(b / 16)).
 * Each item is a record of `stride` ints: first block row, columns, blocks, 0, the columns' block
 * indexes [cols], the blocks' indexes in the layout [blocks], their positions row * cols + column
 * in the tile [blocks]; blocks in row-major order; unused entries 0.
 */
export function buildTileItems(layout: BlockLayout, limits: TileLimits, fill = false): { items: Int32Array; count: number; stride: number } {
  const { rows: perGroup, cols: maxCols, blocks: maxBlocks } = limits;
  if (perGroup > maxBlocks) throw new Error(`buildTileItems: ${perGroup} block rows per tile exceed its ${maxBlocks} blocks (a column must fit an item)`);
  const stride = 4 + maxCols + 2 * maxBlocks;
  const records: Int32Array[] = [];
  const blockRows = layout.rows / layout.blockSize;
  const passes = (items: Item[]) => items.reduce((n, it) => n + Math.ceil(it.length / (maxBlocks / 2)), 0);
  for (let r0 = 0; r0 < blockRows; r0 += perGroup) {
    // The group's blocks by column: block c holds [(row in group, block index)...].
    const byCol = new Map<number, [number, number][]>();
    for (let r = r0; r < Math.min(r0 + perGroup, blockRows); r++) {
      for (let e = layout.rowPtr[r]; e < layout.rowPtr[r + 1]; e++) {
        const c = layout.colIdx[e];
        if (!byCol.has(c)) byCol.set(c, []);
        byCol.get(c)!.push([r - r0, e]);
      }
    }
    const columns = [...byCol.keys()].sort((a, b) => a - b);
    if (columns.length === 0) continue;
    let items = cutByColumns(columns, byCol, maxCols, maxBlocks);
    if (fill) {
      const filled = cutFull(columns, byCol, maxCols, maxBlocks);
      if (passes(filled) < passes(items)) items = filled;
    }
    for (const item of items) {
      const cols = [...new Set(item.map(([c]) => c))];
      const rec = new Int32Array(stride);
      rec[0] = r0;
      rec[1] = cols.length;
      rec.set(cols, 4);
      const blocks = item.map(([c, row, e]) => [row * maxCols + cols.indexOf(c), e] as const).sort((a, b) => a[0] - b[0]);
      rec[2] = blocks.length;
      blocks.forEach(([pos, e], k) => {
        rec[4 + maxCols + k] = e;
        rec[4 + maxCols + maxBlocks + k] = pos;
      });
      records.push(rec);
    }
  }
  const items = new Int32Array(records.length * stride);
  records.forEach((r, i) => items.set(r, i * stride));
  return { items, count: records.length, stride };
}

/** An SDDMM tile item: its blocks as (column, row in group, block index), by column. */
type Item = [number, number, number][];

/** Whole columns per item, about as many blocks each (see buildTileItems). */
function cutByColumns(columns: number[], byCol: Map<number, [number, number][]>, maxCols: number, maxBlocks: number): Item[] {
  const total = columns.reduce((s, c) => s + byCol.get(c)!.length, 0);
  const target = Math.ceil(total / Math.max(Math.ceil(columns.length / maxCols), Math.ceil(total / maxBlocks)));
  const items: Item[] = [];
  let cur: Item = [];
  let ncols = 0;
  for (const c of columns) {
    const n = byCol.get(c)!.length;
    if (ncols > 0 && (ncols === maxCols || cur.length + n > maxBlocks || cur.length >= target)) {
      items.push(cur);
      [cur, ncols] = [[], 0];
    }
    for (const [row, e] of byCol.get(c)!) cur.push([c, row, e]);
    ncols++;
  }
  items.push(cur);
  return items;
}

/** Items of exactly `maxBlocks` blocks (but the last), a column split where an item fills up. */
function cutFull(columns: number[], byCol: Map<number, [number, number][]>, maxCols: number, maxBlocks: number): Item[] {
  const items: Item[] = [];
  let cur: Item = [];
  let ncols = 0;
  for (const c of columns) {
    if (ncols === maxCols) {
      items.push(cur);
      [cur, ncols] = [[], 0];
    }
    ncols++;
    for (const [row, e] of byCol.get(c)!) {
      if (cur.length === maxBlocks) {
        items.push(cur);
        [cur, ncols] = [[], 1];
      }
      cur.push([c, row, e]);
    }
  }
  if (cur.length > 0) items.push(cur);
  return items;
}
