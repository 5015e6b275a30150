/**
 * The block-sparse trio of the CUDA backend: launches what blocksparse-routes.ts chooses (its
 * launch shape, arguments and temporaries) and keeps the per-layout tables the kernels read on
 * the device, freed with the layout.
 */
import type { Backend, BlockLayout, MatmulPrecision } from '@sparsegrad/core';
import {
  LayoutDeviceCache,
  blockRowRuns,
  buildLayout,
  buildTileItems,
  buildUnionTable,
  orderBand,
  transposedLayout,
  unionGroupsLongestFirst,
  waveSplits,
  widened,
  type BackendBuffer,
  DTYPE_BYTES,
} from '@sparsegrad/core/backend';
import type { CudaBuffer } from '../allocator.ts';
import {
  type KernelConstants,
  type RouteContext,
  type SddmmRoute,
  type UnionKernel,
  orderBandTokens,
  halfProductRoute,
  halfSddmmRoute,
  productRoute,
  sddmmRoute,
} from '../blocksparse-routes.ts';
import { denseRoute } from '../dense-route.ts';
import type { Addon } from '../native.ts';
import { type CudaHost, P, THREADS } from './host.ts';

/** SDDMM line kernels run one block row by this many columns (several blocks of the row). */
const SDDMM_COLUMNS = 128;
/** TMA descriptors kept at most (see tensorMap). */
const MAX_MAPS = 1024;

