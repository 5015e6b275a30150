// Fused attention in the manner of FlashAttention-2 (Dao, 2023): softmax(scale q k^T) v without the
// [tq, tk] scores in memory, forward and backward, for bfloat16 and float16 heads of size 32, 64
// or 128, on the tensor cores (mma.sync m16n8k16, float32 accumulation). Operands are read and
// written where they lie (Heads: heads split out of a [B, T, H, d] projection are strided views).
//
// Forward: a block of 4 warps takes 64 queries; each warp keeps 16 query rows' scores, running
// max and sum and output in registers, and walks the keys 64 at a time (online softmax, base 2).
// The probabilities go from the score accumulators straight into the A operand of P V (the
// accumulator layout of one m16n8 tile pair is the A layout of one m16k16 tile). Writes the
// log-sum-exp of each row for the backward pass.
//
// Backward: a block takes 64 keys (a warp 16) and walks the queries BR at a time, recomputing
// P^T = exp(scale K Q^T - lse) from the saved log-sum-exp: dV += P^T dO, dP^T = V dO^T,
// dS^T = P^T (dP^T - D) with D = rowsum(dO O) (attn_bwd_dot), dK += scale dS^T Q; dQ += scale dS K
// is accumulated across key blocks with float32 atomics and converted at the end.
//
// Dropout (p > 0) drops the weight of (head, query i, key j) where the counter-based generator of
// core's random.ts gives u(key, (head tq + i) tk + j) < p, exactly the mask dropout() draws over
// the [heads, tq, tk] weights, and scales the others by keepScale; the row sums stay those of the
// undropped weights, and backward recomputes the mask.
//
// Tiles are staged row-major in shared memory by cp.async, the next tile's copies in flight while
// the current one is multiplied (two buffers), and fragments are loaded by ldmatrix: a B operand
// stored [n][k] plainly, one stored [k][n] (V in P V, dO and Q in the backward's products, K in
// dQ) with .trans, so nothing is transposed on the way in. Rows are padded by 8 elements, which
// puts the 8 rows of an 8x8 matrix load in distinct banks.
#include "async_mma.cuh"
#include "half.cuh"

namespace {
constexpr int BQ = 64;  // queries per forward block
constexpr int BK = 64;  // keys per tile (forward) and per backward block
constexpr int PAD = 8;
constexpr float LOG2E = 1.4426950408889634f;
}  // namespace

// Where an operand's heads lie (core's AttentionOperand, in elements): row i of head b (of batch x
// heads) starts at (b / heads) batch + (b % heads) head + i row. Every field is a multiple of 8, so
// a row's 16-byte pieces are aligned.
struct Heads {
  int batch, head, row;
};

