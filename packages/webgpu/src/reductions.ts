/**
 * WGSL generators of the reductions: workgroup-wide sum/max (subgroups where available), row-wise
 * kernels (laneRowKernel: softmax, layer norm, long row reductions; a row per subgroup, per 32
 * invocations or per workgroup), several short rows per workgroup for plain reductions, and column
 * reductions split across workgroups.
 */
import { WG } from './context.ts';
import { type Uniforms, uniforms } from './uniforms.ts';
import { PARAMS, SUBGROUP_NAN } from './wgsl.ts';

/**
 * Workgroup-wide sum and max over 256 invocations. With subgroups: one subgroup reduction, one
 * barrier, then every subgroup folds the per-subgroup partials (no assumption about which
 * invocations share a subgroup). Without: a tree in workgroup memory (eight barriers).
 */
export function reduceWgsl(subgroups: boolean): string {
  if (!subgroups) {
    return /* wgsl */ `
var<workgroup> red: array<f32, 256>;
fn reduceSum(v: f32, l: u32) -> f32 {
  red[l] = v; workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) { if (l < s) { red[l] += red[l + s]; } workgroupBarrier(); }
  let r = red[0]; workgroupBarrier(); return r;
}
fn reduceMax(v: f32, l: u32) -> f32 {
  red[l] = v; workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) { if (l < s) { red[l] = nmax(red[l], red[l + s]); } workgroupBarrier(); }
  let r = red[0]; workgroupBarrier(); return r;
}`;
  }
  return /* wgsl */ `${SUBGROUP_NAN}
var<workgroup> red: array<f32, 256>;
var<private> sgLane: u32;
var<private> sgSize: u32;
fn reduceSum(v: f32, l: u32) -> f32 {
  let s = subgroupAdd(v);
  red[l] = select(0.0, s, sgLane == 0u);
  workgroupBarrier();
  var r = 0.0;
  for (var j = sgLane; j < 256u; j += sgSize) { r += red[j]; }
  let total = subgroupAdd(r);
  workgroupBarrier();
  return total;
}
fn reduceMax(v: f32, l: u32) -> f32 {
  let s = sgMaxN(v);
  red[l] = select(-posInf(), s, sgLane == 0u);
  workgroupBarrier();
  var r = -posInf();
  for (var j = sgLane; j < 256u; j += sgSize) { r = nmax(r, red[j]); }
  let total = sgMaxN(r);
  workgroupBarrier();
  return total;
}`;
}

/**
 * WGSL pieces of a float reduction: its identity, how two values combine, and the subgroup
 * operation. max and min propagate NaN (core's edge-case rules).
 */
export function reduceWgslOps(op: 'sum' | 'max' | 'min'): { init: string; combine: (a: string, v: string) => string; subgroupOp: string } {
  return {
    init: op === 'sum' ? '0.0' : op === 'max' ? '-posInf()' : 'posInf()',
    combine: (a, v) => (op === 'sum' ? `${a} + ${v}` : `n${op}(${a}, ${v})`),
    subgroupOp: op === 'sum' ? 'subgroupAdd' : op === 'max' ? 'sgMaxN' : 'sgMinN',
  };
}

/** Column reductions: a workgroup covers COLUMN_TILE adjacent columns with 256 / COLUMN_TILE row lanes. */
export const COLUMN_TILE = 64;
const COLUMN_LANES = WG / COLUMN_TILE;
/** Column reductions split the rows until about this many workgroups run, but not below COLUMN_MIN_ROWS rows each. */
export const COLUMN_TARGET_GROUPS = 512;
export const COLUMN_MIN_ROWS = 64;

export interface ColumnSum {
  init: string;
  /** The value at row `r`, column `c` (of outer slice `o`; `n` rows and `inner` columns per slice). */
  value: string;
  combine: (acc: string, v: string) => string;
  /** Output array, written at [(split * outer + o) * inner + c]. */
  out: string;
}

/**
 * Reduces x [outer, n, inner] over n for each (o, c): loads are coalesced along the columns, each
 * workgroup covers the rows of one split (COLUMN_WORDS: `chunk` rows per split), and the lanes
 * are combined in workgroup memory. Several sums can share the pass.
 */
/** columnKernel's words: x [outer, n, inner] in splits of `chunk` rows, `tiles` column tiles per outer slice. */
export const COLUMN_WORDS = uniforms(['outer', 'n', 'inner', 'chunk', 'tiles']);
/** The words of a row kernel's rows and their length; kernels with more words declare them after these. */
export const ROW_WORDS = uniforms(['rows', 'n']);