export function blockSparseKernels(h: CudaHost): Pick<Backend, 'bsrMatmul' | 'bsrMatmulGradInput' | 'bsrSddmm'> {
  // Device copies of block layouts' indexes and work tables, freed with the layout.
  const layouts = new LayoutDeviceCache<CudaBuffer>((b) => h.free(b));
  const c = readConstants(h);
  const routeContext = (): RouteContext => ({ hopper: h.hopper, tuning: h.tuning(), constants: c });

  /**
   * The union table of a layout for the forward (groups of block rows) or dX (groups of block
   * columns); `clustered` groups members that share activation blocks (buildUnionTable).
   */
  function unionTable(layout: BlockLayout, forward: boolean, group: number, clustered: boolean, longestFirst: boolean): UnionTable {
    return layouts.get(layout, `union:${forward ? 'forward' : 'grad_input'}:${group}:${clustered}:${longestFirst}`, () => {
      const built = buildUnionTable(layout, forward, group, clustered);
      const host = longestFirst ? unionGroupsLongestFirst(built) : built;
      const t = { ptr: h.upload(host.ptr), idx: h.upload(host.idx), blk: h.upload(host.blk), members: h.upload(host.members), groups: host.ptr.length - 1 };
      return { value: t, buffers: [t.ptr, t.idx, t.blk, t.members] };
    });
  }

  /**
   * Forward (act = x) or dX (act = dY) on a union-tile kernel that reads k-contiguous weight rows:
   * dX passes the blocks transposed, and bf16 kernels get bf16 copies of float32 operands (`half`:
   * act, blocks and out are bfloat16 already, and only dX's blocks are copied, transposed). TMA
   * kernels read their operands through tensor maps, the others through pointers.
   */
  function launchUnionTiles(
    op: string,
    product: 'forward' | 'gradInput',
    act: number,
    blocks: number,
    layout: BlockLayout,
    m: number,
    out: BackendBuffer,
    k: UnionKernel,
    half = false,
  ): void {
    const forward = product === 'forward';
    const [actCols, outCols] = forward ? [layout.cols, layout.rows] : [layout.rows, layout.cols];
    // The TMA tensor-core kernels run groups of block rows (columns) that share activation blocks,
    // not consecutive ones: fewer union steps, 4-9% faster on the H100 (NOTES 34;
    // the tuning's unionCluster off groups consecutive rows).
    const clustered = !!k.tma && k.group > 1 && h.tuning().unionCluster;
    const tiles = tokenTiles(op, m, k.tokens);
    const band = k.ordered ? orderBand(orderBandTokens(layout.nnzBlocks / (outCols / 32)), k.tokens, tiles, h.tuning().bandTiles) : 0;
    const t = unionTable(layout, forward, k.group, clustered, band > 0);
    const temps: [number, number][] = [];
    const temp = (bytes: number) => {
      const b = h.allocator.alloc(bytes);
      temps.push([b, bytes]);
      return b;
    };
    let a = act;
    let w = blocks;
    if (half) {
      if (!forward) {
        w = temp(layout.nnzBlocks * 1024 * 2);
        h.launch(
          op,
          'blocks_bf16_to_bf16',
          [h.blocksFor(layout.nnzBlocks * 512), 1, 1],
          THREADS,
          h.args.reset().ptr(blocks).ptr(w).u32(layout.nnzBlocks).i32(1),
        );
      }
    } else if (k.bf16) {
      const actBf = temp(m * actCols * 2);
      const wBf = temp(layout.nnzBlocks * 1024 * 2);
      h.launch(
        op,
        'f32_to_bf16',
        [h.blocksFor((m * actCols) / 4), 1, 1],
        THREADS,
        h.args
          .reset()
          .ptr(a)
          .ptr(actBf)
          .u32((m * actCols) / 4),
      );
      h.launch(
        op,
        'blocks_to_bf16',
        [h.blocksFor(layout.nnzBlocks * 512), 1, 1],
        THREADS,
        h.args
          .reset()
          .ptr(w)
          .ptr(wBf)
          .u32(layout.nnzBlocks)
          .i32(forward ? 0 : 1),
      );
      [a, w] = [actBf, wBf];
    } else if (!forward) {
      const wT = temp(layout.nnzBlocks * 1024 * 4);
      h.launch(op, 'blocks_transpose_32', [h.blocksFor(layout.nnzBlocks, 1), 1, 1], THREADS, h.args.reset().ptr(w).ptr(wT).ptr(0).u32(layout.nnzBlocks));
      w = wT;
    }
    const grid: [number, number, number] = [t.groups, tiles, 1];
    if (k.tma) {
      const es = k.bf16 ? 2 : 4;
      const swizzle = 32 * es;
      const map = (ptr: number, inner: number, outer: number, boxOuter: number) => {
        try {
          return tensorMap(ptr, k.bf16 ? 1 : 0, inner, outer, inner * es, 32, boxOuter, swizzle);
        } catch (e) {
          throw new Error(`cuda: ${op}: ${(e as Error).message}`);
        }
      };
      h.launch(
        op,
        k.name,
        grid,
        k.threads ?? 384,
        h.args
          .reset()
          .raw(map(a, actCols, m, k.tokens), 64)
          .raw(map(w, 32, layout.nnzBlocks * 32, 32), 64)
          .ptr(t.ptr.ptr)
          .ptr(t.idx.ptr)
          .ptr(t.blk.ptr)
          .ptr(clustered || band > 0 ? t.members.ptr : 0)
          .ptr(P(out))
          .u32(m)
          .u32(outCols)
          .u32(Math.max(1, band)),
        k.smem,
      );
    } else {
      h.launch(
        op,
        k.name,
        grid,
        256,
        h.args.reset().ptr(a).ptr(w).ptr(t.ptr.ptr).ptr(t.idx.ptr).ptr(t.blk.ptr).ptr(P(out)).u32(m).u32(actCols).u32(outCols),
        k.smem,
      );
    }
    for (const [b, bytes] of temps) h.allocator.release(b, bytes);
  }
  /**
   * TMA descriptors by their arguments: one depends on nothing else, and a training step asks for
   * the same few dozen each step (the caching allocator hands out the same pointers), while
   * encoding one took ~5 us of host time on the H100 host. Bounded: cleared when it grows past
   * MAX_MAPS (pointers of freed buffers would otherwise accumulate).
   */
  const maps = new Map<string, Uint8Array>();
  const tensorMap: Addon['tensorMap'] = (ptr, bf16, inner, outer, rowStrideBytes, boxInner, boxOuter, swizzle) => {
    const key = `${ptr},${bf16},${inner},${outer},${rowStrideBytes},${boxInner},${boxOuter},${swizzle}`;
    let m = maps.get(key);
    if (!m) {
      if (maps.size >= MAX_MAPS) maps.clear();
      m = h.addon.tensorMap(ptr, bf16, inner, outer, rowStrideBytes, boxInner, boxOuter, swizzle);
      maps.set(key, m);
    }
    return m;
  };
  /**
   * A 64x64 layout as 32x32 sub-blocks (each block's four quadrants), and per sub-block where its
   * quadrant starts in the 64x64 blocks' data: the TMA kernels take 32x32 blocks, and the union
   * tiles then pair the two sub-rows of each block row, which share all their columns.
   */
  function splitLayout(layout: BlockLayout): { layout32: BlockLayout; source: CudaBuffer } {
    return layouts.get(layout, 'split32', () => {
      const { layout32, offsets } = quadrants(layout);
      const source = h.upload(offsets);
      return { value: { layout32, source }, buffers: [source] };
    });
  }
  /**
   * A 64x64 forward / dX on the 32x32 TMA kernels (the route's split64): a pass first copies each
   * block's quadrants into 32x32 blocks.
   */
  function launchSplit64(
    op: string,
    product: 'forward' | 'gradInput',
    act: BackendBuffer,
    blocks: BackendBuffer,
    layout: BlockLayout,
    m: number,
    out: BackendBuffer,
    k: UnionKernel,
    half = false,
  ): void {
    const { layout32, source } = splitLayout(layout);
    const bytes = layout.nnzBlocks * 4096 * DTYPE_BYTES[blocks.dtype];
    const split = h.allocator.alloc(bytes);
    h.launch(
      op,
      blocks.dtype === 'float32' ? 'blocks_split_64' : 'blocks_split_64_16',
      [h.blocksFor(layout32.nnzBlocks * 1024), 1, 1],
      THREADS,
      h.args.reset().ptr(P(blocks)).ptr(split).ptr(source.ptr).u32(layout32.nnzBlocks),
    );
    launchUnionTiles(op, product, P(act), split, layout32, m, out, k, half);
    h.allocator.release(split, bytes);
  }

  /** Device copies of a layout's index arrays, uploaded on first use. */
  function indexBuffers(layout: BlockLayout): LayoutIndex {
    return layouts.get(layout, 'index', () => {
      const index = {
        rowPtr: h.upload(layout.rowPtr),
        colIdx: h.upload(layout.colIdx),
        rowIdx: h.upload(layout.rowIdx),
        colPtr: h.upload(layout.colPtr),
        cscBlock: h.upload(layout.cscBlock),
      };
      return { value: index, buffers: Object.values(index) };
    });
  }
  /** Runs of at most `per` consecutive blocks of one block row, as (first block, count) pairs; cached per layout. */
  function sddmmGroups(layout: BlockLayout, per: number): { buffer: CudaBuffer; count: number } {
    const buffer = layouts.get(layout, `groups:${per}`, () => {
      const b = h.upload(blockRowRuns(layout, per));
      return { value: b, buffers: [b] };
    });
    return { buffer, count: buffer.size / 2 };
  }
  function tileItems(layout: BlockLayout): { buffer: CudaBuffer; count: number } {
    // Items filled to their block limit, splitting a column where whole columns would leave thread
    // slots idle (buildTileItems' `fill`): dW 4-10% faster at density 0.25-0.5 on the H100 (NOTES
    // 35; the tuning's sddmmFill off keeps columns whole).
    const fill = h.tuning().sddmmFill;
    return layouts.get(layout, `sddmm-tiles:${fill}`, () => {
      const t = buildTileItems(layout, c.sddmmTile.limits, fill);
      const buffer = h.upload(t.items.length ? t.items : new Int32Array(1));
      return { value: { buffer, count: t.count }, buffers: [buffer] };
    });
  }
  /** The partial sums of `used` token chunks land in a temporary; the column reduction sums them into out. */
  function sddmmLaunch(out: number, used: number, size: number, launch: (target: number) => void): void {
    const target = used > 1 ? h.allocator.alloc(used * size * 4) : out;
    launch(target);
    if (used > 1) {
      h.reduceF32('sum', target, 1, used, size, out);
      h.allocator.release(target, used * size * 4);
    }
  }

  /** Token tiles go on the grid's y dimension (at most 65535). */
  function tokenTiles(op: string, m: number, tile: number): number {
    const tiles = Math.ceil(m / tile);
    if (tiles > 65535) throw new Error(`cuda: ${op}: ${m} rows exceed the kernel's grid (at most ${65535 * tile})`);
    return tiles;
  }

  const dense = denseRoute({
    alloc: (size, dtype) => h.alloc(size, dtype),
    free: (b) => h.free(b),
    // Zero is zero bits in every dtype; 16-bit buffers are whole words (allocator).
    zero: (b, size) => h.addon.memset32(P(b), 0, Math.ceil((size * DTYPE_BYTES[b.dtype]) / 4)),
    matmul: (...a) => h.backend().matmul(...a),
    blocksDense(op, blocks, d, layout, toDense) {
      const size = layout.nnzBlocks * layout.blockSize ** 2;
      if (size === 0) return;
      const idx = indexBuffers(layout);
      h.launch(
        op,
        blocks.dtype === 'float32' ? 'bsr_blocks_dense' : 'bsr_blocks_dense_16',
        [h.blocksFor(size), 1, 1],
        THREADS,
        h.args
          .reset()
          .ptr(P(blocks))
          .ptr(P(d))
          .ptr(idx.rowIdx.ptr)
          .ptr(idx.colIdx.ptr)
          .u32(layout.nnzBlocks)
          .u32(layout.blockSize)
          .u32(layout.cols)
          .i32(toDense ? 1 : 0),
      );
    },
  });
  /** out [nnz, bs, bs] (device pointer) = (dy^T x) on the layout's blocks, by the kernels. */
  function sddmmKernels(dy: number, x: number, layout: BlockLayout, m: number, out: number, route: Exclude<SddmmRoute, { route: 'dense' }>): void {
    const { rows, cols, blockSize: bs, nnzBlocks: nnz } = layout;
    const size = nnz * bs * bs;
    if (route.route === 'tile') {
      const { sddmmTile } = c;
      const items = tileItems(layout);
      if (items.count === 0) return;
      // Token chunks for one CTA per multiprocessor (core's waveSplits): at most 16, of at least 256 tokens.
      const splits = waveSplits(items.count, m, h.sms, 256, 16);
      const chunk = Math.ceil(m / splits / sddmmTile.tokenStep) * sddmmTile.tokenStep;
      const used = Math.ceil(m / chunk);
      sddmmLaunch(out, used, size, (target) =>
        h.launch(
          'bsrSddmm',
          'bsr_sddmm_tile_f32_32',
          [items.count, used, 1],
          sddmmTile.threads,
          h.args.reset().ptr(dy).ptr(x).ptr(items.buffer.ptr).ptr(target).u32(m).u32(rows).u32(cols).u32(nnz).u32(chunk),
          sddmmTile.smem,
        ),
      );
      return;
    }
    const idx = indexBuffers(layout);
    const groups = sddmmGroups(layout, SDDMM_COLUMNS / bs);
    if (groups.count > 65535) throw new Error(`cuda: bsrSddmm: ${groups.count} block groups exceed the kernel's grid`);
    // Tokens are cut into chunks (partial sums, then a column reduction) until ~4 CTAs per SM run.
    const splits = Math.max(1, Math.min(Math.ceil((4 * h.sms) / groups.count), Math.floor(m / 256), 65535));
    const chunk = Math.ceil(m / splits / 16) * 16;
    const used = Math.ceil(m / chunk);
    const k = route.kernel;
    sddmmLaunch(out, used, size, (target) =>
      h.launch(
        'bsrSddmm',
        k.name,
        [groups.count, used, 1],
        128,
        h.args.reset().ptr(dy).ptr(x).ptr(idx.rowIdx.ptr).ptr(idx.colIdx.ptr).ptr(groups.buffer.ptr).ptr(target).u32(m).u32(rows).u32(cols).u32(nnz).u32(chunk),
        k.smem,
      ),
    );
  }

  /** Forward Y = X W^T (act = X) or dX = dY W (act = dY) by the route productRoute chooses. */
  function product(
    op: string,
    kind: 'forward' | 'gradInput',
    act: BackendBuffer,
    blocks: BackendBuffer,
    layout: BlockLayout,
    m: number,
    out: BackendBuffer,
    precision: MatmulPrecision,
  ): void {
    const forward = kind === 'forward';
    const route = productRoute(layout, kind, precision, routeContext());
    if (route.route === 'dense') {
      (forward ? dense.forward : dense.gradInput)(act, blocks, layout, m, out, precision);
      return;
    }
    if (route.route === 'union') {
      if (route.split64) launchSplit64(op, kind, act, blocks, layout, m, out, route.kernel);
      else launchUnionTiles(op, kind, P(act), P(blocks), layout, m, out, route.kernel);
      return;
    }
    // Line kernels: the forward walks block rows (CSR), dX block columns (CSC, with each block's row).
    const idx = indexBuffers(layout);
    const k = route.kernel;
    const a = h.args.reset().ptr(P(act)).ptr(P(blocks));
    if (forward) a.ptr(idx.rowPtr.ptr).ptr(idx.colIdx.ptr);
    else a.ptr(idx.colPtr.ptr).ptr(idx.cscBlock.ptr).ptr(idx.rowIdx.ptr);
    a.ptr(P(out)).u32(m).u32(layout.rows).u32(layout.cols);
    const lines = (forward ? layout.rows : layout.cols) / layout.blockSize;
    h.launch(op, k.name, [lines, tokenTiles(op, m, k.tokens), 1], 128, a, k.smem);
  }

  /**
   * A bfloat16 forward or dX (BF16_KERNELS): natively where halfProductRoute says so, else the
   * float32 route on widened copies, in 'medium' (exact on bf16 operands, as core's fallback).
   */
  function halfProduct(
    op: string,
    kind: 'forward' | 'gradInput',
    act: BackendBuffer,
    blocks: BackendBuffer,
    layout: BlockLayout,
    m: number,
    out: BackendBuffer,
  ): void {
    const route = halfProductRoute(layout, kind, routeContext());
    if (route.route === 'dense') (kind === 'forward' ? dense.forward : dense.gradInput)(act, blocks, layout, m, out, 'medium');
    else if (route.route === 'union' && route.split64) launchSplit64(op, kind, act, blocks, layout, m, out, route.kernel, true);
    else if (route.route === 'union') launchUnionTiles(op, kind, P(act), P(blocks), layout, m, out, route.kernel, true);
    else widened(h.backend(), (c) => product(op, kind, c.in(act), c.in(blocks), layout, m, c.out(out), 'medium'));
  }

  /** dW restricted to the blocks, by sddmmRoute (float32) or halfSddmmRoute (bfloat16). */
  function sddmm(dy: BackendBuffer, x: BackendBuffer, layout: BlockLayout, m: number, out: BackendBuffer, precision: MatmulPrecision): void {
    if (dy.dtype === 'bfloat16') {
      if (halfSddmmRoute(layout, routeContext()) === 'dense') dense.sddmm(dy, x, layout, m, out, 'medium');
      else widened(h.backend(), (c) => sddmm(c.in(dy), c.in(x), layout, m, c.out(out), 'medium'));
      return;
    }
    const route = sddmmRoute(layout, precision, routeContext());
    if (route.route === 'dense') {
      dense.sddmm(dy, x, layout, m, out, precision);
      return;
    }
    if (!route.transpose) {
      sddmmKernels(P(dy), P(x), layout, m, P(out), route);
      return;
    }
    // dW^T's blocks are the SDDMM of the swapped operands on W^T's layout (X^T dY), computed
    // there and transposed back into W's order: W^T's block s is W's block cscBlock[s].
    const bytes = layout.nnzBlocks * 1024 * 4;
    const blocksT = h.allocator.alloc(bytes);
    sddmmKernels(P(x), P(dy), transposedLayout(layout), m, blocksT, route);
    h.launch(
      'bsrSddmm',
      'blocks_transpose_32',
      [h.blocksFor(layout.nnzBlocks, 1), 1, 1],
      THREADS,
      h.args.reset().ptr(blocksT).ptr(P(out)).ptr(indexBuffers(layout).cscBlock.ptr).u32(layout.nnzBlocks),
    );
    h.allocator.release(blocksT, bytes);
  }

  return {
    bsrMatmul(x, blocks, layout, m, out, precision) {
      if (x.dtype === 'bfloat16') halfProduct('bsrMatmul', 'forward', x, blocks, layout, m, out);
      else product('bsrMatmul', 'forward', x, blocks, layout, m, out, precision);
    },
    bsrMatmulGradInput(dy, blocks, layout, m, out, precision) {
      if (dy.dtype === 'bfloat16') halfProduct('bsrMatmulGradInput', 'gradInput', dy, blocks, layout, m, out);
      else product('bsrMatmulGradInput', 'gradInput', dy, blocks, layout, m, out, precision);
    },
    bsrSddmm: sddmm,
  };
}

