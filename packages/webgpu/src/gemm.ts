/**
 * One register-tiled matrix-product kernel generator behind dense matmul and the block-sparse
 * trio. A workgroup of WM x WN threads computes a (WM * TM) x (WN * TN) output tile: each thread
 * owns TM x TN outputs as vec4 accumulators held in registers, in groups of four rows/columns
 * spread 4 * WM (4 * WN) apart so that reads of the workgroup tiles are broadcasts or consecutive.
 *
 * The shared dimension comes in "segments" (the whole k for a dense product; one stored block per
 * segment for the block-sparse products), all walked as one pipeline in steps of BK. A and B
 * tiles go through double-buffered workgroup memory (k-major rows padded against bank conflicts)
 * with the next step prefetched into registers, so a step costs one barrier. How a segment maps
 * to memory (base offsets and strides) is WGSL supplied by the caller; the loader's thread
 * mapping follows the contiguous axis of each operand so loads coalesce, optionally as vec4s.
 *
 * Union tiles (block-sparse forward and dX) split the output columns into bands, one block row
 * (or column) each, over the union of the blocks those rows touch: each A tile is loaded once for
 * every band, and a band's threads (whole warps) skip the multiply-adds where their block is absent.
 */

export interface GemmShape {
  /** Threads along the output rows and columns; WM * WN is the workgroup size. */
  wm: number;
  wn: number;
  /** Outputs per thread along rows and columns (multiples of 4). */
  tm: number;
  tn: number;
  /** Shared-dimension step (divides every segment length when `kChecked` is false). */
  bk: number;
}

export interface GemmSpec {
  shape: GemmShape;
  /** Storage declarations (bindings 1..). Parameters come in through p()/pf() (binding 0). */
  bindings: string;
  /**
   * Statements run once per workgroup; they must define `m0`, `n0` (tile origin), `M`, `N` (bounds
   * for rows/cols), the strides `aRS`, `aKS` (A element (m, k) of the tile is at aBase + m * aRS +
   * k * aKS, m counted from the tile origin), `bKS`, `bNS`, and `L`, the length of every segment
   * (workgroup-uniform).
   */
  setup: string;
  /** Segment range: WGSL expressions for the first and one-past-last segment. */
  segBegin: string;
  segEnd: string;
  /** Statements assigning `aBase` and `bBase` for segment `s`. */
  segment: string;
  /** Array names of A and B. */
  a: string;
  b: string;
  /** Which axis of A/B is contiguous (decides the loader's thread mapping). */
  aContiguous: 'k' | 'm';
  bContiguous: 'k' | 'n';
  /**
   * Load A/B as vec4s along their contiguous axis (the array is then declared vec4<f32>). The
   * caller guarantees every address is a multiple of 4 and, along rows/cols, bounds that are
   * multiples of 4.
   */
  aVec?: boolean;
  bVec?: boolean;
  /**
   * Loop shape. By default a step loads the next tiles inside `if (more)` and leaves the loop
   * between its multiply-adds and its stores to workgroup memory. `straight`: the loads are
   * outside the branch and the loop ends after the barrier, so its body is one path (the last
   * step loads its own tile again, into the stage no one reads). The NVIDIA compiler then keeps
   * the prefetched tiles and the accumulators in place, where the two-path body made it copy ~60
   * registers at every back edge: on an H100 (NOTES 45) the one-block-wide 32x32 dX at density 0.5
   * went 2.04 -> 1.85 ms, the forward 2.05 -> 1.90; the dense 128 x 128 tile (3.41 -> 3.66) and
   * the SDDMM (1.93 -> 2.04) lost, so they keep the default.
   */
  straight?: boolean;
  /**
   * B's loads skip their column bound (N - n0): the caller guarantees a valid address for every
   * column of the tile (bColumn clamps it), and columns past N only feed outputs never stored.
   * For the SDDMM's part-filled items: with k unchecked too (token counts that are multiples of
   * BK) it took the 32x32 dW at density 0.25 from 1.05 to 1.01 ms on an H100 (NOTES 46).
   */
  bUnguarded?: boolean;
  /** Whether a segment length may be a non-multiple of BK. */
  kChecked: boolean;
  /**
   * Offset of B's column `col` when it is not col * bNS (columns gathered from several blocks). It
   * is evaluated once per segment for each column a thread loads, not at every step.
   */
  bColumn?: (col: string) => string;
  /** Whether B's column `col` exists in the current segment (else it loads as zeros); with `bColumn`. */
  bColumnLive?: (col: string) => string;
  /**
   * Output columns in bands of `width` (a multiple of TN): threads are grouped by band, in runs
   * of whole warps, and skip a segment's multiply-adds where `live` (a WGSL bool of the segment
   * `s` and the thread's `band`) is false.
   */
  bands?: { width: number; live: string };
  /**
   * How outputs are written, one of two. `store`: one output, a WGSL statement given row (from
   * m0), col (from n0) and value `v` (f32). `storeVec4`: four outputs of a row at once, given row,
   * col (a multiple of 4, from n0) and `v`, the vec4 of columns col..col+3: whole 16-byte pieces
   * instead of scattered scalars (each thread's columns come in runs of 4; the caller guarantees
   * that N - n0 is a multiple of 4 and the addresses aligned).
   */
  store?: (row: string, col: string, v: string) => string;
  storeVec4?: (row: string, col: string, v: string) => string;
  /**
   * Or four outputs of a column at once: row (a multiple of 4), col and `v`, the vec4 of rows
   * row..row+3 at column col (each thread's rows come in runs of 4 too), for callers that store
   * the product transposed; M - m0 a multiple of 4.
   */
  storeVec4Rows?: (row: string, col: string, v: string) => string;
}

