/**
 * The block-sparse trio of the WebGPU backend (forward Y = X W^T, dX = dY W, dW = dY^T X on W's
 * blocks): which tile kind and shape a product runs (tiles.ts holds the shapes and the rules, each
 * citing its H100 measurement), the WGSL from gemm.ts's generator, and the per-layout index and
 * work tables on the device, freed with the layout.
 */
import type { Backend, BlockLayout } from '@sparsegrad/core';
import { LayoutDeviceCache, blockColumnRuns, blockRowRuns, buildUnionTable, linesLongestFirst, orderBand, type BackendBuffer } from '@sparsegrad/core/backend';
import { G, type GpuBuffer, type GpuContext, MAX_GROUPS_X } from '../context.ts';
import { gemmKernel, tileCols, tileRows, type GemmShape } from '../gemm.ts';
import { SDDMM_MIN_CHUNK, bsrShape, fitShape, orderBandTokens, sddmmShape, shapeKey, tuned, unionShape, useUnionTiles } from '../tiles.ts';
import { uniforms } from '../uniforms.ts';
import { PARAMS } from '../wgsl.ts';

/** What the block-sparse kernels need from the backend besides the context. */
export interface BlockSparseHost {
  /** out [size] = the sum of `parts` consecutive [size] partial results in `partials`. */
  sumPartials(partials: GpuBuffer, parts: number, size: number, out: BackendBuffer): void;
}