export function columnKernel(bindings: string, sums: ColumnSum[]): string {
  return `${PARAMS}
${bindings}
${sums.map((_, k) => `var<workgroup> part${k}: array<f32, ${WG}>;`).join('\n')}
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${COLUMN_WORDS.lets}
  // (outer slice, column tile) pairs are folded over grid x and y; z is the split.
  let pair = wg.x + wg.y * nwg.x;
  if (pair >= outer * tiles) { return; }
  let o = pair / tiles; let split = wg.z;
  let c = (pair % tiles) * ${COLUMN_TILE}u + lid % ${COLUMN_TILE}u; let lane = lid / ${COLUMN_TILE}u;
  let r0 = split * chunk; let r1 = min(n, r0 + chunk);
  ${sums.map((m, k) => `var acc${k} = ${m.init};`).join(' ')}
  if (c < inner) {
    for (var r = r0 + lane; r < r1; r += ${COLUMN_LANES}u) {
      ${sums.map((m, k) => `acc${k} = ${m.combine(`acc${k}`, m.value)};`).join('\n      ')}
    }
  }
  ${sums.map((_, k) => `part${k}[lid] = acc${k};`).join(' ')}
  workgroupBarrier();
  if (lid < ${COLUMN_TILE}u && c < inner) {
    ${sums
      .map(
        (m, k) => `var t${k} = part${k}[lid];
    for (var q = 1u; q < ${COLUMN_LANES}u; q++) { t${k} = ${m.combine(`t${k}`, `part${k}[lid + q * ${COLUMN_TILE}u]`)}; }
    ${m.out}[(split * outer + o) * inner + c] = t${k};`,
      )
      .join('\n    ')}
  }
}`;
}

/** Row reductions of rows up to SHORT_ROW long handle ROWS_PER_GROUP rows per workgroup. */
export const SHORT_ROW = 4096;
export const ROWS_PER_GROUP = 8;

/**
 * Reduces ROWS_PER_GROUP rows of X [rows, n] per workgroup (needs subgroups): every thread
 * accumulates its strided share of each row, subgroups fold those, and after one barrier each
 * subgroup folds the per-subgroup partials of every row. Max and min take the plain max / min per
 * element and keep the largest magnitude bits seen (an integer max): a NaN among them turns the
 * thread's result into NaN once, after its loop. NaN-aware combines per element (nmax) ran max of
 * rows of 1024 at 0.163 ms against sum's 0.121 on an H100.
 */
export function shortRowsKernel(op: 'sum' | 'max' | 'min'): string {
  const { init, combine, subgroupOp } = reduceWgslOps(op);
  const R = ROWS_PER_GROUP;
  const rows = Array.from({ length: R }, (_, r) => r);
  const accumulate = (r: number) =>
    op === 'sum' ? `a${r} = a${r} + X[base + j];` : `let v = X[base + j]; a${r} = ${op}(a${r}, v); q${r} = max(q${r}, bitcast<u32>(v) & 0x7fffffffu);`;
  const nanCheck = (r: number) => (op === 'sum' ? '' : ` if (q${r} > 0x7f800000u) { a${r} = nanF(); }`);
  return `${PARAMS}
${SUBGROUP_NAN}
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
var<workgroup> red: array<f32, ${R * WG}>;
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) width: u32) {
  ${ROW_WORDS.lets}
  let row0 = (wg.x + wg.y * 65535u) * ${R}u;
  ${rows.map((r) => `var a${r} = ${init};${op === 'sum' ? '' : ` var q${r} = 0u;`}`).join(' ')}
  ${rows.map((r) => `if (row0 + ${r}u < rows) { let base = (row0 + ${r}u) * n; for (var j = l; j < n; j += ${WG}u) { ${accumulate(r)} }${nanCheck(r)} }`).join('\n  ')}
  ${rows.map((r) => `red[${r * WG}u + l] = select(${init}, ${subgroupOp}(a${r}), lane == 0u);`).join('\n  ')}
  workgroupBarrier();
  ${rows
    .map(
      (r) => `var b${r} = ${init}; for (var j = lane; j < ${WG}u; j += width) { b${r} = ${combine(`b${r}`, `red[${r * WG}u + j]`)}; }
  let c${r} = ${subgroupOp}(b${r});
  if (l == 0u && row0 + ${r}u < rows) { Y[row0 + ${r}u] = c${r}; }`,
    )
    .join('\n  ')}
}`;
}

