/**
 * One register-tiled matrix-product kernel generator behind dense matmul and the block-sparse
 * trio. A workgroup of WM x WN threads computes a BM x BN output tile (BM = 4 WM * TM/4 ...):
 * each thread owns TM x TN outputs as vec4 accumulators held in registers, in groups of four
 * rows/columns spread a warp-width apart so reads of the shared tiles are conflict-free.
 *
 * The shared dimension comes in "segments" (the whole K for a dense product; one stored block per
 * segment for the block-sparse products), each walked in steps of BK. A and B tiles go through
 * double-buffered workgroup memory with register prefetch of the next step, so a step costs one
 * barrier. How a segment maps to memory (base offsets and strides) is WGSL supplied by the caller;
 * the loader's thread mapping follows the contiguous axis of each operand so loads coalesce.
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
  /** Whether a segment length may be a non-multiple of BK. */
  kChecked: boolean;
  /**
   * Offset of B's column `col` when it is not col * bNS (columns gathered from several blocks). It
   * is evaluated once per segment for each column a thread loads, not at every step.
   */
  bColumn?: (col: string) => string;
  /** Writes one output: a WGSL statement given row (from m0), col (from n0) and value `v` (f32). */
  store: (row: string, col: string, v: string) => string;
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
function rowPad(width: number, bk: number, kContiguous: boolean, threads: number): number {
  let best = 0;
  let bestWays = Infinity;
  for (let pad = 0; pad <= 8; pad++) {
    const banks = new Map<number, Set<number>>();
    for (let lane = 0; lane < Math.min(32, threads); lane++) {
      const [r, kk] = kContiguous ? [Math.floor(lane / bk), lane % bk] : [lane % width, Math.floor(lane / width)];
      const word = kk * (width + 4 * pad) + r;
      const bank = word % 32;
      if (!banks.has(bank)) banks.set(bank, new Set());
      banks.get(bank)!.add(word);
    }
    const ways = Math.max(...[...banks.values()].map((w) => w.size));
    if (ways < bestWays) [best, bestWays] = [pad, ways];
  }
  return best;
}

