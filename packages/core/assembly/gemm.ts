// AssemblyScript source of the CPU backend's WebAssembly SIMD kernels (compiled by
// scripts/build-wasm.ts into src/cpu/wasm/kernels.generated.ts; run `npm run build:wasm`).
//
// One 4x8 register-tile micro-kernel serves dense matmul and all three block-sparse products.
//   A: row-major rows (row stride lda bytes); one splat load per row and k.
//   B: column panels [panels][K][8], 8 columns side by side: two v128 loads per k.
// The packing helpers below produce B panels (and transposes) inside linear memory, so the
// host only ever memcpys data in and out. All pointers are byte offsets; sizes count floats.

/**
 * C[0..4, 0..8] (row stride ldc floats) = (accumulate ? C : 0) + sum over entries e in [e0, e1) of
 *   A[0..4, kIdx[e]*kLen .. +kLen] * B_e, with B_e = kLen x 8 floats at w + e*wStride.
 * Accumulators stay in registers across entries, so a block row of small blocks costs no more
 * C traffic than one long dense row.
 */
function tile(a: usize, lda: usize, kIdx: usize, e0: i32, e1: i32, kLen: i32, w: usize, wStride: usize, c: usize, ldc: i32, accumulate: bool): void {
  let c00 = f32x4.splat(0),
    c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0),
    c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0),
    c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0),
    c31 = f32x4.splat(0);
  const kBytes = (<usize>kLen) << 2;
  for (let e = e0; e < e1; e++) {
    const a0p = a + <usize>load<i32>(kIdx + ((<usize>e) << 2)) * kBytes;
    const a1p = a0p + lda;
    const a2p = a0p + 2 * lda;
    const a3p = a0p + 3 * lda;
    let b = w + <usize>e * wStride;
    for (let k: usize = 0; k < kBytes; k += 4) {
      const b0 = v128.load(b);
      const b1 = v128.load(b, 16);
      const x0 = v128.load32_splat(a0p + k);
      c00 = f32x4.add(c00, f32x4.mul(x0, b0));
      c01 = f32x4.add(c01, f32x4.mul(x0, b1));
      const x1 = v128.load32_splat(a1p + k);
      c10 = f32x4.add(c10, f32x4.mul(x1, b0));
      c11 = f32x4.add(c11, f32x4.mul(x1, b1));
      const x2 = v128.load32_splat(a2p + k);
      c20 = f32x4.add(c20, f32x4.mul(x2, b0));
      c21 = f32x4.add(c21, f32x4.mul(x2, b1));
      const x3 = v128.load32_splat(a3p + k);
      c30 = f32x4.add(c30, f32x4.mul(x3, b0));
      c31 = f32x4.add(c31, f32x4.mul(x3, b1));
      b += 32;
    }
  }
  const row = (<usize>ldc) << 2;
  if (accumulate) {
    c00 = f32x4.add(c00, v128.load(c));
    c01 = f32x4.add(c01, v128.load(c, 16));
    c10 = f32x4.add(c10, v128.load(c + row));
    c11 = f32x4.add(c11, v128.load(c + row, 16));
    c20 = f32x4.add(c20, v128.load(c + 2 * row));
    c21 = f32x4.add(c21, v128.load(c + 2 * row, 16));
    c30 = f32x4.add(c30, v128.load(c + 3 * row));
    c31 = f32x4.add(c31, v128.load(c + 3 * row, 16));
  }
  v128.store(c, c00);
  v128.store(c, c01, 16);
  v128.store(c + row, c10);
  v128.store(c + row, c11, 16);
  v128.store(c + 2 * row, c20);
  v128.store(c + 2 * row, c21, 16);
  v128.store(c + 3 * row, c30);
  v128.store(c + 3 * row, c31, 16);
}

/** Rows of A kept hot in L2 while every output panel passes over them. */
const M_CHUNK: i32 = 16;
/** Length of the SDDMM reduction axis processed per pass, so both operand strips stay in L1. */
const K_CHUNK: i32 = 256;
/** A k-block index of 0 for single-entry products (static data, below the host's heap). */
const ZERO_INDEX: usize = memory.data<i32>([0]);

/**
 * Block-row sparse product (dense matmul is the case of one block row with one entry):
 *   C[m, r*bsN + n] = sum over entries e of block row r of  A[m, kIdx[e]*bsK + k] * W_e[k, n]
 * A: rows of 4-row blocks mbStart..mBlocks-1, lda floats apart; W: packed per entry e as [bsN/8][bsK][8] in list order;
 * ptr [outBlocks + 1] and kIdx (i32) delimit each block row's entries; C: [mBlocks*4, ldc].
 */
export function bsmm(
  a: usize,
  ldaFloats: i32,
  mbStart: i32,
  mBlocks: i32,
  ptr: usize,
  kIdx: usize,
  outBlocks: i32,
  bsN: i32,
  bsK: i32,
  wp: usize,
  c: usize,
  ldc: i32,
): void {
  const panels = bsN >> 3;
  const panelBytes = <usize>bsK * 32;
  const lda = (<usize>ldaFloats) << 2;
  // Row blocks [mbStart, mBlocks): threads split a product by row blocks.
  for (let mb0 = mbStart; mb0 < mBlocks; mb0 += M_CHUNK) {
    const mbEnd = min(mb0 + M_CHUNK, mBlocks);
    for (let r = 0; r < outBlocks; r++) {
      const e0 = load<i32>(ptr + ((<usize>r) << 2));
      const e1 = load<i32>(ptr + ((<usize>(r + 1)) << 2));
      for (let q = 0; q < panels; q++) {
        for (let mb = mb0; mb < mbEnd; mb++) {
          const out = c + ((<usize>mb * 4 * ldc + <usize>r * bsN + <usize>q * 8) << 2);
          tile(a + <usize>mb * 4 * lda, lda, kIdx, e0, e1, bsK, wp + <usize>q * panelBytes, <usize>panels * panelBytes, out, ldc, false);
        }
      }
    }
  }
}