/** Bindings of a row kernel reading X (and Dy) and writing Y. */
export function rowBindings(withDy: boolean): string {
  return `@group(0) @binding(1) var<storage, read> X: array<f32>;
${withDy ? '@group(0) @binding(2) var<storage, read> Dy: array<f32>;' : ''}
@group(0) @binding(${withDy ? 3 : 2}) var<storage, read_write> Y: array<f32>;`;
}

/**
 * Rows up to LANE_ROW long go several to a workgroup in laneRowKernel; longer ones one each. On an
 * H100 rows of 1024 ran slower a subgroup each than a workgroup each (softmax of 2^26 floats 0.338
 * against 0.277 ms), rows of 256-512 faster (NOTES 35).
 */
export const LANE_ROW = 512;
/** Invocations per row of laneRowKernel where subgroups do not serve (a tree in workgroup memory). */
export const TREE_LANES = 32;

/**
 * How laneRowKernel reduces over a row: 'subgroup' (a row is one subgroup: lanes = the subgroup
 * size, where probeRowSubgroups found subgroups of consecutive invocations; no barrier), 'tree'
 * (TREE_LANES invocations, a tree in workgroup memory) or 'workgroup' (a row per workgroup of WG
 * invocations, reduceWgsl: subgroups where the device has them).
 */
export type RowReduction = 'subgroup' | 'tree' | 'workgroup';

/**
 * A row-wise kernel (softmax, layer norm and their backward): `lanes` invocations per row, WG /
 * lanes rows per workgroup, each lane striding its row by LANES (a WGSL constant) from `lane`.
 * Short rows go several to a workgroup: one workgroup per row of 256 would leave most of its
 * invocations one element and pay its barriers per row. `laneSum` / `laneMax` reduce over the
 * lanes of the caller's row (see RowReduction). Every invocation calls them, rows past the end
 * included (`live` false: the body must not touch memory there). `words` declares the uniform
 * words, `rows` and `n` first (ROW_WORDS, or a declaration that extends it).
 */
export function laneRowKernel(
  bindings: string,
  words: Pick<Uniforms<string>, 'lets'>,
  body: string,
  lanes: number,
  reduction: RowReduction,
  subgroups: boolean,
): string {
  const tree = (combine: string) => `lanes[l] = v; workgroupBarrier();
  for (var s = ${lanes / 2}u; s > 0u; s >>= 1u) { if (l % LANES < s) { lanes[l] = ${combine}; } workgroupBarrier(); }
  let r = lanes[l - l % LANES]; workgroupBarrier(); return r;`;
  const reductions = {
    subgroup: `fn laneSum(v: f32, l: u32) -> f32 { return subgroupAdd(v); }
${SUBGROUP_NAN}
fn laneMax(v: f32, l: u32) -> f32 { return sgMaxN(v); }`,
    tree: `var<workgroup> lanes: array<f32, ${WG}>;
fn laneSum(v: f32, l: u32) -> f32 {
  ${tree('lanes[l] + lanes[l + s]')}
}
fn laneMax(v: f32, l: u32) -> f32 {
  ${tree('nmax(lanes[l], lanes[l + s])')}
}`,
    workgroup: `${reduceWgsl(subgroups)}
fn laneSum(v: f32, l: u32) -> f32 { return reduceSum(v, l); }
fn laneMax(v: f32, l: u32) -> f32 { return reduceMax(v, l); }`,
  }[reduction];
  // reduceWgsl's subgroup form reads the invocation's subgroup lane and size from private variables.
  const sgBuiltins = reduction === 'workgroup' && subgroups;
  return `${PARAMS}
${bindings}
const LANES = ${lanes}u;
${reductions}
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32${sgBuiltins ? ', @builtin(subgroup_invocation_id) sgl: u32, @builtin(subgroup_size) sgs: u32' : ''}) {${
    sgBuiltins
      ? `
  sgLane = sgl; sgSize = sgs;`
      : ''
  }
  ${
    reduction === 'workgroup'
      ? // The workgroup's one row: past the end the whole workgroup leaves (uniformly, before any
        // barrier), and the body's bounds stay plain (with 'live' derived per lane, rows of 1024 ran
        // 25% slower).
        `${words.lets} let row = wg.x + wg.y * 65535u; let lane = l;
  if (row >= rows) { return; } let live = true;`
      : `${words.lets} let row = (wg.x + wg.y * 65535u) * ${WG / lanes}u + l / LANES; let lane = l % LANES;
  let live = row < rows;`
  }
  let base = row * n;${body}
}`;
}

export function gridFor(rows: number): [number, number, number] {
  const x = Math.min(rows, 65535);
  return [x, Math.ceil(rows / x), 1];
}