export function gemmKernel(spec: GemmSpec): string {
  const { wm, wn, tm, tn, bk } = spec.shape;
  const T = wm * wn;
  const BM = wm * tm;
  const BN = wn * tn;
  const gm = tm / 4; // vec4 groups per thread along rows
  const gn = tn / 4;
  const aPer = Math.ceil((BM * bk) / T);
  const bPer = Math.ceil((BN * bk) / T);
  // Workgroup tiles are stored k-major ([k][row] and [k][col]) in rows of vec4s, padded so the
  // loader's scalar stores from one warp land in distinct banks.
  const aRow = BM / 4 + rowPad(BM, bk, spec.aContiguous === 'k', T);
  const bRow = BN / 4 + rowPad(BN, bk, spec.bContiguous === 'k', T);
  const aStage = aRow * bk; // vec4s per stage
  const bStage = bRow * bk;
  const lines: string[] = [];
  const L = (s: string) => lines.push(s);

  // Loader: element e of the tile -> (row/col, k) following the contiguous axis.
  const aCoords = spec.aContiguous === 'k' ? ['e / ' + bk + 'u', 'e % ' + bk + 'u'] : ['e % ' + BM + 'u', 'e / ' + BM + 'u'];
  const bCoords = spec.bContiguous === 'k' ? ['e / ' + bk + 'u', 'e % ' + bk + 'u'] : ['e % ' + BN + 'u', 'e / ' + BN + 'u'];
  const load = (which: 'a' | 'b', per: number, total: number) => {
    const [rc, kc] = which === 'a' ? aCoords : bCoords;
    const lim = which === 'a' ? 'M - m0' : 'N - n0';
    const out: string[] = [];
    for (let l = 0; l < per; l++) {
      const guard = (l + 1) * T > total ? ` && e < ${total}u` : '';
      out.push(`{ let e = ${l * T}u + tid; let r = ${rc}; let kk = k0 + ${kc};
      var v = 0.0;
      if (r < ${lim}${spec.kChecked ? ' && kk < L' : ''}${guard}) { v = ${which === 'a' ? `${spec.a}[aBase + r * aRS + kk * aKS]` : `${spec.b}[${spec.bColumn ? `bBase + kk * bKS + bcol${l}` : 'bBase + kk * bKS + r * bNS'}]`}; }
      ${which}r${l} = v; }`);
    }
    return out.join('\n      ');
  };
  const stash = (which: 'a' | 'b', per: number, total: number) => {
    const [rc, kc] = which === 'a' ? aCoords : bCoords;
    const width = which === 'a' ? BM : BN;
    const arr = which === 'a' ? 'As' : 'Bs';
    const stage = which === 'a' ? aStage : bStage;
    const rowLen = which === 'a' ? aRow : bRow;
    const out: string[] = [];
    for (let l = 0; l < per; l++) {
      const guard = (l + 1) * T > total ? `if (${l * T}u + tid < ${total}u) ` : '';
      out.push(`${guard}{ let e = ${l * T}u + tid; let r = ${rc}; let kk = ${kc}; let q = st * ${stage}u + kk * ${rowLen}u + r / 4u; ${arr}[q][r % 4u] = ${which}r${l}; }`);
    }
    return out.join('\n      ');
  };

  L(spec.bindings);
  L(`var<workgroup> As: array<vec4<f32>, ${2 * aStage}>;`);
  L(`var<workgroup> Bs: array<vec4<f32>, ${2 * bStage}>;`);
  L(`var<workgroup> segRange: vec2<u32>;`);
  L(`@compute @workgroup_size(${T}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {`);
  L(`  let tx = tid % ${wn}u; let ty = tid / ${wn}u;`);
  L(`  ${spec.setup}`);
  for (let i = 0; i < tm; i++) for (let g = 0; g < gn; g++) L(`  var c${i}_${g} = vec4<f32>(0.0);`);
  for (let l = 0; l < aPer; l++) L(`  var ar${l} = 0.0;`);
  for (let l = 0; l < bPer; l++) L(`  var br${l} = 0.0;`);
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
  const columns = spec.bColumn
    ? Array.from({ length: bPer }, (_, l) => `{ let e = ${l * T}u + tid; let r = ${bCoords[0]}; bcol${l} = ${spec.bColumn!('r')}; }`).join(' ')
    : '';
  L(`    var aBase = 0u; var bBase = 0u;`);
  if (spec.bColumn) for (let l = 0; l < bPer; l++) L(`    var bcol${l} = 0u;`);
  L(`    ${spec.segment} ${columns}`);
  L(`    ${load('a', aPer, BM * bk)}`);
  L(`    ${load('b', bPer, BN * bk)}`);
  L(`    ${stash('a', aPer, BM * bk)}`);
  L(`    ${stash('b', bPer, BN * bk)}`);
  L(`    workgroupBarrier();`);
  L(`    loop {`);
  L(`      let cur = st;`);
  L(`      t += 1u;`);
  L(`      let more = t < total;`);
  L(`      if (more) {`);
  L(`        k0 += ${bk}u;`);
  L(`        if (k0 >= L) { k0 = 0u; s += 1u; ${spec.segment} ${columns} }`);
  L(`      ${load('a', aPer, BM * bk)}`);
  L(`      ${load('b', bPer, BN * bk)}`);
  L(`      }`);
  // Multiply the current stage: for each k, gm vec4s of A (rows) and gn vec4s of B (cols).
  for (let k = 0; k < bk; k++) {
    const ab = `cur * ${aStage}u + ${k * aRow}u + ty`;
    const bb = `cur * ${bStage}u + ${k * bRow}u + tx`;
    for (let g = 0; g < gm; g++) L(`      let a${k}_${g} = As[${ab}${g ? ` + ${g * wm}u` : ''}];`);
    for (let g = 0; g < gn; g++) L(`      let b${k}_${g} = Bs[${bb}${g ? ` + ${g * wn}u` : ''}];`);
    for (let g = 0; g < gm; g++) {
      for (let i = 0; i < 4; i++) {
        for (let h = 0; h < gn; h++) L(`      c${g * 4 + i}_${h} = fma(vec4<f32>(a${k}_${g}[${i}]), b${k}_${h}, c${g * 4 + i}_${h});`);
      }
    }
  }
  L(`      if (!more) { break; }`);
  L(`      st = 1u - cur;`);
  L(`      ${stash('a', aPer, BM * bk)}`);
  L(`      ${stash('b', bPer, BN * bk)}`);
  L(`      workgroupBarrier();`);
  L(`    }`);
  L(`  }`);
  // Store: row = g*4*wm + ty*4 + i, col = h*4*wn + tx*4 + j.
  for (let g = 0; g < gm; g++) {
    for (let i = 0; i < 4; i++) {
      for (let h = 0; h < gn; h++) {
        for (let j = 0; j < 4; j++) {
          const row = `${g * 4 * wm}u + ty * 4u + ${i}u`;
          const col = `${h * 4 * wn}u + tx * 4u + ${j}u`;
          L(`  { let row = ${row}; let col = ${col}; if (row < M - m0 && col < N - n0) { ${spec.store('row', 'col', `c${g * 4 + i}_${h}[${j}]`)} } }`);
        }
      }
    }
  }
  L('}');
  return lines.join('\n');
}