namespace {
__device__ __forceinline__ size_t headStart(Heads l, int b, int heads) { return (size_t)(b / heads) * l.batch + (size_t)(b % heads) * l.head; }

template <typename E>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

template <typename E>
__device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2]);
template <>
__device__ __forceinline__ void mma<__nv_bfloat16>(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  mmaBf16(c, a, b);
}
template <>
__device__ __forceinline__ void mma<__half>(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void ldmatrix4(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
}
__device__ __forceinline__ void ldmatrix4T(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
}
// The A fragment of the 16 x 16 tile at (r0, k0) of row-major X (row stride ld).
template <typename E>
__device__ __forceinline__ void loadA(uint32_t a[4], const E* X, int ld, int r0, int k0, int lane) {
  ldmatrix4(a, X + (r0 + (lane & 15)) * ld + k0 + (lane >> 4) * 8);
}
// The B fragments of the n-tiles n0 and n0 + 8 (b[0..1], b[2..3]) at k0..k0+15, B stored as Y[n][k].
template <typename E>
__device__ __forceinline__ void loadB2(uint32_t b[4], const E* Y, int ld, int n0, int k0, int lane) {
  const int i = lane >> 3;
  ldmatrix4(b, Y + (n0 + (lane & 7) + (i >> 1) * 8) * ld + k0 + (i & 1) * 8);
}
// The same with B stored as Z[k][n] (row-major in k): ldmatrix's transposing form.
template <typename E>
__device__ __forceinline__ void loadB2T(uint32_t b[4], const E* Z, int ld, int k0, int n0, int lane) {
  const int i = lane >> 3;
  ldmatrix4T(b, Z + (k0 + (lane & 7) + (i & 1) * 8) * ld + n0 + (i >> 1) * 8);
}
// The A fragment of keys (or queries) 16s..16s+15 from the float32 accumulators of the m16n8 tiles
// 2s and 2s+1 (the same rows): the accumulator layout of a tile pair is the A layout.
template <typename E>
__device__ __forceinline__ void accToA(uint32_t a[4], const float c0[4], const float c1[4]) {
  a[0] = pack2<E>(c0[0], c0[1]);
  a[1] = pack2<E>(c0[2], c0[3]);
  a[2] = pack2<E>(c1[0], c1[1]);
  a[3] = pack2<E>(c1[2], c1[3]);
}

// s (16 rows x BK keys, per warp) = A B^T for the warp's A fragments a (16 x D, in registers) and a
// key tile Y [BK][D + PAD] (each key's D values contiguous): Q K^T, or dO V^T.
template <typename E, int D>
__device__ __forceinline__ void rowsTimesKeys(float s[BK / 8][4], const uint32_t a[D / 16][4], const E* Y, int lane) {
#pragma unroll
  for (int j = 0; j < BK / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
    for (int j = 0; j < BK / 16; j++) {
      uint32_t b[4];
      loadB2(b, Y, D + PAD, 16 * j, 16 * kk, lane);
      mma<E>(s[2 * j], a[kk], b);
      mma<E>(s[2 * j + 1], a[kk], b + 2);
    }
  }
}
// acc (16 rows x D) += p Z for the warp's 16 x BK accumulators p (the A operand, in registers) and a
// key tile Z [BK][D + PAD]: P V, or dS K.
template <typename E, int D>
__device__ __forceinline__ void addRowsTimesTile(float acc[D / 8][4], const float p[BK / 8][4], const E* Z, int lane) {
#pragma unroll
  for (int kk = 0; kk < BK / 16; kk++) {
    uint32_t pa[4];
    accToA<E>(pa, p[2 * kk], p[2 * kk + 1]);
#pragma unroll
    for (int n = 0; n < D / 16; n++) {
      uint32_t b[4];
      loadB2T(b, Z, D + PAD, 16 * kk, 16 * n, lane);
      mma<E>(acc[2 * n], pa, b);
      mma<E>(acc[2 * n + 1], pa, b + 2);
    }
  }
}
// The warp's 16 rows x D accumulators, times factor[r] (r: the row's half), into rows of out (row
// stride ld) in E; rows at or past `limit` are not written.
template <typename E, int D>
__device__ __forceinline__ void storeRows(E* out, int ld, const float acc[D / 8][4], const int rows[2], const float factor[2], int limit, int t) {
#pragma unroll
  for (int r = 0; r < 2; r++) {
    if (rows[r] >= limit) continue;
#pragma unroll
    for (int n = 0; n < D / 8; n++)
      *reinterpret_cast<uint32_t*>(out + (size_t)rows[r] * ld + 8 * n + 2 * t) = pack2<E>(acc[n][2 * r] * factor[r], acc[n][2 * r + 1] * factor[r]);
  }
}

// rows x D of src (row stride ld; rows beyond `valid` as zeros) into dst[r][c] (row stride D + PAD),
// 16 bytes at a time by cp.async (the caller commits and waits).
template <typename E, int D>
__device__ __forceinline__ void stageRows(E* dst, const E* src, int ld, int rows, int valid) {
  constexpr int CHUNKS = D / 8;
  for (int i = threadIdx.x; i < rows * CHUNKS; i += blockDim.x) {
    const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
    cpAsync16(dst + r * (D + PAD) + c, src + (size_t)(r < valid ? r : 0) * ld + c, r < valid);
  }
}

// core's counter-based generator (random.ts), as random_f32 computes it: uniform [0, 1) from 24 bits.
__device__ __forceinline__ uint32_t fmix(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}
__device__ __forceinline__ float uniformAt(uint32_t key, uint32_t i) {
  return (float)(fmix(fmix(i * 0x9e3779b1u + key) ^ key) >> 8) * (1.0f / 16777216.0f);
}
// The factor dropout applies to the weight of (query, key): 0 or keepScale; 1 without dropout.
struct Dropout {
  float p, keepScale;
  uint32_t key, base, tk;  // base: the head's first index, head tq tk
  __device__ __forceinline__ float operator()(int query, int k) const {
    if (p <= 0.f) return 1.f;
    return uniformAt(key, base + (uint32_t)query * tk + (uint32_t)k) < p ? 0.f : keepScale;
  }
};

// Quad reductions: the four threads of a group hold one row's columns.
__device__ __forceinline__ float quadMax(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quadSum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// grid (ceil(tq / 64), batch), 128 threads; dynamic shared memory: Qs [64][D+8], then K and V tiles
// [64][D+8] in two buffers each.
template <typename E, int D>
__device__ void forwardBody(const E* q, const E* k, const E* v, E* o, float* lse, Heads lq, Heads lk, Heads lv, Heads lo, int heads, int tq, int tk,
                            float scale, int causal, Dropout drop) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int LD = D + PAD, TILE = BK * LD;
  E* Qs = reinterpret_cast<E*>(smem);
  E* Ks = Qs + BQ * LD;  // [2][BK][LD]
  E* Vs = Ks + 2 * TILE;  // [2][BK][LD]
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  // Causal: the query blocks with the most key tiles (the last) start first, shortening the tail.
  const int head = blockIdx.y, q0 = (causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x) * BQ;
  q += headStart(lq, head, heads);
  k += headStart(lk, head, heads);
  v += headStart(lv, head, heads);
  const float c = scale * LOG2E;  // scores in base 2
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float acc[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  uint32_t qa[D / 16][4];
  const int rows[2] = {q0 + 16 * w + g, q0 + 16 * w + g + 8};
  const int tiles = causal ? min((tk + BK - 1) / BK, (q0 + BQ - 1) / BK + 1) : (tk + BK - 1) / BK;
  cpAsyncPipeline<2>(
      tiles,
      [&](int kt) {
        if (kt == 0) stageRows<E, D>(Qs, q + (size_t)q0 * lq.row, lq.row, BQ, tq - q0);
        const int k0 = kt * BK;
        stageRows<E, D>(Ks + (kt & 1) * TILE, k + (size_t)k0 * lk.row, lk.row, BK, tk - k0);
        stageRows<E, D>(Vs + (kt & 1) * TILE, v + (size_t)k0 * lv.row, lv.row, BK, tk - k0);
      },
      [&](int kt) {
        if (kt == 0) {
#pragma unroll
          for (int s = 0; s < D / 16; s++) loadA(qa[s], Qs, LD, 16 * w, 16 * s, lane);
        }
        const int k0 = kt * BK;
        const E* Kt = Ks + (kt & 1) * TILE;
        const E* Vt = Vs + (kt & 1) * TILE;
        float s[BK / 8][4];
        rowsTimesKeys<E, D>(s, qa, Kt, lane);
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < BK / 8; j++) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int key = k0 + 8 * j + 2 * t + (e & 1), row = rows[e >> 1];
            const bool masked = key >= tk || (causal && key > row);
            s[j][e] = masked ? -INFINITY : s[j][e] * c;
            mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
          }
        }
        float corr[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
          const float next = fmaxf(m[r], quadMax(mx[r]));
          corr[r] = next == -INFINITY ? 1.f : exp2f(m[r] - next);
          m[r] = next;
          l[r] *= corr[r];
        }
#pragma unroll
        for (int j = 0; j < BK / 8; j++) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const float mr = m[e >> 1];
            s[j][e] = mr == -INFINITY ? 0.f : exp2f(s[j][e] - mr);
            l[e >> 1] += s[j][e];
            s[j][e] *= drop(rows[e >> 1], k0 + 8 * j + 2 * t + (e & 1));
          }
        }
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
          acc[n][0] *= corr[0];
          acc[n][1] *= corr[0];
          acc[n][2] *= corr[1];
          acc[n][3] *= corr[1];
        }
        addRowsTimesTile<E, D>(acc, s, Vt, lane);
      });
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const float sum = quadSum(l[r]);
    inv[r] = sum > 0.f ? 1.f / sum : 0.f;
    if (t == 0 && rows[r] < tq) lse[(size_t)head * tq + rows[r]] = (m[r] + log2f(sum)) / LOG2E;
  }
  storeRows<E, D>(o + headStart(lo, head, heads), lo.row, acc, rows, inv, tq, t);
}