/** The launch constants the kernels define, from their setup kernels (one thread each writes a table). */
function readConstants(h: CudaHost): KernelConstants {
  const read = (kernel: string, count: number): Int32Array => {
    const table = h.allocator.alloc(count * 4);
    h.launch('setup', kernel, [1, 1, 1], 1, h.args.reset().ptr(table));
    const values = new Int32Array(h.addon.readSync(table, count * 4));
    h.allocator.release(table, count * 4);
    return values;
  };
  const union = read('bsr_union_params', 4);
  const bf16u = read('bsr_bf16u_params', 3);
  const tma = read('bsr_tma_params', 7);
  const tile = read('bsr_sddmm_tile_params', 7);
  return {
    tc: read('bsr_tc_smem', 21),
    union: { group: union[0], tokens: union[1], smem: [union[2], union[3]] },
    bf16Union: { group: bf16u[0], tokens: bf16u[1], smem: bf16u[2] },
    tma: { group: tma[0], tokens: tma[1], maxSteps: tma[2], smem: { tf32: tma[3], bf16: tma[4], f32: tma[5] }, f32Threads: tma[6] },
    sddmmTile: { limits: { rows: tile[0], cols: tile[1], blocks: tile[2] }, threads: tile[4], smem: tile[5], tokenStep: tile[6] },
  };
}

