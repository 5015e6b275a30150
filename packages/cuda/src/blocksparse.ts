/**
 * The block-sparse trio of the CUDA backend: which kernel a product runs (fp32 FMA for 'highest',
 * tensor cores otherwise, with union tiles and bf16 operands where they measured faster), its
 * launch shape and arguments, and the per-layout tables the kernels read. Each kernel-choice rule
 * cites the H100 measurement behind it.
 */
import type { CudaTuning } from './tuning.ts';
import type { Backend, BlockLayout, MatmulPrecision } from '@sparsegrad/core';
import {
  LayoutDeviceCache,
  blockRowRuns,
  buildLayout,
  buildTileItems,
  buildUnionTable,
  layoutDensity,
  transposedLayout,
  unionGroupsLongestFirst,
  waveSplits,
  type BackendBuffer,
} from '@sparsegrad/core/backend';
import type { CachingAllocator, CudaBuffer } from './allocator.ts';
import type { Args } from './args.ts';
import { denseRoute, takesDenseRoute } from './dense-route.ts';
import type { Addon } from './native.ts';

/** What the block-sparse products need from the backend. */
export interface KernelHost {
  addon: Addon;
  allocator: CachingAllocator;
  args: Args;
  sms: number;
  /** Compute capability 9.0: the sm_90a kernels (wgmma) run. */
  hopper: boolean;
  /** The routes in use (tuning.ts). */
  tuning(): Readonly<CudaTuning>;
  launch(op: string, kernel: string, grid: [number, number, number], threads: number, a: Args, sharedBytes?: number): void;
  upload(data: Int32Array): CudaBuffer;
  free(b: BackendBuffer): void;
  ptr(b: BackendBuffer): number;
  /** Blocks for a grid-stride loop over n items. */
  blocksFor(n: number, perBlock?: number): number;
  /** out [outer, inner] = x [outer, n, inner] summed over n (device pointers). */
  sumMiddle(x: number, outer: number, n: number, inner: number, out: number): void;
  /** The backend's own: the dense route (dense-route.ts) runs through them. */
  alloc(size: number): BackendBuffer;
  fill: Backend['fill'];
  matmul: Backend['matmul'];
}

const THREADS = 256;
/** fp32 tiles: tokens per CTA by block size (native/kernels/blocksparse.cu); 128 threads. */
const BSR_TOKENS: Record<number, number> = { 16: 256, 32: 128, 64: 128 };
/** SDDMM tiles are one block row by this many columns (several blocks of the row). */
const SDDMM_COLUMNS = 128;
/** TMA descriptors kept at most (see tensorMap in blockSparseKernels). */
const MAX_MAPS = 1024;
/** Tokens per band of the fp32 TMA kernel's grid order (orderBand). */
const ORDER_BAND_TOKENS = 2048;

