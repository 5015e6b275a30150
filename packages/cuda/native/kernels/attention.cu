// Fused attention in the manner of FlashAttention-2 (Dao, 2023): softmax(scale q k^T) v without the
// [tq, tk] scores in memory, forward and backward, for bfloat16 and float16 heads of size 32, 64
// or 128, on the tensor cores (mma.sync m16n8k16, float32 accumulation).
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
// Every operand is staged in shared memory in the layout its fragment loads want: row-major X[r][k]
// for an A operand, Y[n][k] for a B operand (so a transposed tile is stored transposed once, when
// it is loaded). Rows are padded by 8 elements, which puts the 8 rows a fragment load touches in
// distinct banks.
#include "async_mma.cuh"
#include "half.cuh"

namespace {
constexpr int BQ = 64;  // queries per forward block
constexpr int BK = 64;  // keys per tile (forward) and per backward block
constexpr int PAD = 8;
constexpr float LOG2E = 1.4426950408889634f;

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

template <typename E>
__device__ __forceinline__ uint32_t word(const E* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}
// The A fragment of the 16 x 16 tile at (r0, k0) of row-major X; g = lane / 4, t = lane % 4.
template <typename E>
__device__ __forceinline__ void loadA(uint32_t a[4], const E* X, int ld, int r0, int k0, int g, int t) {
  a[0] = word(X + (r0 + g) * ld + k0 + 2 * t);
  a[1] = word(X + (r0 + g + 8) * ld + k0 + 2 * t);
  a[2] = word(X + (r0 + g) * ld + k0 + 2 * t + 8);
  a[3] = word(X + (r0 + g + 8) * ld + k0 + 2 * t + 8);
}
// The B fragment of the 16 (k) x 8 (n) tile at (k0, n0) of B stored as Y[n][k].
template <typename E>
__device__ __forceinline__ void loadB(uint32_t b[2], const E* Y, int ld, int n0, int k0, int g, int t) {
  b[0] = word(Y + (n0 + g) * ld + k0 + 2 * t);
  b[1] = word(Y + (n0 + g) * ld + k0 + 2 * t + 8);
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

// rows x D of src (rows beyond `valid` as zeros) into dst[r][c] (ld = D + PAD), 16 bytes at a time.
template <typename E, int D>
__device__ __forceinline__ void stageRows(E* dst, const E* src, int rows, int valid) {
  constexpr int CHUNKS = D / 8;
  for (int i = threadIdx.x; i < rows * CHUNKS; i += blockDim.x) {
    const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
    const uint4 v = r < valid ? *reinterpret_cast<const uint4*>(src + (size_t)r * D + c) : make_uint4(0, 0, 0, 0);
    *reinterpret_cast<uint4*>(dst + r * (D + PAD) + c) = v;
  }
}
// The same rows transposed: dst[c][r] (ld = rows + PAD).
template <typename E, int D>
__device__ __forceinline__ void stageColumns(E* dst, const E* src, int rows, int valid) {
  constexpr int CHUNKS = D / 8;
  for (int i = threadIdx.x; i < rows * CHUNKS; i += blockDim.x) {
    const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
    const uint4 v = r < valid ? *reinterpret_cast<const uint4*>(src + (size_t)r * D + c) : make_uint4(0, 0, 0, 0);
    const E* e = reinterpret_cast<const E*>(&v);
#pragma unroll
    for (int j = 0; j < 8; j++) dst[(c + j) * (rows + PAD) + r] = e[j];
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

// grid (ceil(tq / 64), batch), 128 threads; dynamic shared memory: Qs [64][D+8], Ks [64][D+8], Vt [D][64+8].
template <typename E, int D>
__device__ void forwardBody(const E* q, const E* k, const E* v, E* o, float* lse, int tq, int tk, float scale, int causal, Dropout drop) {
  extern __shared__ __align__(16) unsigned char smem[];
  E* Qs = reinterpret_cast<E*>(smem);
  E* Ks = Qs + BQ * (D + PAD);
  E* Vt = Ks + BK * (D + PAD);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int head = blockIdx.y, q0 = blockIdx.x * BQ;
  q += (size_t)head * tq * D;
  k += (size_t)head * tk * D;
  v += (size_t)head * tk * D;
  stageRows<E, D>(Qs, q + (size_t)q0 * D, BQ, tq - q0);
  __syncthreads();
  uint32_t qa[D / 16][4];
#pragma unroll
  for (int s = 0; s < D / 16; s++) loadA(qa[s], Qs, D + PAD, 16 * w, 16 * s, g, t);
  const float c = scale * LOG2E;  // scores in base 2
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float acc[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  const int rows[2] = {q0 + 16 * w + g, q0 + 16 * w + g + 8};
  const int tiles = causal ? min((tk + BK - 1) / BK, (q0 + BQ - 1) / BK + 1) : (tk + BK - 1) / BK;
  for (int kt = 0; kt < tiles; kt++) {
    const int k0 = kt * BK;
    __syncthreads();  // the previous tile's K and V are no longer read
    stageRows<E, D>(Ks, k + (size_t)k0 * D, BK, tk - k0);
    stageColumns<E, D>(Vt, v + (size_t)k0 * D, BK, tk - k0);
    __syncthreads();
    float s[BK / 8][4];
#pragma unroll
    for (int j = 0; j < BK / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
      for (int j = 0; j < BK / 8; j++) {
        uint32_t b[2];
        loadB(b, Ks, D + PAD, 8 * j, 16 * kk, g, t);
        mma<E>(s[j], qa[kk], b);
      }
    }
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
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) {
      uint32_t pa[4];
      accToA<E>(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int n = 0; n < D / 8; n++) {
        uint32_t b[2];
        loadB(b, Vt, BK + PAD, 8 * n, 16 * kk, g, t);
        mma<E>(acc[n], pa, b);
      }
    }
  }
  o += (size_t)head * tq * D;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const float sum = quadSum(l[r]);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    if (rows[r] >= tq) continue;
#pragma unroll
    for (int n = 0; n < D / 8; n++)
      *reinterpret_cast<uint32_t*>(o + (size_t)rows[r] * D + 8 * n + 2 * t) = pack2<E>(acc[n][2 * r] * inv, acc[n][2 * r + 1] * inv);
    if (t == 0) lse[(size_t)head * tq + rows[r]] = (m[r] + log2f(sum)) / LOG2E;
  }
}

// D = rowsum(dO * O) per query, float32 [batch * tq]: a warp per row.
template <typename E, int D>
__device__ void dotBody(const E* o, const E* dout, float* dsum, int rows) {
  const int lane = threadIdx.x & 31;
  for (int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += gridDim.x * (blockDim.x >> 5)) {
    float acc = 0.f;
    for (int j = lane; j < D; j += 32) acc += toF(o[(size_t)r * D + j]) * toF(dout[(size_t)r * D + j]);
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) dsum[r] = acc;
  }
}

// grid (ceil(tk / 64), batch), 128 threads; BR queries per step (64, or 32 for D = 128 to stay in
// registers). dq32 (float32, zeroed) receives scale dS K by atomics.
template <typename E, int D, int BR>
__device__ void backwardBody(const E* q, const E* k, const E* v, const E* dout, const float* lse, const float* dsum, float* dq32, E* dk, E* dv,
                             int tq, int tk, float scale, int causal, Dropout drop) {
  extern __shared__ __align__(16) unsigned char smem[];
  E* Ks = reinterpret_cast<E*>(smem);
  E* Vs = Ks + BK * (D + PAD);
  E* Kt = Vs + BK * (D + PAD);
  E* Qs = Kt + D * (BK + PAD);
  E* Qt = Qs + BR * (D + PAD);
  E* dOs = Qt + D * (BR + PAD);
  E* dOt = dOs + BR * (D + PAD);
  E* dSs = dOt + D * (BR + PAD);
  float* lseS = reinterpret_cast<float*>(dSs + BR * (BK + PAD));
  float* dS = lseS + BR;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int head = blockIdx.y, k0 = blockIdx.x * BK;
  q += (size_t)head * tq * D;
  dout += (size_t)head * tq * D;
  k += (size_t)head * tk * D;
  v += (size_t)head * tk * D;
  lse += (size_t)head * tq;
  dsum += (size_t)head * tq;
  dq32 += (size_t)head * tq * D;
  stageRows<E, D>(Ks, k + (size_t)k0 * D, BK, tk - k0);
  stageRows<E, D>(Vs, v + (size_t)k0 * D, BK, tk - k0);
  stageColumns<E, D>(Kt, k + (size_t)k0 * D, BK, tk - k0);
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
  const int qRow = 16 * (w / WARPS_PER_ROW), qCol = COLS * (w % WARPS_PER_ROW);
  for (int q0 = causal ? (k0 / BR) * BR : 0; q0 < tq; q0 += BR) {
    __syncthreads();  // the previous step's tiles are no longer read
    stageRows<E, D>(Qs, q + (size_t)q0 * D, BR, tq - q0);
    stageColumns<E, D>(Qt, q + (size_t)q0 * D, BR, tq - q0);
    stageRows<E, D>(dOs, dout + (size_t)q0 * D, BR, tq - q0);
    stageColumns<E, D>(dOt, dout + (size_t)q0 * D, BR, tq - q0);
    for (int i = threadIdx.x; i < BR; i += blockDim.x) {
      lseS[i] = q0 + i < tq ? lse[q0 + i] * LOG2E : 0.f;
      dS[i] = q0 + i < tq ? dsum[q0 + i] : 0.f;
    }
    __syncthreads();
    // S^T and dP^T for this warp's 16 keys and the BR queries.
    float p[BR / 8][4], dp[BR / 8][4];
#pragma unroll
    for (int j = 0; j < BR / 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) p[j][e] = dp[j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      uint32_t ka[4], va[4];
      loadA(ka, Ks, D + PAD, 16 * w, 16 * kk, g, t);
      loadA(va, Vs, D + PAD, 16 * w, 16 * kk, g, t);
#pragma unroll
      for (int j = 0; j < BR / 8; j++) {
        uint32_t b[2];
        loadB(b, Qs, D + PAD, 8 * j, 16 * kk, g, t);
        mma<E>(p[j], ka, b);
        loadB(b, dOs, D + PAD, 8 * j, 16 * kk, g, t);
        mma<E>(dp[j], va, b);
      }
    }
#pragma unroll
    for (int j = 0; j < BR / 8; j++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int ql = 8 * j + 2 * t + (e & 1), query = q0 + ql, key = keys[e >> 1];
        const bool masked = query >= tq || key >= tk || (causal && key > query);
        const float z = masked ? 0.f : drop(query, key);
        const float pj = masked ? 0.f : exp2f(p[j][e] * c - lseS[ql]);
        p[j][e] = pj * z;                             // the dropped weights, for dV
        dp[j][e] = pj * (dp[j][e] * z - dS[ql]);      // dS^T
        dSs[ql * (BK + PAD) + 16 * w + g + 8 * (e >> 1)] = fromF<E>(dp[j][e]);
      }
    }
#pragma unroll
    for (int kk = 0; kk < BR / 16; kk++) {
      uint32_t pa[4], sa[4];
      accToA<E>(pa, p[2 * kk], p[2 * kk + 1]);
      accToA<E>(sa, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
      for (int n = 0; n < D / 8; n++) {
        uint32_t b[2];
        loadB(b, dOt, BR + PAD, 8 * n, 16 * kk, g, t);
        mma<E>(dV[n], pa, b);
        loadB(b, Qt, BR + PAD, 8 * n, 16 * kk, g, t);
        mma<E>(dK[n], sa, b);
      }
    }
    __syncthreads();  // dS complete
    float dq[COLS][4];
#pragma unroll
    for (int n = 0; n < COLS; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) {
      uint32_t a[4];
      loadA(a, dSs, BK + PAD, qRow, 16 * kk, g, t);
#pragma unroll
      for (int n = 0; n < COLS; n++) {
        uint32_t b[2];
        loadB(b, Kt, BK + PAD, 8 * (qCol + n), 16 * kk, g, t);
        mma<E>(dq[n], a, b);
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
  }
  dk += (size_t)head * tk * D;
  dv += (size_t)head * tk * D;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    if (keys[r] >= tk) continue;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
      *reinterpret_cast<uint32_t*>(dk + (size_t)keys[r] * D + 8 * n + 2 * t) = pack2<E>(dK[n][2 * r] * scale, dK[n][2 * r + 1] * scale);
      *reinterpret_cast<uint32_t*>(dv + (size_t)keys[r] * D + 8 * n + 2 * t) = pack2<E>(dV[n][2 * r], dV[n][2 * r + 1]);
    }
  }
}
}  // namespace

#define ATTENTION(NAME, E, D)                                                                                                           \
  extern "C" __global__ void __launch_bounds__(128) attn_fwd_##NAME##_##D(const E* q, const E* k, const E* v, E* o, float* lse, int tq, \
                                                                          int tk, float scale, int causal, float p, uint32_t key,      \
                                                                          float keepScale) {                                           \
    const Dropout drop{p, keepScale, key, blockIdx.y * (uint32_t)tq * (uint32_t)tk, (uint32_t)tk};                                     \
    forwardBody<E, D>(q, k, v, o, lse, tq, tk, scale, causal, drop);                                                                   \
  }                                                                                                                                     \
  extern "C" __global__ void attn_bwd_dot_##NAME##_##D(const E* o, const E* dout, float* dsum, int rows) { dotBody<E, D>(o, dout, dsum, rows); } \
  extern "C" __global__ void __launch_bounds__(128)                                                                                     \
      attn_bwd_##NAME##_##D(const E* q, const E* k, const E* v, const E* dout, const float* lse, const float* dsum, float* dq32, E* dk,  \
                            E* dv, int tq, int tk, float scale, int causal, float p, uint32_t key, float keepScale) {                   \
    const Dropout drop{p, keepScale, key, blockIdx.y * (uint32_t)tq * (uint32_t)tk, (uint32_t)tk};                                     \
    backwardBody<E, D, D == 128 ? 32 : 64>(q, k, v, dout, lse, dsum, dq32, dk, dv, tq, tk, scale, causal, drop);                        \
  }
ATTENTION(bf16, __nv_bfloat16, 32)
ATTENTION(bf16, __nv_bfloat16, 64)
ATTENTION(bf16, __nv_bfloat16, 128)
ATTENTION(f16, __half, 32)
ATTENTION(f16, __half, 64)
ATTENTION(f16, __half, 128)