/**
 * A 64x64 layout's blocks as 32x32 quadrants: their layout (CSR order), and for each quadrant the
 * element offset where it starts in the 64x64 blocks' data (row stride 64).
 */
export function quadrants(layout: BlockLayout): { layout32: BlockLayout; offsets: Int32Array } {
  const coords: [number, number][] = [];
  for (let b = 0; b < layout.nnzBlocks; b++)
    for (const [a, c] of [
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
    ])
      coords.push([2 * layout.rowIdx[b] + a, 2 * layout.colIdx[b] + c]);
  const { layout: layout32, order } = buildLayout(layout.rows, layout.cols, 32, coords);
  // Input coordinate k is quadrant (a, c) = ((k >> 1) & 1, k & 1) of block k >> 2.
  const offsets = Int32Array.from(order, (k) => (k >> 2) * 4096 + ((k >> 1) & 1) * 32 * 64 + (k & 1) * 32);
  return { layout32, offsets };
}

type LayoutIndex = Record<'rowPtr' | 'colIdx' | 'rowIdx' | 'colPtr' | 'cscBlock', CudaBuffer>;
interface UnionTable {
  ptr: CudaBuffer;
  idx: CudaBuffer;
  blk: CudaBuffer;
  /** Each group slot's block row (column), -1 where none. */
  members: CudaBuffer;
  groups: number;
}