// D = rowsum(dO * O) per query, float32 [batch * tq]: a warp per row.
template <typename E, int D>
__device__ void dotBody(const E* o, const E* dout, float* dsum, Heads lo, Heads ld, int heads, int tq, int rows) {
  const int lane = threadIdx.x & 31;
  for (int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += gridDim.x * (blockDim.x >> 5)) {
    const int b = r / tq, i = r % tq;
    const E* orow = o + headStart(lo, b, heads) + (size_t)i * lo.row;
    const E* drow = dout + headStart(ld, b, heads) + (size_t)i * ld.row;
    float acc = 0.f;
    for (int j = lane; j < D; j += 32) acc += toF(orow[j]) * toF(drow[j]);
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) dsum[r] = acc;
  }
}

// grid (ceil(tk / 64), batch), 128 threads; BR queries per step (64, or 32 for D = 128 to stay in
// registers). dq32 (float32, zeroed) receives scale dS K by atomics. Dynamic shared memory: K and V
// [64][D+8], Q and dO tiles [BR][D+8] in two buffers each, dS [BR][64+8].
// DQ false: dK and dV only (dQ comes from attn_bwd_dq, without atomics).
template <typename E, int D, int BR, bool DQ = true>
__device__ void backwardBody(const E* q, const E* k, const E* v, const E* dout, const float* lse, const float* dsum, float* dq32, E* dk, E* dv,
                             Heads lq, Heads lk, Heads lv, Heads ldo, Heads ldk, Heads ldv, int heads, int tq, int tk, float scale, int causal,
                             Dropout drop) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int LD = D + PAD, TILE = BR * LD;
  E* Ks = reinterpret_cast<E*>(smem);
  E* Vs = Ks + BK * LD;
  E* Qs = Vs + BK * LD;     // [2][BR][LD]
  E* dOs = Qs + 2 * TILE;   // [2][BR][LD]
  E* dSs = dOs + 2 * TILE;  // [BR][BK + PAD]
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int head = blockIdx.y, k0 = blockIdx.x * BK;
  q += headStart(lq, head, heads);
  dout += headStart(ldo, head, heads);
  k += headStart(lk, head, heads);
  v += headStart(lv, head, heads);
  lse += (size_t)head * tq;
  dsum += (size_t)head * tq;
  dq32 += (size_t)head * tq * D;
  const float c = scale * LOG2E;
  float dK[D / 8][4], dV[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) dK[n][e] = dV[n][e] = 0.f;
  const int keys[2] = {k0 + 16 * w + g, k0 + 16 * w + g + 8};
  // dQ: the BR x D tile is shared among the warps: BR / 16 row tiles, the D / 8 column tiles of
  // each split among 4 / (BR / 16) warps.
  constexpr int WARPS_PER_ROW = 4 / (BR / 16), COLS = D / 8 / WARPS_PER_ROW;
  static_assert(COLS % 2 == 0, "dQ column tiles are loaded in pairs");
  const int qRow = 16 * (w / WARPS_PER_ROW), qCol = COLS * (w % WARPS_PER_ROW);
  const int first = causal ? (k0 / BR) * BR : 0;
  cpAsyncPipeline<2>(
      (tq - first + BR - 1) / BR,
      [&](int step) {
        if (step == 0) {
          stageRows<E, D>(Ks, k + (size_t)k0 * lk.row, lk.row, BK, tk - k0);
          stageRows<E, D>(Vs, v + (size_t)k0 * lv.row, lv.row, BK, tk - k0);
        }
        const int q0 = first + step * BR;
        stageRows<E, D>(Qs + (step & 1) * TILE, q + (size_t)q0 * lq.row, lq.row, BR, tq - q0);
        stageRows<E, D>(dOs + (step & 1) * TILE, dout + (size_t)q0 * ldo.row, ldo.row, BR, tq - q0);
      },
      [&](int step) {
        const int q0 = first + step * BR;
        const E* Qt = Qs + (step & 1) * TILE;
        const E* dOt = dOs + (step & 1) * TILE;
        // S^T and dP^T for this warp's 16 keys and the BR queries.
        float p[BR / 8][4], dp[BR / 8][4];
#pragma unroll
        for (int j = 0; j < BR / 8; j++)
#pragma unroll
          for (int e = 0; e < 4; e++) p[j][e] = dp[j][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
          uint32_t ka[4], va[4];
          loadA(ka, Ks, LD, 16 * w, 16 * kk, lane);
          loadA(va, Vs, LD, 16 * w, 16 * kk, lane);
#pragma unroll
          for (int j = 0; j < BR / 16; j++) {
            uint32_t b[4];
            loadB2(b, Qt, LD, 16 * j, 16 * kk, lane);
            mma<E>(p[2 * j], ka, b);
            mma<E>(p[2 * j + 1], ka, b + 2);
            loadB2(b, dOt, LD, 16 * j, 16 * kk, lane);
            mma<E>(dp[2 * j], va, b);
            mma<E>(dp[2 * j + 1], va, b + 2);
          }
        }
#pragma unroll
        for (int j = 0; j < BR / 8; j++) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int ql = 8 * j + 2 * t + (e & 1), query = q0 + ql, key = keys[e >> 1];
            const bool masked = query >= tq || key >= tk || (causal && key > query);
            const float z = masked ? 0.f : drop(query, key);
            const float pj = masked ? 0.f : exp2f(p[j][e] * c - lse[query] * LOG2E);
            p[j][e] = pj * z;                                     // the dropped weights, for dV
            dp[j][e] = masked ? 0.f : pj * (dp[j][e] * z - dsum[query]);  // dS^T
            if constexpr (DQ) dSs[ql * (BK + PAD) + 16 * w + g + 8 * (e >> 1)] = fromF<E>(dp[j][e]);
          }
        }