export function blockSparseKernels(ctx: GpuContext, host: BlockSparseHost): Pick<Backend, 'bsrMatmul' | 'bsrMatmulGradInput' | 'bsrSddmm'> {
  const pipe = ctx.pipeline.bind(ctx);
  // Device copies of block layouts' indexes and work tables, freed with the layout.
  const layouts = new LayoutDeviceCache<GpuBuffer>((b) => ctx.free(b));
  const fit = (shape: GemmShape) => fitShape(shape, ctx.device.limits.maxComputeWorkgroupStorageSize);
  /**
   * Tiles of the block-sparse forward and dX; vec4 loads measured faster on an H100 for 32x32 and
   * 64x64 blocks, slower for 16x16. Those two also run the `straight` loop (gemm.ts; NOTES 45: on
   * an H100 at density 0.5 the 64x64 forward 1.72 -> 1.64 ms, 32x32 dX 2.04 -> 1.85; 16x16 at 0.1
   * lost, 0.82 -> 0.86). The tuning's straightLoop off keeps the default loop.
   */
  const bsrTiles = (bs: number) => {
    const shape = fit(tuned(`bsr${bs}`, ctx.tuning.tiles) ?? bsrShape(bs));
    // A tuned shape (the tuning's tiles) must keep the tile one block wide.
    if (tileCols(shape) !== bs)
      throw new Error(`webgpu: block-sparse product: tile shape ${shapeKey(shape)} is ${tileCols(shape)} columns wide; a ${bs}x${bs} block needs ${bs}`);
    return { shape, vec: bs !== 16, straight: bs !== 16 && ctx.tuning.straightLoop };
  };

  return {
    bsrMatmul(x, blocks, layout, m, out) {
      if (unionProduct('bsrMatmul', true, x, blocks, layout, m, out)) return;
      const idx = indexBuffers(layout);
      const bs = layout.blockSize;
      const { shape, vec, straight } = bsrTiles(bs);
      const pipeline = pipe(
        `bsrMatmul|${bs}|${shapeKey(shape)}|${vec}|${straight}`,
        () =>
          `${PARAMS}\n${gemmKernel({
            shape,
            straight,
            aContiguous: 'k',
            bContiguous: 'k',
            kChecked: false,
            a: 'X',
            b: 'W',
            aVec: vec,
            bVec: vec,
            bindings: `@group(0) @binding(1) var<storage, read> X: array<${vec ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(2) var<storage, read> W: array<${vec ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(3) var<storage, read> rowPtr: array<i32>;
@group(0) @binding(4) var<storage, read> colIdx: array<i32>;
@group(0) @binding(5) var<storage, read_write> Y: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> Order: array<i32>;`,
            setup: `${LINE_WORDS.lets} let bs = ${bs}u; ${orderedTile('br', 'rows / bs', tileRows(shape))} let n0 = 0u; let N = bs;
  let L = bs; let aRS = cols; let aKS = 1u; let bKS = 1u; let bNS = bs;`,
            segBegin: 'u32(rowPtr[br])',
            segEnd: 'u32(rowPtr[br + 1u])',
            segment: `aBase = m0 * cols + u32(colIdx[s]) * bs; bBase = s * bs * bs;`,
            storeVec4: (r, c, v) => `Y[((m0 + ${r}) * rows + br * bs + ${c}) / 4u] = ${v};`,
          })}`,
      );
      const order = workOrder(layout, true, m, tileRows(shape));
      tokenTiles(m, tileRows(shape), (first, count) =>
        ctx.dispatchGrid(
          'bsrMatmul',
          pipeline,
          [G(x), G(blocks), idx.rowPtr, idx.colIdx, G(out), order.lines],
          LINE_WORDS.pack({ M: m, rows: layout.rows, cols: layout.cols, firstTile: first, tiles: count, bandTiles: order.band }),
          [layout.rows / bs, count, 1],
        ),
      );
    },
    bsrMatmulGradInput(dy, blocks, layout, m, out) {
      if (unionProduct('bsrMatmulGradInput', false, dy, blocks, layout, m, out)) return;
      const idx = indexBuffers(layout);
      const bs = layout.blockSize;
      const { shape, vec, straight } = bsrTiles(bs);
      const pipeline = pipe(
        `bsrMatmulGradInput|${bs}|${shapeKey(shape)}|${vec}|${straight}`,
        () =>
          `${PARAMS}\n${gemmKernel({
            shape,
            straight,
            aContiguous: 'k',
            bContiguous: 'n',
            kChecked: false,
            a: 'D',
            b: 'W',
            aVec: vec,
            bVec: vec,
            bindings: `@group(0) @binding(1) var<storage, read> D: array<${vec ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(2) var<storage, read> W: array<${vec ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(3) var<storage, read> colPtr: array<i32>;
@group(0) @binding(4) var<storage, read> cscBlock: array<i32>;
@group(0) @binding(5) var<storage, read> cscRow: array<i32>;
@group(0) @binding(6) var<storage, read_write> Y: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> Order: array<i32>;`,
            setup: `${LINE_WORDS.lets} let bs = ${bs}u; ${orderedTile('bc', 'cols / bs', tileRows(shape))} let n0 = 0u; let N = bs;
  let L = bs; let aRS = rows; let aKS = 1u; let bKS = bs; let bNS = 1u;`,
            segBegin: 'u32(colPtr[bc])',
            segEnd: 'u32(colPtr[bc + 1u])',
            // cscRow[s], not rowIdx[blk]: two independent loads per block instead of two dependent ones
            // (2% on dX of 32x32 blocks at density 0.5, NOTES 18).
            segment: `{ let blk = u32(cscBlock[s]); aBase = m0 * rows + u32(cscRow[s]) * bs; bBase = blk * bs * bs; }`,
            storeVec4: (r, c, v) => `Y[((m0 + ${r}) * cols + bc * bs + ${c}) / 4u] = ${v};`,
          })}`,
      );
      const order = workOrder(layout, false, m, tileRows(shape));
      tokenTiles(m, tileRows(shape), (first, count) =>
        ctx.dispatchGrid(
          'bsrMatmulGradInput',
          pipeline,
          [G(dy), G(blocks), idx.colPtr, idx.cscBlock, idx.cscRow, G(out), order.lines],
          LINE_WORDS.pack({ M: m, rows: layout.rows, cols: layout.cols, firstTile: first, tiles: count, bandTiles: order.band }),
          [layout.cols / bs, count, 1],
        ),
      );
    },
    bsrSddmm(dy, x, layout, m, out) {
      const { rows, cols, blockSize: bs, nnzBlocks: nnz } = layout;
      // A workgroup computes up to G blocks of one block row (sharing dY's columns, so each dY
      // value loaded serves G blocks) or of one block column (sharing X's columns), over one chunk
      // of the tokens; see sddmmPlan for which. With few groups the tokens are split further
      // (partial sums, then one reduction) so the GPU has enough work.
      const { shape, byColumn, groups, count: ng } = sddmmPlan(layout);
      // The target is the tuning's sddmmGroups (tiles.ts: SDDMM_MIN_CHUNK).
      const target = ctx.tuning.sddmmGroups;
      // The partial sums are one storage binding: no more chunks than the device's binding limit holds.
      const bindable = Math.floor(ctx.device.limits.maxStorageBufferBindingSize / (nnz * bs * bs * 4));
      const splits = Math.max(1, Math.min(Math.ceil(target / ng), Math.floor(m / SDDMM_MIN_CHUNK), bindable));
      const chunk = Math.ceil(m / splits / shape.bk) * shape.bk;
      const used = Math.max(1, Math.ceil(m / chunk));
      const idx = indexBuffers(layout);
      // Rows: A(i, t) = dY[t, row block + i], B(t, j) = X[t, the j-th block's column block + j % bs],
      // the product is the blocks themselves. Columns: A = X's columns of the block column, B = dY's
      // columns of each block's row, the product is the blocks transposed (stored 4 rows at a time).
      // Chunks are multiples of the k-step, so only a token count that is not needs k checked:
      // the checks cost 3% of dW at density 0.25 on an H100 (NOTES 46).
      const kChecked = m % shape.bk !== 0;
      const pipeline = pipe(
        `bsrSddmm|${bs}|${shapeKey(shape)}|${byColumn ? 'col' : 'row'}|${kChecked}`,
        () =>
          `${PARAMS}\n${gemmKernel({
            shape,
            aContiguous: 'm',
            bContiguous: 'n',
            kChecked,
            bUnguarded: true,
            a: byColumn ? 'X' : 'D',
            b: byColumn ? 'D' : 'X',
            aVec: true,
            bVec: true,
            bindings: `@group(0) @binding(1) var<storage, read> D: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> rowIdx: array<i32>;
@group(0) @binding(4) var<storage, read> colIdx: array<i32>;
@group(0) @binding(5) var<storage, read> Groups: array<i32>;
@group(0) @binding(6) var<storage, read_write> Y: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> cscBlock: array<i32>;`,
            setup: `${SDDMM_WORDS.lets} let bs = ${bs}u;
  let grp = wg.x + wg.z * ${MAX_GROUPS_X}u; let split = wg.y; let t0 = split * chunk;
  if (grp >= ng) { return; }
  let first = u32(Groups[2u * grp]); let M = bs; let N = u32(Groups[2u * grp + 1u]) * bs; let m0 = 0u; let n0 = 0u;
  let L = min(chunk, tokens - t0); let aRS = 1u; ${byColumn ? 'let aKS = cols; let bKS = rows;' : 'let aKS = rows; let bKS = cols;'} let bNS = 1u;`,
            segBegin: '0u',
            segEnd: '1u',
            segment: byColumn
              ? `aBase = t0 * cols + u32(colIdx[cscBlock[first]]) * bs; bBase = t0 * rows;`
              : `aBase = t0 * rows + u32(rowIdx[first]) * bs; bBase = t0 * cols;`,
            // Columns past the group's last block load another block's values (bUnguarded; never
            // stored); the clamp keeps their offsets in range.
            bColumn: (c) =>
              byColumn
                ? `u32(rowIdx[cscBlock[min(first + ${c} / bs, nnz - 1u)]]) * bs + ${c} % bs`
                : `u32(colIdx[min(first + ${c} / bs, nnz - 1u)]) * bs + ${c} % bs`,
            ...(byColumn
              ? {
                  storeVec4Rows: (r: string, c: string, v: string) =>
                    `Y[(((split * nnz + u32(cscBlock[first + ${c} / bs])) * bs + ${c} % bs) * bs + ${r}) / 4u] = ${v};`,
                }
              : { storeVec4: (r: string, c: string, v: string) => `Y[(((split * nnz + first + ${c} / bs) * bs + ${r}) * bs + ${c} % bs) / 4u] = ${v};` }),
          })}`,
      );
      const partials = used === 1 ? G(out) : ctx.alloc(used * nnz * bs * bs, 'float32');
      const gx = Math.min(ng, MAX_GROUPS_X);
      ctx.dispatchGrid(
        'bsrSddmm',
        pipeline,
        [G(dy), G(x), idx.rowIdx, idx.colIdx, groups, partials, idx.cscBlock],
        SDDMM_WORDS.pack({ tokens: m, rows, cols, nnz, chunk, ng }),
        [gx, used, Math.ceil(ng / gx)],
      );
      if (used > 1) {
        host.sumPartials(partials, used, nnz * bs * bs, out);
        ctx.free(partials);
      }
    },
  };

  /**
   * Forward Y = X W^T (act = X, groups of block rows) or dX = dY W (act = dY, groups of block
   * columns) on union tiles: a workgroup computes 128 tokens of `group` block rows (columns), by
   * default grouped by the blocks they share, over the union of the activation blocks they touch, loading each activation tile
   * once for all of them; the bands of absent blocks skip their multiply-adds. Returns false
   * (nothing launched) where union tiles do not pay (see useUnionTiles).
   */
  function unionProduct(op: string, forward: boolean, act: BackendBuffer, blocks: BackendBuffer, layout: BlockLayout, m: number, out: BackendBuffer): boolean {
    const bs = layout.blockSize;
    const shape = fit(tuned(`union${forward ? '' : 'GradInput'}${bs}`, ctx.tuning.tiles) ?? unionShape(forward));
    const width = tileCols(shape);
    // A union tile holds whole blocks: blocks wider than it (128x128 in dX's 64-wide tile) always
    // take the one-block-wide tiles, even where the tuning forces union tiles on.
    if (width % bs !== 0) return false;
    const group = width / bs;
    // The table is built (and uploaded) only where union tiles may run: 16x16 blocks, or forced.
    let cached: ReturnType<typeof unionTable> | undefined;
    // Groups of block rows (columns) that share activation blocks instead of consecutive ones
    // (buildUnionTable): fewer union steps, 16x16 blocks 5-13% faster at density 0.25-0.5 on the
    // H100 (NOTES 15; the tuning's unionCluster off groups consecutive rows).
    const clustered = ctx.tuning.unionCluster;
    const tableFor = () => (cached ??= unionTable(layout, forward, group, clustered));
    if (!useUnionTiles(bs, () => layout.nnzBlocks / Math.max(1, tableFor().entries * group), ctx.tuning.unionTiles)) return false;
    const table = tableFor();
    // Forward: B(k, n) = W[n][k] of the band's block (k-contiguous); dX: B(k, n) = W[k][n].
    // vec4 output stores for dX only: on an H100 (16x16 blocks, NOTES 23) they took the union dX
    // from 2.74 to 2.68 ms at density 0.5 and 0.87 -> 0.73 at 0.1, but the union forward from
    // 2.47 to 3.27 (not understood: the compiled shader cannot be inspected here).
    const v4 = !forward;
    const pipeline = pipe(
      `${op}|union|${bs}|${shapeKey(shape)}|${v4}`,
      () =>
        `${PARAMS}\n${gemmKernel({
          shape,
          aContiguous: 'k',
          bContiguous: forward ? 'k' : 'n',
          kChecked: false,
          a: 'A',
          b: 'W',
          aVec: true,
          bVec: true,
          bindings: `@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> W: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> Ptr: array<i32>;
@group(0) @binding(4) var<storage, read> Idx: array<i32>;
@group(0) @binding(5) var<storage, read> Blk: array<i32>;
@group(0) @binding(6) var<storage, read_write> Y: array<${v4 ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(7) var<storage, read> Mem: array<i32>;`,
          // k runs over the activation's features, outputs are `outs` wide; grid x = groups; a
          // group's slot g stores to block row (column) Mem[grp * group + g].
          setup: `${UNION_WORDS.lets} let grp = wg.x; let m0 = (wg.y + firstTile) * ${tileRows(shape)}u; let n0 = 0u;
  let N = min(${width}u, outs - grp * ${width}u); let L = ${bs}u; let aRS = feats; let aKS = 1u; let bKS = ${forward ? 1 : bs}u; let bNS = 0u;`,
          segBegin: 'u32(Ptr[grp])',
          segEnd: 'u32(Ptr[grp + 1u])',
          segment: `aBase = m0 * feats + u32(Idx[s]) * ${bs}u; bBase = 0u;`,
          bColumn: (c) => `u32(max(Blk[s * ${group}u + ${c} / ${bs}u], 0)) * ${bs * bs}u + (${c} % ${bs}u)${forward ? ` * ${bs}u` : ''}`,
          bColumnLive: (c) => `Blk[s * ${group}u + ${c} / ${bs}u] >= 0`,
          bands: { width: bs, live: `Blk[s * ${group}u + band] >= 0` },
          ...(v4
            ? {
                storeVec4: (r: string, c: string, v: string) =>
                  `Y[((m0 + ${r}) * outs + u32(Mem[grp * ${group}u + ${c} / ${bs}u]) * ${bs}u + ${c} % ${bs}u) / 4u] = ${v};`,
              }
            : {
                store: (r: string, c: string, v: string) =>
                  `Y[(m0 + ${r}) * outs + u32(Mem[grp * ${group}u + ${c} / ${bs}u]) * ${bs}u + ${c} % ${bs}u] = ${v};`,
              }),
        })}`,
    );
    const [outs, feats] = forward ? [layout.rows, layout.cols] : [layout.cols, layout.rows];
    tokenTiles(m, tileRows(shape), (first, count) =>
      ctx.dispatchGrid(
        op,
        pipeline,
        [G(act), G(blocks), table.ptr, table.idx, table.blk, G(out), table.members],
        UNION_WORDS.pack({ M: m, outs, feats, firstTile: first }),
        [table.groups, count, 1],
      ),
    );
    return true;
  }

  /** A layout's union table (see buildUnionTable) on the device; cached per layout. */
  function unionTable(
    layout: BlockLayout,
    forward: boolean,
    group: number,
    clustered: boolean,
  ): { ptr: GpuBuffer; idx: GpuBuffer; blk: GpuBuffer; members: GpuBuffer; groups: number; entries: number } {
    return layouts.get(layout, `union:${forward}:${group}:${clustered}`, () => {
      const t = buildUnionTable(layout, forward, group, clustered);
      // An empty table still needs a buffer to bind.
      const nonEmpty = (a: Int32Array) => upload(a.length ? a : new Int32Array(1));
      const value = {
        ptr: upload(t.ptr),
        idx: nonEmpty(t.idx),
        blk: nonEmpty(t.blk),
        members: nonEmpty(t.members),
        groups: t.ptr.length - 1,
        entries: t.idx.length,
      };
      return { value, buffers: [value.ptr, value.idx, value.blk, value.members] };
    });
  }

  /**
   * The SDDMM's work items for a layout: runs of up to G blocks of one block row, or of one block
   * column where W is taller than wide (its block columns are then the longer lines, so fewer
   * runs end part-filled; an empty slot's multiply-adds are still done). On an H100 (NOTES 22),
   * dW of W [4096, 1024] by columns: 32x32 at density 0.5 2.03 -> 1.98 ms, 0.25 1.11 -> 1.07, 0.1
   * 0.50 -> 0.48, 16x16 at 0.1 0.79 -> 0.65; W [1024, 4096] by columns lost as much the other
   * way (32x32 at 0.25 1.04 -> 1.15). The tuning's sddmmAxis may force one (tests,
   * benchmarks). Cached per layout.
   */
  function sddmmPlan(layout: BlockLayout): { shape: GemmShape; byColumn: boolean; groups: GpuBuffer; count: number } {
    const bs = layout.blockSize;
    const forced = ctx.tuning.sddmmAxis;
    const tiles = ctx.tuning.tiles;
    return layouts.get(layout, `sddmm:${forced}:${tiles}`, () => {
      const byColumn = forced === 'row' || forced === 'column' ? forced === 'column' : layout.rows > layout.cols;
      const lines = (byColumn ? layout.cols : layout.rows) / bs;
      const shape = fit(tuned(`sddmm${bs}`, tiles) ?? sddmmShape(bs, layout.nnzBlocks / lines));
      if (tileRows(shape) !== bs)
        throw new Error(`webgpu: bsrSddmm: tile shape ${shapeKey(shape)} is ${tileRows(shape)} rows tall; a ${bs}x${bs} block needs ${bs}`);
      const runs = (byColumn ? blockColumnRuns : blockRowRuns)(layout, tileCols(shape) / bs);
      const groups = upload(runs);
      return { value: { shape, byColumn, groups, count: runs.length / 2 }, buffers: [groups] };
    });
  }

  /**
   * The order in which the one-block-wide forward (lines = block rows) and dX (block columns)
   * hand out their (line, token tile) work: in bands of token tiles (orderBand), each band's lines
   * longest first, so that the workgroups still running at the end of the grid are short ones
   * and the band's activation tiles stay in L2. Band 0 is the plain order: lines in index order
   * within one token tile. The line table is cached per layout.
   */
  function workOrder(layout: BlockLayout, forward: boolean, m: number, tileTokens: number): { lines: GpuBuffer; band: number } {
    const band = orderBand(orderBandTokens(layout.blockSize), tileTokens, Math.ceil(m / tileTokens), ctx.tuning.bandTiles);
    const lines = layouts.get(layout, `order:${forward}:${band > 0}`, () => {
      const ptr = forward ? layout.rowPtr : layout.colPtr;
      const b = upload(band > 0 ? linesLongestFirst(ptr) : Int32Array.from({ length: ptr.length - 1 }, (_, i) => i));
      return { value: b, buffers: [b] };
    });
    return { lines, band: Math.max(1, band) };
  }

  /** Device copies of a layout's index arrays, uploaded on first use. */
  function indexBuffers(layout: BlockLayout): LayoutIndex {
    return layouts.get(layout, 'index', () => {
      const index = {
        rowPtr: upload(layout.rowPtr),
        colIdx: upload(layout.colIdx),
        rowIdx: upload(layout.rowIdx),
        colPtr: upload(layout.colPtr),
        cscBlock: upload(layout.cscBlock),
        cscRow: upload(layout.cscRow),
      };
      return { value: index, buffers: Object.values(index) };
    });
  }

  function upload(a: Int32Array): GpuBuffer {
    const b = ctx.alloc(a.length, 'int32');
    ctx.upload(b, a);
    return b;
  }
}

/** Splits `m` tokens into dispatches of at most MAX_GROUPS_X tiles along the grid's y dimension. */
function tokenTiles(m: number, tile: number, dispatch: (first: number, count: number) => void): void {
  const tiles = Math.ceil(m / tile);
  for (let first = 0; first < tiles; first += MAX_GROUPS_X) dispatch(first, Math.min(MAX_GROUPS_X, tiles - first));
}

type LayoutIndex = Record<'rowPtr' | 'colIdx' | 'rowIdx' | 'colPtr' | 'cscBlock' | 'cscRow', GpuBuffer>;

/**
 * The one-block-wide forward's and dX's words: Y [M, rows] = X [M, cols] W^T (dX the other way),
 * and the dispatch's token tiles: `tiles` from `firstTile`, `bandTiles` per band of workOrder.
 */
const LINE_WORDS = uniforms(['M', 'rows', 'cols', 'firstTile', 'tiles', 'bandTiles']);
/** The SDDMM's words: dY [tokens, rows], X [tokens, cols], nnz blocks, tokens per chunk, `ng` groups. */
const SDDMM_WORDS = uniforms(['tokens', 'rows', 'cols', 'nnz', 'chunk', 'ng']);
/** The union tiles' words: M tokens, `outs` outputs from `feats` activation features, the dispatch's first token tile. */
const UNION_WORDS = uniforms(['M', 'outs', 'feats', 'firstTile']);

/**
 * WGSL of the one-block-wide kernels' setup: the workgroup's line `name` (a block row or column)
 * and first token m0, from its grid position (x = lines, y = token tiles of this dispatch) in
 * the banded order of workOrder (LINE_WORDS' firstTile, tiles and bandTiles); Order holds the
 * lines longest first.
 */
function orderedTile(name: string, lines: string, tokens: number): string {
  return `let oLines = ${lines}; let oUnit = wg.y * oLines + wg.x;
  let oFirst = oUnit / (bandTiles * oLines) * bandTiles; let oIn = oUnit % (bandTiles * oLines); let oWidth = min(bandTiles, tiles - oFirst);
  let ${name} = u32(Order[oIn / oWidth]); let m0 = (oFirst + oIn % oWidth + firstTile) * ${tokens}u;`;
}