export function blockSparseKernels(h: KernelHost): Pick<Backend, 'bsrMatmul' | 'bsrMatmulGradInput' | 'bsrSddmm'> {
  // Device copies of block layouts' indexes and work tables, freed with the layout.
  const layouts = new LayoutDeviceCache<CudaBuffer>((b) => h.free(b));
  /** Values a setup kernel writes (tile sizes, shared memory), as the kernels define them. */
  const readTable = (kernel: string, count: number): Int32Array => {
    const table = h.allocator.alloc(count * 4);
    h.launch('setup', kernel, [1, 1, 1], 1, h.args.reset().ptr(table));
    const values = new Int32Array(h.addon.readSync(table, count * 4));
    h.allocator.release(table, count * 4);
    return values;
  };

  // The tensor-core block-sparse kernels' dynamic shared memory and token tiles, as the kernels
  // define them (bsr_tc_smem in native/kernels/blocksparse_tc.cu).
  const tcTable = readTable('bsr_tc_smem', 21);
  // Union tiles (32x32 blocks, tensor cores): group size, tokens per tile, shared memory.
  const unionParams = (() => {
    const v = readTable('bsr_union_params', 4);
    return { group: v[0], tokens: v[1], smem: [v[2], v[3]] };
  })();
  /**
   * Union-tile kernels (blocksparse_tc.cu) for 32x32 blocks, where they measured faster on an H100:
   * the TF32 forward (1.06 -> 0.76 ms at density 0.5) and the TF32 dX from density 0.2 (1.05 ->
   * 0.78 ms at 0.5; 6% slower at 0.1). With fp32 operands the BF16 fragments' conversions make
   * them slower. The tuning's union 'on' uses them for every tensor-core forward and dX, 'off' never.
   */
  const useUnion = (layout: BlockLayout, precision: MatmulPrecision, forward: boolean) => {
    const force = h.tuning().union;
    if (layout.blockSize !== 32 || precision === 'highest' || force === 'off') return false;
    if (force === 'on') return true;
    return precision === 'high' && (forward || layoutDensity(layout) >= 0.2);
  };
  /**
   * The union table of a layout for the forward (groups of block rows) or dX (groups of block
   * columns); `clustered` groups members that share activation blocks (buildUnionTable).
   */
  function unionTable(layout: BlockLayout, forward: boolean, group = unionParams.group, clustered = false, longestFirst = false): UnionTable {
    return layouts.get(layout, `union:${forward ? 'forward' : 'grad_input'}:${group}:${clustered}:${longestFirst}`, () => {
      const built = buildUnionTable(layout, forward, group, clustered);
      const host = longestFirst ? unionGroupsLongestFirst(built) : built;
      const t = { ptr: h.upload(host.ptr), idx: h.upload(host.idx), blk: h.upload(host.blk), members: h.upload(host.members), groups: host.ptr.length - 1 };
      return { value: t, buffers: [t.ptr, t.idx, t.blk, t.members] };
    });
  }
  // BF16 union tiles on bf16 copies of the operands (blocksparse_bf16.cu), for 'medium' 32x32
  // forward and dX where they measured faster on an H100 than the fp32-operand kernels. The
  // conversion pass costs ~0.035 ms per 64 MB of activations and the product's work grows with
  // density x output width, so they pay when density x output width >= 512 (X [16384, 1024] ->
  // 4096 outputs at density 0.5: 0.74 -> 0.58 ms; X [16384, 4096] -> 1024 outputs at 0.25: 0.36
  // -> 0.47 ms, not used). The tuning's bf16Union forces them on or off (benchmarks compare).
  const bf16Union = (() => {
    const v = readTable('bsr_bf16u_params', 3);
    return { group: v[0], tokens: v[1], smem: v[2] };
  })();
  const useBf16Union = (layout: BlockLayout, precision: MatmulPrecision, forward: boolean) => {
    const force = h.tuning().bf16Union;
    if (layout.blockSize !== 32 || precision !== 'medium' || force === 'off') return false;
    const density = layoutDensity(layout);
    return force === 'on' || density * (forward ? layout.rows : layout.cols) >= 512;
  };

  // TMA union tiles (blocksparse_tma.cu, sm_90a): every 32x32 forward and dX on compute
  // capability 9.0 whose activations have at most maxSteps column blocks. 'highest' runs the fp32
  // FMA consumer on one block row per CTA: 41 vs 35 TFLOP/s per stored block for the SIMT kernel
  // of blocksparse.cu at density 0.5 (1.67 vs 1.95 ms), faster at every density. On an H100
  // (density 0.5, X [16384, 1024] by W [4096, 1024]) they took the TF32 forward from 0.77 ms (the
  // mma.sync union tiles) to 0.39 and dX from 0.78 to 0.39, and were faster at every density
  // measured. 'medium' runs them on bf16 copies of the operands where density x output width >=
  // 1024 (forward 0.34 vs 0.39 ms in TF32 at density 0.5); below that the conversion pass costs
  // more than it saves, and 'medium' runs the TF32 kernel (more precise, same speed or faster).
  // The tuning's tma turns them off, bf16Union forces bf16 operands on or off.
  const tma = (() => {
    const v = readTable('bsr_tma_params', 7);
    return { group: v[0], tokens: v[1], maxSteps: v[2], smem: { tf32: v[3], bf16: v[4], f32: v[5] }, f32Threads: v[6] };
  })();
  function tmaKernel(layout: BlockLayout, precision: MatmulPrecision, forward: boolean): UnionKernel | null {
    const [actCols, outCols] = forward ? [layout.cols, layout.rows] : [layout.rows, layout.cols];
    if (!h.hopper || layout.blockSize !== 32 || !h.tuning().tma || actCols / 32 > tma.maxSteps) return null;
    if (precision === 'highest')
      return { name: 'bsr_tma_f32_32', group: 1, tokens: tma.tokens, smem: tma.smem.f32, bf16: false, tma: true, threads: tma.f32Threads, ordered: true };
    const density = layoutDensity(layout);
    const force = h.tuning().bf16Union;
    const bf16 = precision === 'medium' && force !== 'off' && (force === 'on' || density * outCols >= 1024);
    return { name: `bsr_tma_${bf16 ? 'bf16' : 'tf32'}_32`, group: tma.group, tokens: tma.tokens, smem: bf16 ? tma.smem.bf16 : tma.smem.tf32, bf16, tma: true };
  }

  /**
   * Forward (act = x) or dX (act = dY) on a union-tile kernel that reads k-contiguous weight rows:
   * dX passes the blocks transposed, and bf16 kernels get bf16 copies of both operands. TMA
   * kernels read their operands through tensor maps, the others through pointers.
   */
  function launchUnionTiles(
    op: string,
    kind: 'forward' | 'grad_input',
    act: number,
    blocks: number,
    layout: BlockLayout,
    m: number,
    out: BackendBuffer,
    k: UnionKernel,
  ): void {
    const forward = kind === 'forward';
    const [actCols, outCols] = forward ? [layout.cols, layout.rows] : [layout.rows, layout.cols];
    // The TMA tensor-core kernels run groups of block rows (columns) that share activation blocks,
    // not consecutive ones: fewer union steps, 4-9% faster on the H100 (NOTES 34;
    // the tuning's unionCluster off groups consecutive rows).
    const clustered = !!k.tma && k.group > 1 && h.tuning().unionCluster;
    const tiles = tokenTiles(op, m, k.tokens);
    const band = k.ordered ? orderBand(k.tokens, tiles, layout.nnzBlocks / (outCols / 32)) : 0;
    const t = unionTable(layout, forward, k.group, clustered, band > 0);
    const temps: [number, number][] = [];
    const temp = (bytes: number) => {
      const b = h.allocator.alloc(bytes);
      temps.push([b, bytes]);
      return b;
    };
    let a = act;
    let w = blocks;
    if (k.bf16) {
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
          .ptr(h.ptr(out))
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
        h.args.reset().ptr(a).ptr(w).ptr(t.ptr.ptr).ptr(t.idx.ptr).ptr(t.blk.ptr).ptr(h.ptr(out)).u32(m).u32(actCols).u32(outCols),
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
  function tensorMap(
    ptr: number,
    bf16: number,
    inner: number,
    outer: number,
    rowStrideBytes: number,
    boxInner: number,
    boxOuter: number,
    swizzle: number,
  ): Uint8Array {
    const key = `${ptr},${bf16},${inner},${outer},${rowStrideBytes},${boxInner},${boxOuter},${swizzle}`;
    let m = maps.get(key);
    if (!m) {
      if (maps.size >= MAX_MAPS) maps.clear();
      m = h.addon.tensorMap(ptr, bf16, inner, outer, rowStrideBytes, boxInner, boxOuter, swizzle);
      maps.set(key, m);
    }
    return m;
  }
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
   * 64x64 forward / dX with tensor cores on the 32x32 TMA kernels (compute capability 9.0): the
   * blocks are split into sub-blocks by a pass first (nnz x 16 KB copied). On an H100 this took
   * the TF32 forward at density 0.5 from 0.68 to 0.36 ms (X [16384, 1024] by W [4096, 1024]) and
   * was faster for every product and density in TF32 and BF16. In fp32 the 64x64 SIMT kernels
   * (8 x 8 outputs per thread) are as fast or faster below density 0.5, so 'highest' keeps them.
   * Returns false where the split does not apply.
   */
  function launchSplit64(
    op: string,
    kind: 'forward' | 'grad_input',
    act: BackendBuffer,
    blocks: BackendBuffer,
    layout: BlockLayout,
    m: number,
    out: BackendBuffer,
    precision: MatmulPrecision,
  ): boolean {
    if (layout.blockSize !== 64 || !h.hopper || precision === 'highest') return false;
    const { layout32, source } = splitLayout(layout);
    const k = tmaKernel(layout32, precision, kind === 'forward');
    if (!k) return false;
    const bytes = layout.nnzBlocks * 4096 * 4;
    const split = h.allocator.alloc(bytes);
    h.launch(
      op,
      'blocks_split_64',
      [h.blocksFor(layout32.nnzBlocks * 1024), 1, 1],
      THREADS,
      h.args.reset().ptr(h.ptr(blocks)).ptr(split).ptr(source.ptr).u32(layout32.nnzBlocks),
    );
    launchUnionTiles(op, kind, h.ptr(act), split, layout32, m, out, k);
    h.allocator.release(split, bytes);
    return true;
  }

  /**
   * The union-tile kernel for a 32x32 forward or dX (the TMA kernels on compute capability 9.0,
   * mma.sync ones for tensor cores elsewhere), or null for the one-block-row kernels.
   */
  function unionKernel(layout: BlockLayout, precision: MatmulPrecision, forward: boolean): UnionKernel | null {
    const t = tmaKernel(layout, precision, forward);
    if (t) return t;
    if (useBf16Union(layout, precision, forward))
      return { name: `bsr_union_bf16u${bf16Union.group}_32`, group: bf16Union.group, tokens: bf16Union.tokens, smem: bf16Union.smem, bf16: true };
    if (useUnion(layout, precision, forward)) {
      const prec = precision === 'high' ? 0 : 1;
      return {
        name: `bsr_union_${prec ? 'bf16' : 'tf32'}_32`,
        group: unionParams.group,
        tokens: unionParams.tokens,
        smem: unionParams.smem[prec],
        bf16: false,
      };
    }
    return null;
  }
  /** The kernel for a block-sparse product: fp32 FMA for 'highest', tensor cores otherwise. */
  function bsrKernel(kind: 'forward' | 'grad_input' | 'sddmm', bs: number, precision: MatmulPrecision): { name: string; smem: number; tokens: number } {
    const b = Math.log2(bs) - 4;
    if (precision === 'highest') return { name: `bsr_${kind}_${bs}`, smem: 0, tokens: BSR_TOKENS[bs] };
    // 'medium' SDDMM runs the TF32 kernel: the BF16 one converts its fp32 operands in the inner
    // loop and measured slower on an H100 at every block size and density (32x32 at density 0.5:
    // 1.27 vs 0.89 ms), and TF32 is the more precise of the two.
    const prec = precision === 'high' || kind === 'sddmm' ? 0 : 1;
    const smem = tcTable[['forward', 'grad_input', 'sddmm'].indexOf(kind) * 6 + prec * 3 + b];
    return { name: `bsr_${kind}_tc_${prec ? 'bf16' : 'tf32'}_${bs}`, smem, tokens: tcTable[18 + b] };
  }

  /**
   * Checks the block size, then runs a forward or dX on union tiles where a union-tile kernel
   * applies (64x64 blocks through their quadrants); false leaves it to the one-block-row kernels.
   */
  function viaUnionTiles(
    op: string,
    kind: 'forward' | 'grad_input',
    act: BackendBuffer,
    blocks: BackendBuffer,
    layout: BlockLayout,
    m: number,
    out: BackendBuffer,
    precision: MatmulPrecision,
  ): boolean {
    checkBlockSize(op, layout.blockSize);
    if (launchSplit64(op, kind, act, blocks, layout, m, out, precision)) return true;
    const union = unionKernel(layout, precision, kind === 'forward');
    if (!union) return false;
    launchUnionTiles(op, kind, h.ptr(act), h.ptr(blocks), layout, m, out, union);
    return true;
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
  function checkBlockSize(op: string, bs: number): void {
    if (!BSR_TOKENS[bs]) throw new Error(`cuda: ${op}: no kernel for ${bs}x${bs} blocks (expected 16, 32 or 64)`);
  }
  // 2-D SDDMM tiles in fp32 (blocksparse_sddmm_tile.cu, 200 KB of shared memory: compute
  // capability 9.0): 8 block rows by up to 16 block columns per CTA, only the blocks present
  // computed, 8 x 8 outputs per thread. On an H100 ('highest', 32x32) dW went 2.448 -> 2.168 ms at
  // density 0.5 for X [16384, 1024] by W [4096, 1024], 1.251 -> 1.024 at 0.25 for X [16384, 4096]
  // by W [1024, 4096], faster in 5 of the 6 benchmark cases (6% slower at 0.5 for the second
  // shape). The tuning's sddmmTile turns them off.
  const sddmmTile = (() => {
    const v = readTable('bsr_sddmm_tile_params', 7);
    return { limits: { rows: v[0], cols: v[1], blocks: v[2] }, threads: v[4], smem: v[5], tokenStep: v[6] };
  })();
  const useSddmmTile = (layout: BlockLayout, precision: MatmulPrecision) =>
    h.hopper && layout.blockSize === 32 && precision === 'highest' && h.tuning().sddmmTile;
  function tileItems(layout: BlockLayout): { buffer: CudaBuffer; count: number } {
    // Items filled to their block limit, splitting a column where whole columns would leave thread
    // slots idle (buildTileItems' `fill`): dW 4-10% faster at density 0.25-0.5 on the H100 (NOTES
    // 35; the tuning's sddmmFill off keeps columns whole).
    const fill = h.tuning().sddmmFill;
    return layouts.get(layout, `sddmm-tiles:${fill}`, () => {
      const t = buildTileItems(layout, sddmmTile.limits, fill);
      const buffer = h.upload(t.items.length ? t.items : new Int32Array(1));
      return { value: { buffer, count: t.count }, buffers: [buffer] };
    });
  }
  /** Token chunks for `ctas` CTAs, one per multiprocessor (core's waveSplits): at most 16, of at least 256 tokens. */
  function tileSplits(ctas: number, m: number): number {
    return waveSplits(ctas, m, h.sms, 256, 16);
  }

  /** The partial sums of `used` token chunks land in a temporary; the column reduction sums them into out. */
  function sddmmLaunch(out: number, used: number, size: number, launch: (target: number) => void): void {
    const target = used > 1 ? h.allocator.alloc(used * size * 4) : out;
    launch(target);
    if (used > 1) {
      h.sumMiddle(target, 1, used, size, out);
      h.allocator.release(target, used * size * 4);
    }
  }

  /**
   * Token tiles per band of the fp32 TMA kernel's grid order (blocksparse_tma.cu): within a band
   * the block rows (columns) run longest first, each over the band's token tiles, so that the
   * CTAs still running at the end are short ones while the band's activations stay in L2. 0: the
   * plain order (lines in index order within one token tile), kept for lines of under 4 blocks
   * on average, whose CTAs are short enough that the order costs more locality than it saves
   * tail. On an H100 (NOTES 40) bands of 2048 tokens took 'highest' forward and dX at density
   * 0.5 from 1.66-1.68 to 1.62-1.66 ms, 0.25 from 0.87-0.90 to 0.82-0.90; at 0.1 lines of 12.8
   * blocks gained 4-5% and lines of 3.2 lost 5%. The tuning's bandTiles sets the band (0:
   * plain; tests, benchmarks).
   */
  function orderBand(tileTokens: number, tiles: number, blocksPerLine: number): number {
    const forced = h.tuning().bandTiles;
    const band = forced !== undefined ? forced : blocksPerLine >= 4 ? Math.round(ORDER_BAND_TOKENS / tileTokens) : 0;
    return band > 0 ? Math.min(tiles, band) : 0;
  }

  /** Token tiles go on the grid's y dimension (at most 65535). */
  function tokenTiles(op: string, m: number, tile: number): number {
    const tiles = Math.ceil(m / tile);
    if (tiles > 65535) throw new Error(`cuda: ${op}: ${m} rows exceed the kernel's grid (at most ${65535 * tile})`);
    return tiles;
  }

  const dense = denseRoute({
    alloc: h.alloc,
    free: h.free,
    fill: h.fill,
    matmul: h.matmul,
    blocksDense(op, blocks, d, layout, toDense) {
      const size = layout.nnzBlocks * layout.blockSize ** 2;
      if (size === 0) return;
      const idx = indexBuffers(layout);
      h.launch(
        op,
        'bsr_blocks_dense',
        [h.blocksFor(size), 1, 1],
        THREADS,
        h.args
          .reset()
          .ptr(h.ptr(blocks))
          .ptr(h.ptr(d))
          .ptr(idx.rowIdx.ptr)
          .ptr(idx.colIdx.ptr)
          .u32(layout.nnzBlocks)
          .u32(layout.blockSize)
          .u32(layout.cols)
          .i32(toDense ? 1 : 0),
      );
    },
  });
  /**
   * Whether the SDDMM runs on W^T: for 32x32 layouts taller than wide, with the 'highest' 2-D tile
   * kernel, or below density 0.2 with the tensor-core one. On an H100 (NOTES 39) dW of W [4096,
   * 1024] went 1.16 -> 1.02-1.03 ms at density 0.25 and 0.65 -> 0.58 at 0.1 in 'highest' (0.5
   * unchanged), and 0.23 -> 0.20 at 0.1 in TF32 / BF16, where 0.25 ran 2% slower.
   * The tuning's sddmmTranspose turns it off or forces it for any 32x32 layout.
   */
  function sddmmTransposes(layout: BlockLayout, precision: MatmulPrecision): boolean {
    const forced = h.tuning().sddmmTranspose;
    if (layout.blockSize !== 32 || layout.nnzBlocks === 0 || forced === 'off') return false;
    return forced === 'on' || (layout.rows > layout.cols && (useSddmmTile(layout, precision) || layoutDensity(layout) < 0.2));
  }

  /** out [nnz, bs, bs] (device pointer) = (dy^T x) on the layout's blocks, by the kernels. */
  function sddmmKernels(dy: number, x: number, layout: BlockLayout, m: number, out: number, precision: MatmulPrecision): void {
    const { rows, cols, blockSize: bs, nnzBlocks: nnz } = layout;
    const size = nnz * bs * bs;
    if (useSddmmTile(layout, precision)) {
      const items = tileItems(layout);
      if (items.count === 0) return;
      const splits = tileSplits(items.count, m);
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
    const k = bsrKernel('sddmm', bs, precision);
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

  return {
    bsrMatmul(x, blocks, layout, m, out, precision) {
      if (takesDenseRoute(layout, 'forward', precision, h.tuning().denseRoute)) return dense.forward(x, blocks, layout, m, out, precision);
      const bs = layout.blockSize;
      if (viaUnionTiles('bsrMatmul', 'forward', x, blocks, layout, m, out, precision)) return;
      const idx = indexBuffers(layout);
      const k = bsrKernel('forward', bs, precision);
      h.launch(
        'bsrMatmul',
        k.name,
        [layout.rows / bs, tokenTiles('bsrMatmul', m, k.tokens), 1],
        128,
        h.args.reset().ptr(h.ptr(x)).ptr(h.ptr(blocks)).ptr(idx.rowPtr.ptr).ptr(idx.colIdx.ptr).ptr(h.ptr(out)).u32(m).u32(layout.rows).u32(layout.cols),
        k.smem,
      );
    },
    bsrMatmulGradInput(dy, blocks, layout, m, out, precision) {
      if (takesDenseRoute(layout, 'gradInput', precision, h.tuning().denseRoute)) return dense.gradInput(dy, blocks, layout, m, out, precision);
      const bs = layout.blockSize;
      if (viaUnionTiles('bsrMatmulGradInput', 'grad_input', dy, blocks, layout, m, out, precision)) return;
      const idx = indexBuffers(layout);
      const k = bsrKernel('grad_input', bs, precision);
      h.launch(
        'bsrMatmulGradInput',
        k.name,
        [layout.cols / bs, tokenTiles('bsrMatmulGradInput', m, k.tokens), 1],
        128,
        h.args
          .reset()
          .ptr(h.ptr(dy))
          .ptr(h.ptr(blocks))
          .ptr(idx.colPtr.ptr)
          .ptr(idx.cscBlock.ptr)
          .ptr(idx.rowIdx.ptr)
          .ptr(h.ptr(out))
          .u32(m)
          .u32(layout.rows)
          .u32(layout.cols),
        k.smem,
      );
    },
    bsrSddmm(dy, x, layout, m, out, precision) {
      if (takesDenseRoute(layout, 'sddmm', precision, h.tuning().denseRoute)) return dense.sddmm(dy, x, layout, m, out, precision);
      checkBlockSize('bsrSddmm', layout.blockSize);
      if (!sddmmTransposes(layout, precision)) return sddmmKernels(h.ptr(dy), h.ptr(x), layout, m, h.ptr(out), precision);
      // dW^T's blocks are the SDDMM of the swapped operands on W^T's layout (X^T dY), computed
      // there and transposed back into W's order: W^T's block s is W's block cscBlock[s].
      const bytes = layout.nnzBlocks * 1024 * 4;
      const blocksT = h.allocator.alloc(bytes);
      sddmmKernels(h.ptr(x), h.ptr(dy), transposedLayout(layout), m, blocksT, precision);
      h.launch(
        'bsrSddmm',
        'blocks_transpose_32',
        [h.blocksFor(layout.nnzBlocks, 1), 1, 1],
        THREADS,
        h.args.reset().ptr(blocksT).ptr(h.ptr(out)).ptr(indexBuffers(layout).cscBlock.ptr).u32(layout.nnzBlocks),
      );
      h.allocator.release(blocksT, bytes);
    },
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
/** A union-tile kernel: its name, launch shape, whether it reads bf16 operands, and whether through TMA tensor maps. */
interface UnionKernel {
  name: string;
  group: number;
  tokens: number;
  smem: number;
  bf16: boolean;
  tma?: boolean;
  /** Threads per CTA where not 384 (a producer warpgroup and two consumer warpgroups). */
  threads?: number;
  /** Whether its grid runs longest first in bands of token tiles (orderBand; TMA kernels only). */
  ordered?: boolean;
}
interface UnionTable {
  ptr: CudaBuffer;
  idx: CudaBuffer;
  blk: CudaBuffer;
  /** Each group slot's block row (column), -1 where none. */
  members: CudaBuffer;
  groups: number;
}