#pragma unroll
        for (int kk = 0; kk < BR / 16; kk++) {
          uint32_t pa[4], sa[4];
          accToA<E>(pa, p[2 * kk], p[2 * kk + 1]);
          accToA<E>(sa, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
          for (int n = 0; n < D / 16; n++) {
            uint32_t b[4];
            loadB2T(b, dOt, LD, 16 * kk, 16 * n, lane);
            mma<E>(dV[2 * n], pa, b);
            mma<E>(dV[2 * n + 1], pa, b + 2);
            loadB2T(b, Qt, LD, 16 * kk, 16 * n, lane);
            mma<E>(dK[2 * n], sa, b);
            mma<E>(dK[2 * n + 1], sa, b + 2);
          }
        }
        if constexpr (!DQ) return;
        __syncthreads();  // dS complete
        float dq[COLS][4];
#pragma unroll
        for (int n = 0; n < COLS; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
          uint32_t a[4];
          loadA(a, dSs, BK + PAD, qRow, 16 * kk, lane);
#pragma unroll
          for (int n = 0; n < COLS / 2; n++) {
            uint32_t b[4];
            loadB2T(b, Ks, LD, 16 * kk, 8 * qCol + 16 * n, lane);
            mma<E>(dq[2 * n], a, b);
            mma<E>(dq[2 * n + 1], a, b + 2);
          }
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
          const int query = q0 + qRow + g + 8 * r;
          if (query >= tq) continue;
#pragma unroll
          for (int n = 0; n < COLS; n++) {
            float* dst = dq32 + (size_t)query * D + 8 * (qCol + n) + 2 * t;
            atomicAdd(dst, dq[n][2 * r] * scale);
            atomicAdd(dst + 1, dq[n][2 * r + 1] * scale);
          }
        }
      });
  dk += headStart(ldk, head, heads);
  dv += headStart(ldv, head, heads);