/**
 * SDDMM: for each block b at (rowIdx[b], colIdx[b]):
 *   out[b][i, j] = sum_m AT[rowIdx[b]*bs + i, m] * X[m, colIdx[b]*bs + j]
 * AT: [rows][M] row-major (the transposed gradient), X: panels [cols/8][M][8]; out [nnz][bs][bs].
 */
export function sddmm(at: usize, xp: usize, M: i32, rowIdx: usize, colIdx: usize, bStart: i32, nnz: i32, bs: i32, out: usize): void {
  const rb = bs >> 2;
  const cb = bs >> 3;
  const lda = (<usize>M) << 2;
  const bBytes = (<usize>M) << 5;
  // Blocks [bStart, nnz): threads split the SDDMM by blocks.
  for (let b = bStart; b < nnz; b++) {
    const r = <usize>load<i32>(rowIdx + ((<usize>b) << 2));
    const col = <usize>load<i32>(colIdx + ((<usize>b) << 2));
    const blockOut = out + ((<usize>b * bs * bs) << 2);
    // Chunks of the long m axis keep both operand strips in L1.
    for (let m0 = 0; m0 < M; m0 += K_CHUNK) {
      const len = min(K_CHUNK, M - m0);
      for (let q = 0; q < cb; q++) {
        const bp = xp + (col * cb + q) * bBytes + ((<usize>m0) << 5);
        for (let i = 0; i < rb; i++) {
          tile(
            at + (r * rb + i) * 4 * lda + ((<usize>m0) << 2),
            lda,
            ZERO_INDEX,
            0,
            1,
            len,
            bp,
            0,
            blockOut + ((<usize>i * 4 * bs + <usize>q * 8) << 2),
            bs,
            m0 > 0,
          );
        }
      }
    }
  }
}

/**
 * dst [panels][K][8] from row-major src [K][ld] (ld >= panels*8). Rows are taken 64 at a time so
 * the source strip stays in cache while every panel receives a contiguous 2 KiB run.
 */
export function packPanels(src: usize, K: i32, ld: i32, panels: i32, dst: usize): void {
  const rowBytes = (<usize>ld) << 2;
  const panelBytes = (<usize>K) << 5;
  for (let k0 = 0; k0 < K; k0 += 64) {
    const k1 = min(k0 + 64, K);
    for (let p = 0; p < panels; p++) {
      const d = dst + <usize>p * panelBytes;
      const s = src + ((<usize>p) << 5);
      for (let k = k0; k < k1; k++) {
        const from = s + <usize>k * rowBytes;
        const to = d + ((<usize>k) << 5);
        v128.store(to, v128.load(from));
        v128.store(to, v128.load(from, 16), 16);
      }
    }
  }
}

/**
 * Packs blocks order[0..nnz) of src [*, bs, bs] into dst [nnz][bs/8][bs][8]. Without transpose a
 * panel holds block columns q*8..+8 for every block row (k = row); with transpose, block rows
 * q*8..+8 for every block column (k = column), i.e. panels of the transposed block.
 */
export function packBlocks(src: usize, order: usize, nnz: i32, bs: i32, transpose: bool, dst: usize): void {
  const bb = (<usize>(bs * bs)) << 2;
  for (let e = 0; e < nnz; e++) {
    const s = src + <usize>load<i32>(order + ((<usize>e) << 2)) * bb;
    const d = dst + <usize>e * bb;
    for (let q = 0; q < bs >> 3; q++) {
      const dq = d + <usize>q * bs * 32;
      for (let k = 0; k < bs; k++) {
        if (transpose) {
          for (let i = 0; i < 8; i++) store<f32>(dq + ((<usize>k) << 5) + ((<usize>i) << 2), load<f32>(s + ((<usize>(q * 8 + i) * bs + k) << 2)));
        } else {
          const from = s + ((<usize>k * bs + q * 8) << 2);
          v128.store(dq + ((<usize>k) << 5), v128.load(from));
          v128.store(dq + ((<usize>k) << 5), v128.load(from, 16), 16);
        }
      }
    }
  }
}

/** dst [cols][rows] = src [rows][cols]^T where src rows are ldSrc floats apart; 8x8 tiles for cache locality. */
export function transpose(src: usize, rows: i32, cols: i32, ldSrc: i32, dst: usize): void {
  for (let r0 = 0; r0 < rows; r0 += 8) {
    const r1 = min(r0 + 8, rows);
    for (let c0 = 0; c0 < cols; c0 += 8) {
      const c1 = min(c0 + 8, cols);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) {
          store<f32>(dst + ((<usize>c * rows + r) << 2), load<f32>(src + ((<usize>r * ldSrc + c) << 2)));
        }
      }
    }
  }
}

/** dst [panels][K][8] from src holding the transposed matrix as rows: dst[p][k][c] = src[(p*8 + c)*ld + k]. */
export function packPanelsT(src: usize, K: i32, ld: i32, panels: i32, dst: usize): void {
  const rowBytes = (<usize>ld) << 2;
  for (let p = 0; p < panels; p++) {
    const d = dst + <usize>p * K * 32;
    const s = src + <usize>p * 8 * rowBytes;
    for (let k = 0; k < K; k++) {
      const sk = s + ((<usize>k) << 2);
      for (let c = 0; c < 8; c++) store<f32>(d + ((<usize>k) << 5) + ((<usize>c) << 2), load<f32>(sk + <usize>c * rowBytes));
    }
  }
}