export function tileRows(s: GemmShape): number {
  return s.wm * s.tm;
}
export function tileCols(s: GemmShape): number {
  return s.wn * s.tn;
}

/**
 * Padding (in vec4s) of a k-row of a workgroup tile that minimises bank conflicts of the loader's
 * stores: simulates one warp (32 lanes, 32 four-byte banks) for pads of 0..8 vec4s.
 */
function rowPad(width: number, bk: number, kContig: boolean, vec: boolean, threads: number): number {
  let best = 0;
  let bestWays = Infinity;
  const v = vec ? 4 : 1;
  for (let pad = 0; pad <= 8; pad++) {
    const banks = new Map<number, Set<number>>();
    for (let lane = 0; lane < Math.min(32, threads); lane++) {
      // One store instruction: (row/col, k) of each lane's first element.
      const [r, kk] = kContig ? [Math.floor(lane / (bk / v)), (lane % (bk / v)) * v] : [(lane % (width / v)) * v, Math.floor(lane / (width / v))];
      for (let w = 0; w < (vec && !kContig ? 4 : 1); w++) {
        const word = kk * (width + 4 * pad) + r + w;
        if (!banks.has(word % 32)) banks.set(word % 32, new Set());
        banks.get(word % 32)!.add(word);
      }
    }
    const ways = Math.max(...[...banks.values()].map((w) => w.size));
    if (ways < bestWays) [best, bestWays] = [pad, ways];
  }
  return best;
}

interface Operand {
  name: 'a' | 'b';
  kContig: boolean;
  vec: boolean;
  /** Loads per tile and per thread, and the WGSL for a unit's first row/col and first k. */
  units: number;
  per: number;
  r: string;
  k: string;
  zero: string;
}

function operand(spec: GemmSpec, name: 'a' | 'b', width: number, bk: number, threads: number): Operand {
  const kContig = (name === 'a' ? spec.aContiguous : spec.bContiguous) === 'k';
  const vec = !!(name === 'a' ? spec.aVec : spec.bVec);
  if (vec && kContig && spec.kChecked) throw new Error(`gemmKernel: vector loads along k need segments that are multiples of BK`);
  const v = vec ? 4 : 1;
  const units = (width * bk) / v;
  const [r, k] = kContig ? [`e / ${bk / v}u`, `(e % ${bk / v}u) * ${v}u`] : [`(e % ${width / v}u) * ${v}u`, `e / ${width / v}u`];
  return { name, kContig, vec, units, per: Math.ceil(units / threads), r, k, zero: vec ? 'vec4<f32>(0.0)' : '0.0' };
}