#pragma unroll
  for (int r = 0; r < 2; r++) {
    if (keys[r] >= tk) continue;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
      *reinterpret_cast<uint32_t*>(dk + (size_t)keys[r] * ldk.row + 8 * n + 2 * t) = pack2<E>(dK[n][2 * r] * scale, dK[n][2 * r + 1] * scale);
      *reinterpret_cast<uint32_t*>(dv + (size_t)keys[r] * ldv.row + 8 * n + 2 * t) = pack2<E>(dV[n][2 * r], dV[n][2 * r + 1]);
    }
  }
}

// dQ without atomics (FlashAttention-2's backward split in two): a block of 4 warps takes 64
// queries, as the forward does, and walks the key tiles recomputing P = exp(scale Q K^T - lse) and
// dP = dO V^T, then dQ += scale dS K with dS = P (dP - D); each query's dQ is written once, in q's
// dtype and layout. grid (ceil(tq / 64), batch), 128 threads; dynamic shared memory: Qs and dOs
// [64][D+8], then K and V tiles [64][D+8] in two buffers each. Against dQ gathered by float32
// atomics in the dK / dV kernel it recomputes S and dP (7 products per tile pair instead of 5).
template <typename E, int D>
__device__ void dqBody(const E* q, const E* k, const E* v, const E* dout, const float* lse, const float* dsum, E* dq, Heads lq, Heads lk, Heads lv,
                       Heads ldo, Heads ldq, int heads, int tq, int tk, float scale, int causal, Dropout drop) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int LD = D + PAD, TILE = BK * LD;
  E* Qs = reinterpret_cast<E*>(smem);
  E* dOs = Qs + BQ * LD;
  E* Ks = dOs + BQ * LD;  // [2][BK][LD]
  E* Vs = Ks + 2 * TILE;  // [2][BK][LD]
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int head = blockIdx.y, q0 = (causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x) * BQ;
  q += headStart(lq, head, heads);
  dout += headStart(ldo, head, heads);
  k += headStart(lk, head, heads);
  v += headStart(lv, head, heads);
  lse += (size_t)head * tq;
  dsum += (size_t)head * tq;
  const float c = scale * LOG2E;
  const int rows[2] = {q0 + 16 * w + g, q0 + 16 * w + g + 8};
  float rowLse[2], rowD[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    rowLse[r] = rows[r] < tq ? lse[rows[r]] * LOG2E : 0.f;
    rowD[r] = rows[r] < tq ? dsum[rows[r]] : 0.f;
  }
  float acc[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  uint32_t qa[D / 16][4], da[D / 16][4];
  const int tiles = causal ? min((tk + BK - 1) / BK, (q0 + BQ - 1) / BK + 1) : (tk + BK - 1) / BK;
  cpAsyncPipeline<2>(
      tiles,
      [&](int kt) {
        if (kt == 0) {
          stageRows<E, D>(Qs, q + (size_t)q0 * lq.row, lq.row, BQ, tq - q0);
          stageRows<E, D>(dOs, dout + (size_t)q0 * ldo.row, ldo.row, BQ, tq - q0);
        }
        const int k0 = kt * BK;
        stageRows<E, D>(Ks + (kt & 1) * TILE, k + (size_t)k0 * lk.row, lk.row, BK, tk - k0);
        stageRows<E, D>(Vs + (kt & 1) * TILE, v + (size_t)k0 * lv.row, lv.row, BK, tk - k0);
      },
      [&](int kt) {
        if (kt == 0) {
#pragma unroll
          for (int s = 0; s < D / 16; s++) {
            loadA(qa[s], Qs, LD, 16 * w, 16 * s, lane);
            loadA(da[s], dOs, LD, 16 * w, 16 * s, lane);
          }
        }
        const int k0 = kt * BK;
        const E* Kt = Ks + (kt & 1) * TILE;
        const E* Vt = Vs + (kt & 1) * TILE;
        float sc[BK / 8][4], dp[BK / 8][4];
        rowsTimesKeys<E, D>(sc, qa, Kt, lane);
        rowsTimesKeys<E, D>(dp, da, Vt, lane);
        // dS = P (dP z - D), P recomputed from the log-sum-exp (0 where masked).
#pragma unroll
        for (int j = 0; j < BK / 8; j++) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int key = k0 + 8 * j + 2 * t + (e & 1), r = e >> 1, query = rows[r];
            const bool masked = query >= tq || key >= tk || (causal && key > query);
            const float p = masked ? 0.f : exp2f(sc[j][e] * c - rowLse[r]);
            sc[j][e] = masked ? 0.f : p * (dp[j][e] * drop(query, key) - rowD[r]);
          }
        }
        addRowsTimesTile<E, D>(acc, sc, Kt, lane);
      });
  const float factor[2] = {scale, scale};
  storeRows<E, D>(dq + headStart(ldq, head, heads), ldq.row, acc, rows, factor, tq, t);
}
}  // namespace

