// AssemblyScript source of the CPU backend's WebAssembly SIMD kernels (compiled by
// scripts/build-wasm.ts into src/cpu/wasm/kernels.generated.ts; run `npm run build:wasm`).
//
// One 4x8 register-tile micro-kernel serves dense matmul and all three block-sparse products.
// Operands are packed by the caller (JS) so the kernel only streams contiguous memory:
//   A panels: [mBlocks][K][4]  (4 rows interleaved, so one splat load per row and k)
//   B panels: [panels][K][8]   (8 columns side by side, two v128 loads per k)
// All pointers are byte offsets into linear memory; sizes count floats.

/** C[0..4, 0..8] (row stride ldc floats) = (accumulate ? C : 0) + A(4 x len) * B(len x 8). */
function tile(a: usize, b: usize, len: i32, c: usize, ldc: i32, accumulate: bool): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  for (let k = 0; k < len; k++) {
    const b0 = v128.load(b);
    const b1 = v128.load(b, 16);
    const a0 = v128.load32_splat(a);
    c00 = f32x4.add(c00, f32x4.mul(a0, b0));
    c01 = f32x4.add(c01, f32x4.mul(a0, b1));
    const a1 = v128.load32_splat(a, 4);
    c10 = f32x4.add(c10, f32x4.mul(a1, b0));
    c11 = f32x4.add(c11, f32x4.mul(a1, b1));
    const a2 = v128.load32_splat(a, 8);
    c20 = f32x4.add(c20, f32x4.mul(a2, b0));
    c21 = f32x4.add(c21, f32x4.mul(a2, b1));
    const a3 = v128.load32_splat(a, 12);
    c30 = f32x4.add(c30, f32x4.mul(a3, b0));
    c31 = f32x4.add(c31, f32x4.mul(a3, b1));
    a += 16;
    b += 32;
  }
  const row = <usize>ldc << 2;
  if (accumulate) {
    c00 = f32x4.add(c00, v128.load(c)); c01 = f32x4.add(c01, v128.load(c, 16));
    c10 = f32x4.add(c10, v128.load(c + row)); c11 = f32x4.add(c11, v128.load(c + row, 16));
    c20 = f32x4.add(c20, v128.load(c + 2 * row)); c21 = f32x4.add(c21, v128.load(c + 2 * row, 16));
    c30 = f32x4.add(c30, v128.load(c + 3 * row)); c31 = f32x4.add(c31, v128.load(c + 3 * row, 16));
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + row, c10); v128.store(c + row, c11, 16);
  v128.store(c + 2 * row, c20); v128.store(c + 2 * row, c21, 16);
  v128.store(c + 3 * row, c30); v128.store(c + 3 * row, c31, 16);
}

/** Rows of A kept hot in L2 while every output panel passes over them. */
const M_CHUNK: i32 = 16;
/** Length of the reduction axis processed per pass, so operand strips fit in L1. */
const K_CHUNK: i32 = 256;

/**
 * Block-row sparse product (dense matmul is the case of one block row with one entry):
 *   C[m, r*bsN + n] = sum over entries e of block row r of  A[m, kIdx[e]*bsK + k] * W_e[k, n]
 * A: packed [mBlocks][K][4]; W: packed per entry e as [bsN/8 panels][bsK][8], entries in list order;
 * ptr [outBlocks + 1] and kIdx (i32) delimit each block row's entries; C: [mBlocks*4, ldc].
 */
export function bsmm(ap: usize, K: i32, mBlocks: i32, ptr: usize, kIdx: usize, outBlocks: i32,
  bsN: i32, bsK: i32, wp: usize, c: usize, ldc: i32): void {
  const panels = bsN >> 3;
  const panelBytes = <usize>bsK * 32;
  for (let mb0 = 0; mb0 < mBlocks; mb0 += M_CHUNK) {
    const mbEnd = min(mb0 + M_CHUNK, mBlocks);
    for (let r = 0; r < outBlocks; r++) {
      const e0 = load<i32>(ptr + (<usize>r << 2));
      const e1 = load<i32>(ptr + (<usize>(r + 1) << 2));
      for (let q = 0; q < panels; q++) {
        for (let mb = mb0; mb < mbEnd; mb++) {
          const out = c + ((<usize>mb * 4 * ldc + <usize>r * bsN + <usize>q * 8) << 2);
          if (e0 == e1) {
            tile(ap, wp, 0, out, ldc, false); // an empty block row writes zeros
            continue;
          }
          const aRow = ap + ((<usize>mb * K) << 4);
          for (let e = e0; e < e1; e++) {
            const k0 = <usize>load<i32>(kIdx + (<usize>e << 2)) * bsK;
            tile(aRow + (k0 << 4), wp + (<usize>e * panels + q) * panelBytes, bsK, out, ldc, e != e0);
          }
        }
      }
    }
  }
}

/**
 * SDDMM: for each block b at (rowIdx[b], colIdx[b]):
 *   out[b][i, j] = sum_m AT[rowIdx[b]*bs + i, m] * X[m, colIdx[b]*bs + j]
 * AT: packed [rows/4][M][4] (the transposed gradient), X: packed [cols/8][M][8]; out [nnz][bs][bs].
 */
export function sddmm(atp: usize, xp: usize, M: i32, rowIdx: usize, colIdx: usize, nnz: i32, bs: i32, out: usize): void {
  const rb = bs >> 2;
  const cb = bs >> 3;
  const aBytes = <usize>M << 4;
  const bBytes = <usize>M << 5;
  for (let b = 0; b < nnz; b++) {
    const r = <usize>load<i32>(rowIdx + (<usize>b << 2));
    const col = <usize>load<i32>(colIdx + (<usize>b << 2));
    const blockOut = out + ((<usize>b * bs * bs) << 2);
    // Chunks of the long m axis keep both operand strips in L1.
    for (let m0 = 0; m0 < M; m0 += K_CHUNK) {
      const len = min(K_CHUNK, M - m0);
      for (let q = 0; q < cb; q++) {
        const bp = xp + (col * cb + q) * bBytes + (<usize>m0 << 5);
        for (let i = 0; i < rb; i++) {
          tile(atp + (r * rb + i) * aBytes + (<usize>m0 << 4), bp, len,
            blockOut + ((<usize>i * 4 * bs + <usize>q * 8) << 2), bs, m0 > 0);
        }
      }
    }
  }
}