export function gemmKernel(spec: GemmSpec): string {
  const { wm, wn, tm, tn, bk } = spec.shape;
  const T = wm * wn;
  const BM = wm * tm;
  const BN = wn * tn;
  if (tm % 4 !== 0 || tn % 4 !== 0 || tm < 4 || tn < 4)
    throw new Error(`gemmKernel: outputs per thread must be multiples of 4 along rows and columns (got ${tm} x ${tn})`);
  const gm = tm / 4; // vec4 groups per thread along rows
  const gn = tn / 4;
  if ([spec.store, spec.storeVec4, spec.storeVec4Rows].filter(Boolean).length !== 1)
    throw new Error('gemmKernel: give exactly one of store, storeVec4 and storeVec4Rows');
  const A = operand(spec, 'a', BM, bk, T);
  const B = operand(spec, 'b', BN, bk, T);
  const [aPer, bPer] = [A.per, B.per];
  // Workgroup tiles are stored k-major ([k][row] and [k][col]) in rows of vec4s, padded so the
  // loader's stores from one warp land in distinct banks.
  const aRow = BM / 4 + rowPad(BM, bk, A.kContig, A.vec, T);
  const bRow = BN / 4 + rowPad(BN, bk, B.kContig, B.vec, T);
  const aStage = aRow * bk; // vec4s per stage
  const bStage = bRow * bk;
  const lines: string[] = [];
  const L = (s: string) => lines.push(s);

  // Loader: unit e of the tile (a float, or a vec4 along the operand's contiguous axis) -> its
  // first row/col r and first k kk.
  const load = (X: Operand) => {
    const a = X.name === 'a';
    const out: string[] = [];
    for (let l = 0; l < X.per; l++) {
      const addr = a ? 'aBase + r * aRS + kk * aKS' : `bBase + kk * bKS + ${spec.bColumn ? `bcol${l}` : 'r * bNS'}`;
      const conds: string[] = [];
      if (a || !spec.bUnguarded) conds.push(`r < ${a ? 'M - m0' : 'N - n0'}`);
      if (spec.kChecked) conds.push('kk < L');
      if ((l + 1) * T > X.units) conds.push(`e < ${X.units}u`);
      if (!a && spec.bColumnLive) conds.push(`blive${l}`);
      const value = `${a ? spec.a : spec.b}[${X.vec ? `(${addr}) / 4u` : addr}]`;
      out.push(`{ let e = ${l * T}u + tid; let r = ${X.r}; let kk = k0 + ${X.k};
      ${conds.length ? `var v = ${X.zero}; if (${conds.join(' && ')}) { v = ${value}; } ${X.name}r${l} = v;` : `${X.name}r${l} = ${value};`} }`);
    }
    return out.join('\n      ');
  };
  const stash = (X: Operand) => {
    const a = X.name === 'a';
    const arr = a ? 'As' : 'Bs';
    const stage = a ? aStage : bStage;
    const rowLen = a ? aRow : bRow;
    const out: string[] = [];
    for (let l = 0; l < X.per; l++) {
      const guard = (l + 1) * T > X.units ? `if (${l * T}u + tid < ${X.units}u) ` : '';
      const q = (dk: number) => `st * ${stage}u + (kk + ${dk}u) * ${rowLen}u + r / 4u`;
      const body = !X.vec
        ? `${arr}[${q(0)}][r % 4u] = ${X.name}r${l};`
        : X.kContig
          ? [0, 1, 2, 3].map((j) => `${arr}[${q(j)}][r % 4u] = ${X.name}r${l}[${j}];`).join(' ')
          : `${arr}[${q(0)}] = ${X.name}r${l};`;
      out.push(`${guard}{ let e = ${l * T}u + tid; let r = ${X.r}; let kk = ${X.k}; ${body} }`);
    }
    return out.join('\n      ');
  };

  L(spec.bindings);
  L(`var<workgroup> As: array<vec4<f32>, ${2 * aStage}>;`);
  L(`var<workgroup> Bs: array<vec4<f32>, ${2 * bStage}>;`);
  L(`var<workgroup> segRange: vec2<u32>;`);
  L(`@compute @workgroup_size(${T}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {`);
  // Thread (ty, tx) owns rows g * 4 * wm + ty * 4 + i and the columns of colVec(h) * 4 + j. In
  // bands, a band's wm * tpb threads are consecutive (whole warps when that is a multiple of 32).
  const bands = spec.bands;
  const tpb = bands ? bands.width / tn : wn;
  if (bands && (!Number.isInteger(tpb) || BN % bands.width !== 0))
    throw new Error(`gemmKernel: band width ${bands.width} must be a multiple of TN (${tn}) dividing the tile width ${BN}`);
  const colVec = (h: number) => (bands ? `band * ${bands.width / 4}u + ${h * tpb}u + tx` : `${h * wn}u + tx`);
  if (bands) L(`  let band = tid / ${wm * tpb}u; let tx = tid % ${tpb}u; let ty = (tid / ${tpb}u) % ${wm}u;`);
  else L(`  let tx = tid % ${wn}u; let ty = tid / ${wn}u;`);
  L(`  ${spec.setup}`);
  for (let i = 0; i < tm; i++) for (let g = 0; g < gn; g++) L(`  var c${i}_${g} = vec4<f32>(0.0);`);
  for (let l = 0; l < aPer; l++) L(`  var ar${l} = ${A.zero};`);
  for (let l = 0; l < bPer; l++) L(`  var br${l} = ${B.zero};`);
  // Barriers must sit in uniform control flow: segment bounds read from storage go through a
  // workgroup-uniform load.
  L(`  if (tid == 0u) { segRange = vec2<u32>(${spec.segBegin}, ${spec.segEnd}); }`);
  L(`  let range = workgroupUniformLoad(&segRange);`);
  // One pipeline over every (segment, step) pair, so the next segment's first tile is fetched
  // while the current segment's last one is multiplied.
  L(`  let per = (L + ${bk - 1}u) / ${bk}u;`);
  L(`  let total = (range.y - range.x) * per;`);
  L(`  if (total > 0u) {`);
  L(`    var s = range.x; var k0 = 0u; var t = 0u; var st = 0u;`);
  const columns =
    (spec.bColumn
      ? Array.from(
          { length: bPer },
          (_, l) =>
            `{ let e = ${l * T}u + tid; let r = ${B.r}; bcol${l} = ${spec.bColumn!('r')};${spec.bColumnLive ? ` blive${l} = ${spec.bColumnLive('r')};` : ''} }`,
        ).join(' ')
      : '') + (bands ? ` live = ${bands.live};` : '');
  L(`    var aBase = 0u; var bBase = 0u;`);
  if (spec.bColumn) for (let l = 0; l < bPer; l++) L(`    var bcol${l} = 0u;${spec.bColumnLive ? ` var blive${l} = false;` : ''}`);
  if (bands) L(`    var live = false;`);
  L(`    ${spec.segment} ${columns}`);
  L(`    ${load(A)}`);
  L(`    ${load(B)}`);
  L(`    ${stash(A)}`);
  L(`    ${stash(B)}`);
  L(`    workgroupBarrier();`);
  L(`    loop {`);
  L(`      let cur = st;`);
  if (bands) L(`      let curLive = live;`); // the segment of the stage being multiplied
  L(`      t += 1u;`);
  L(`      let more = t < total;`);
  const straight = !!spec.straight;
  L(`      if (more) {`);
  L(`        k0 += ${bk}u;`);
  L(`        if (k0 >= L) { k0 = 0u; s += 1u; ${spec.segment} ${columns} }`);
  // Straight: the last step loads its own tile again (the position did not move: valid
  // addresses), into the stage no one reads.
  if (straight) L(`      }`);
  L(`      ${load(A)}`);
  L(`      ${load(B)}`);
  if (!straight) L(`      }`);
  // Multiply the current stage: for each k, gm vec4s of A (rows) and gn vec4s of B (cols).
  if (bands) L(`      if (curLive) {`);
  for (let k = 0; k < bk; k++) {
    const ab = `cur * ${aStage}u + ${k * aRow}u + ty`;
    for (let g = 0; g < gm; g++) L(`      let a${k}_${g} = As[${ab}${g ? ` + ${g * wm}u` : ''}];`);
    for (let g = 0; g < gn; g++) L(`      let b${k}_${g} = Bs[cur * ${bStage}u + ${k * bRow}u + ${colVec(g)}];`);
    for (let g = 0; g < gm; g++) {
      for (let i = 0; i < 4; i++) {
        for (let h = 0; h < gn; h++) L(`      c${g * 4 + i}_${h} = fma(vec4<f32>(a${k}_${g}[${i}]), b${k}_${h}, c${g * 4 + i}_${h});`);
      }
    }
  }
  if (bands) L(`      }`);
  if (!straight) L(`      if (!more) { break; }`);
  L(`      st = 1u - cur;`);
  L(`      ${stash(A)}`);
  L(`      ${stash(B)}`);
  L(`      workgroupBarrier();`);
  if (straight) L(`      if (!more) { break; }`);
  L(`    }`);
  L(`  }`);
  // Store: accumulator c{g*4+i}_h holds row g*4*wm + ty*4 + i, columns colVec(h)*4 + j (j < 4).
  const stored = (row: string, col: string, put: string) => L(`  { let row = ${row}; let col = ${col}; if (row < M - m0 && col < N - n0) { ${put} } }`);
  for (let g = 0; g < gm; g++) {
    for (let h = 0; h < gn; h++) {
      const [rows, col] = [`${g * 4 * wm}u + ty * 4u`, `(${colVec(h)}) * 4u`]; // the first of each run of 4
      for (let q = 0; q < 4; q++) {
        const row = `${rows} + ${q}u`;
        // Rows at once: q is the column within the run (the vec4 gathers the 4 rows' values).
        if (spec.storeVec4Rows)
          stored(rows, `${col} + ${q}u`, spec.storeVec4Rows('row', 'col', `vec4<f32>(${[0, 1, 2, 3].map((i) => `c${g * 4 + i}_${h}[${q}]`).join(', ')})`));
        else if (spec.storeVec4) stored(row, col, spec.storeVec4('row', 'col', `c${g * 4 + q}_${h}`));
        else for (let j = 0; j < 4; j++) stored(row, `${col} + ${j}u`, spec.store!('row', 'col', `c${g * 4 + q}_${h}[${j}]`));
      }
    }
  }
  L('}');
  return lines.join('\n');
}