// Arguments: the operands, their Heads layouts, heads, then the problem (attention.ts's `problem`).
#define ATTENTION(NAME, E, D)                                                                                                      \
  extern "C" __global__ void __launch_bounds__(128)                                                                                \
      attn_fwd_##NAME##_##D(const E* q, const E* k, const E* v, E* o, float* lse, Heads lq, Heads lk, Heads lv, Heads lo, int heads, \
                            int tq, int tk, float scale, int causal, float p, uint32_t key, float keepScale) {                      \
    const Dropout drop{p, keepScale, key, blockIdx.y * (uint32_t)tq * (uint32_t)tk, (uint32_t)tk};                                \
    forwardBody<E, D>(q, k, v, o, lse, lq, lk, lv, lo, heads, tq, tk, scale, causal, drop);                                       \
  }                                                                                                                                \
  extern "C" __global__ void attn_bwd_dot_##NAME##_##D(const E* o, const E* dout, float* dsum, Heads lo, Heads ld, int heads, int tq, \
                                                       int rows) {                                                                 \
    dotBody<E, D>(o, dout, dsum, lo, ld, heads, tq, rows);                                                                         \
  }                                                                                                                                \
  extern "C" __global__ void __launch_bounds__(128)                                                                                \
      attn_bwd_##NAME##_##D(const E* q, const E* k, const E* v, const E* dout, const float* lse, const float* dsum, float* dq32,   \
                            E* dk, E* dv, Heads lq, Heads lk, Heads lv, Heads ldo, Heads ldk, Heads ldv, int heads, int tq, int tk,  \
                            float scale, int causal, float p, uint32_t key, float keepScale) {                                      \
    const Dropout drop{p, keepScale, key, blockIdx.y * (uint32_t)tq * (uint32_t)tk, (uint32_t)tk};                                \
    backwardBody<E, D, D == 128 ? 32 : 64>(q, k, v, dout, lse, dsum, dq32, dk, dv, lq, lk, lv, ldo, ldk, ldv, heads, tq, tk, scale, \
                                           causal, drop);                                                                          \
  }                                                                                                                                \
  extern "C" __global__ void __launch_bounds__(128)                                                                                \
      attn_bwd_kv_##NAME##_##D(const E* q, const E* k, const E* v, const E* dout, const float* lse, const float* dsum, E* dk, E* dv, \
                               Heads lq, Heads lk, Heads lv, Heads ldo, Heads ldk, Heads ldv, int heads, int tq, int tk, float scale, \
                               int causal, float p, uint32_t key, float keepScale) {                                               \
    const Dropout drop{p, keepScale, key, blockIdx.y * (uint32_t)tq * (uint32_t)tk, (uint32_t)tk};                                \
    backwardBody<E, D, D == 128 ? 32 : 64, false>(q, k, v, dout, lse, dsum, nullptr, dk, dv, lq, lk, lv, ldo, ldk, ldv, heads, tq, tk, \
                                                  scale, causal, drop);                                                            \
  }                                                                                                                                \
  extern "C" __global__ void __launch_bounds__(128)                                                                                \
      attn_bwd_dq_##NAME##_##D(const E* q, const E* k, const E* v, const E* dout, const float* lse, const float* dsum, E* dq,      \
                               Heads lq, Heads lk, Heads lv, Heads ldo, Heads ldq, int heads, int tq, int tk, float scale, int causal, \
                               float p, uint32_t key, float keepScale) {                                                           \
    const Dropout drop{p, keepScale, key, blockIdx.y * (uint32_t)tq * (uint32_t)tk, (uint32_t)tk};                                \
    dqBody<E, D>(q, k, v, dout, lse, dsum, dq, lq, lk, lv, ldo, ldq, heads, tq, tk, scale, causal, drop);                          \
  }
ATTENTION(bf16, __nv_bfloat16, 32)
ATTENTION(bf16, __nv_bfloat16, 64)
ATTENTION(bf16, __nv_bfloat16, 128)
ATTENTION(f16, __half, 32)
ATTENTION(f16, __half, 64)
ATTENTION(f16, __half, 128)
