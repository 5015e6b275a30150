// Block-sparse forward / dX for 32x32 blocks on Hopper (sm_90a), operands staged by the tensor
// memory accelerator (TMA): wgmma for 'high' (TF32, fp32 operands) and 'medium' (BF16, operands
// converted to bf16 beforehand), FMA on the CUDA cores for 'highest' (fp32).
//
// Union tiles, as tcUnion (blocksparse_tc.cu): a CTA covers TOKENS tokens x G block rows (forward)
// or block columns (dX, on transposed blocks), walks the union of their column blocks, stages each
// activation tile once for the (up to G) weight blocks at that column, and multiplies only the
// blocks that exist. A tile one block wide reuses each activation it loads for only 32 outputs, so
// the tensor-core products are bound by moving data from L2, not by the tensor cores; hence:
// - one producer thread issues the copies (TMA, completing on mbarriers) S stages ahead while two
//   consumer warpgroups multiply: no thread spends issue slots on addresses or fragments;
// - 256 tokens per CTA, so each weight block staged serves twice the tokens of a 128-token tile;
// - each CTA copies its union table into shared memory first: read step by step from global
//   memory, its latency bounded how far ahead the producer ran.
// The tensor cores read the tiles through matrix descriptors in the 128-byte (TF32) or 64-byte
// (BF16) swizzle that TMA writes: one 32-element k row of a block is one swizzle row.
#include <cstdint>
#include <cuda.h>
#include "async_mma.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

namespace {
constexpr int BS = 32, MT = 2, TOKENS = 2 * 64 * MT, THREADS = 384;
constexpr int TC_GROUP = 4;  // block rows per CTA on the tensor cores (the fp32 kernel takes one)
constexpr int F32_THREADS = 32 + 256, F32_STAGES = 2;  // one producer warp; 2 CTAs per multiprocessor
// The most column blocks a CTA's table may have (the host uses these kernels only below it).
constexpr int MAX_STEPS = 512;

template <int G, int S, bool BF>
struct TmaShape : WgTypes<BF> {
  static constexpr int A_BYTES = TOKENS * WgTypes<BF>::ROW_BYTES;
  static constexpr int B_BYTES = BS * WgTypes<BF>::ROW_BYTES;
  static constexpr int STAGE_BYTES = A_BYTES + G * B_BYTES;
  static constexpr int TABLE_BYTES = MAX_STEPS * (2 + G) * 4;
  static constexpr int SMEM = S * STAGE_BYTES + 2 * S * 8 + TABLE_BYTES + 1024;  // stages, full / empty barriers, table, alignment slack
};

}  // namespace

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// The fp32 consumers: 8 warps after one producer warp (2 CTAs per multiprocessor, so that each
// scheduler has 4 warps to switch between), each 64 tokens x 16 outputs of the CTA's block row;
// thread (warp w, lane l) owns tokens 64 (w % 4) + l / 4 + 8 i (i < 8) and outputs 16 (w / 4) +
// l % 4 + 4 j (j < 4).
// Per 4-wide k chunk it reads 8 activation and 4 weight vectors (16 bytes each) and does 128 FMA.
// The interleaved rows land on distinct 16-byte chunks of the 128-byte swizzle, so the reads are
// conflict-free, and lanes sharing a row share the load.
template <class T, int S>
__device__ __forceinline__ void fmaConsumer(uint32_t base, uint32_t full, uint32_t empty, int steps, const uint8_t* smemRaw, float* out, uint32_t m, uint32_t m0, uint32_t outCols, const int32_t* unionRows, uint32_t group) {
  const int ct = threadIdx.x - 32, w = ct / 32, lane = ct % 32;  // after the producer warp
  const int tok0 = (w % 4) * 64 + lane / 4, out0 = (w / 4) * 16 + lane % 4;
  // Row r's 16-byte chunk c sits at r * 128 + ((c ^ (r % 8)) << 4); a thread's activation rows
  // tok0 + 8 i share r % 8, its weight rows out0 + 4 j alternate between two values.
  const uint32_t aRow = tok0 * 128, bRow = out0 * 128, aSwizzle = tok0 % 8, bSwizzle0 = out0 % 8, bSwizzle1 = (out0 + 4) % 8;
  float acc[8][4];
#pragma unroll
  for (int i = 0; i < 8; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.f;
  for (int step = 0; step < steps; step++) {
    const int s = step % S;
    barrierWait(full + 8 * s, (step / S) & 1);
    const uint8_t* xs = smemRaw + (base + s * T::STAGE_BYTES - smemAddr(smemRaw));
    const uint8_t* ws = xs + T::A_BYTES;
#pragma unroll
    for (int kc = 0; kc < 8; kc++) {
      float4 a[8], b[4];
      const uint32_t ca = (kc ^ aSwizzle) << 4, cb0 = (kc ^ bSwizzle0) << 4, cb1 = (kc ^ bSwizzle1) << 4;
#pragma unroll
      for (int i = 0; i < 8; i++) a[i] = *reinterpret_cast<const float4*>(xs + aRow + i * 1024 + ca);
#pragma unroll
      for (int j = 0; j < 4; j++) b[j] = *reinterpret_cast<const float4*>(ws + bRow + j * 512 + (j & 1 ? cb1 : cb0));
#pragma unroll
      for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
          acc[i][j] = fmaf(a[i].x, b[j].x, acc[i][j]);
          acc[i][j] = fmaf(a[i].y, b[j].y, acc[i][j]);
          acc[i][j] = fmaf(a[i].z, b[j].z, acc[i][j]);
          acc[i][j] = fmaf(a[i].w, b[j].w, acc[i][j]);
        }
    }
    __syncwarp();
    if (lane == 0) arrive(empty + 8 * s);  // this warp is done reading the stage
  }
  const int limit = (int)min((uint32_t)TOKENS, m - m0);
  const uint32_t outBlock = unionRows ? unionRows[group] : group;  // read here: not live across the loop
  if (outBlock * BS >= outCols) return;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const int r = tok0 + 8 * i;
    if (r >= limit) continue;
    float* row = out + (size_t)(m0 + r) * outCols + outBlock * BS + out0;
#pragma unroll
    for (int j = 0; j < 4; j++) row[4 * j] = acc[i][j];
  }
}
#endif

// act: tensor map of the activations [m, actCols] (box TOKENS rows x 32); w: tensor map of the
// blocks as rows [nnz * 32, 32] (box 32 x 32; dX passes transposed blocks); union table in groups
// of G, unionRows naming each group slot's output block row or column (-1: none; null: groups of
// consecutive ones); out [m, outCols]; band: token tiles per band of the grid's order (below).
// F32: fp32 FMA on the CUDA cores ('highest', G = 1) instead of wgmma.
// PENDING: groups of wgmma a consumer leaves in flight before releasing a stage. AREG: the
// activation fragments go through registers (loaded once per step for every block) instead of
// being read from shared memory by each instruction.
// O: the output's element type (float, or __nv_bfloat16 for bf16 tensors: rounded once at the store).
template <int G, int S, int PENDING, bool AREG, bool BF, bool F32 = false, typename O = float>
__device__ void tmaUnion(const CUtensorMap& act, const CUtensorMap& w, const int32_t* unionPtr, const int32_t* unionIdx, const int32_t* unionBlk,
                         const int32_t* unionRows, O* out, uint32_t m, uint32_t outCols, uint32_t band) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using T = TmaShape<G, S, BF>;
  static_assert(!AREG || PENDING == 0, "register fragments are reloaded each step");
  extern __shared__ __align__(16) uint8_t smemRaw[];
  const uint32_t base = (smemAddr(smemRaw) + 1023) & ~1023u;
  const uint32_t full = base + S * T::STAGE_BYTES, empty = full + 8 * S;
  // The grid is (groups, token tiles), handed out in bands of `band` token tiles: within a band
  // the groups in table order (the host lists them longest first), each over the band's tiles,
  // so that the CTAs still running at the end of the grid are short ones and a band's activation
  // tiles stay in L2. band = 1 is the plain order (blockIdx.x = group, blockIdx.y = token tile).
  const uint32_t unit = blockIdx.y * gridDim.x + blockIdx.x, perBand = band * gridDim.x;
  const uint32_t bandFirst = unit / perBand * band, inBand = unit % perBand, width = min(band, gridDim.y - bandFirst);
  const uint32_t group = inBand / width, m0 = (bandFirst + inBand % width) * TOKENS;
  const int first = unionPtr[group], steps = unionPtr[group + 1] - first;
  // Warpgroup 0 (the fp32 kernel: warp 0) produces. Broadcast from lane 0: the compiler then knows
  // the value is warp-uniform, and does not serialize the wgmma instructions on paths that depend on it.
  const int wg = __shfl_sync(0xffffffff, F32 ? (threadIdx.x >= 32) : threadIdx.x / 128, 0);

  // The table: per step the activation column, the mask of the group's blocks present, the blocks.
  int32_t* colOf = reinterpret_cast<int32_t*>(smemRaw + (empty + 8 * S - smemAddr(smemRaw)));
  uint32_t* maskOf = reinterpret_cast<uint32_t*>(colOf + MAX_STEPS);
  int32_t* blkOf = reinterpret_cast<int32_t*>(maskOf + MAX_STEPS);  // [step][g]
  for (int i = threadIdx.x; i < steps; i += blockDim.x) {
    colOf[i] = unionIdx[first + i] * BS;
    uint32_t mask = 0;
#pragma unroll
    for (int g = 0; g < G; g++) {
      const int32_t b = unionBlk[(size_t)(first + i) * G + g];
      blkOf[i * G + g] = b;
      mask |= (b >= 0) << g;
    }
    maskOf[i] = mask;
  }
  if (threadIdx.x == 0) {
    for (int s = 0; s < S; s++) {
      barrierInit(full + 8 * s, 1);
      barrierInit(empty + 8 * s, F32 ? 8 : 2);  // each consumer warp (fp32) or warpgroup
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  // Registers move from the producer warpgroup (one thread works there) to the consumers, which
  // hold the accumulators: 128 x 40 + 256 x 232 fits the 64K of the multiprocessor.
  if (wg == 0) {
    if constexpr (!F32) asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (threadIdx.x == 0) {
      for (int step = 0; step < steps; step++) {
        const int s = step % S;
        const uint32_t present = maskOf[step];
        barrierWait(empty + 8 * s, ((step / S) & 1) ^ 1);  // a fresh barrier passes parity 1
        const uint32_t stage = base + s * T::STAGE_BYTES, bar = full + 8 * s;
        expectBytes(bar, T::A_BYTES + __popc(present) * T::B_BYTES);
        tmaLoad(stage, &act, bar, colOf[step], m0);  // rows past m arrive as zeros
#pragma unroll
        for (int g = 0; g < G; g++)
          if (present >> g & 1) tmaLoad(stage + T::A_BYTES + g * T::B_BYTES, &w, bar, 0, blkOf[step * G + g] * BS);
      }
    }
  } else if constexpr (F32) {
    static_assert(sizeof(O) == 4, "the fp32 kernel writes float32");
    fmaConsumer<T, S>(base, full, empty, steps, smemRaw, out, m, m0, outCols, unionRows, group);
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    // Consumers: warpgroup wg - 1 multiplies tokens (wg - 1) 64 MT .. + 64 MT - 1.
    const int tok = (wg - 1) * 64 * MT;
    float acc[MT][G][16];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
      for (int g = 0; g < G; g++)
#pragma unroll
        for (int q = 0; q < 16; q++) acc[i][g][q] = 0.f;
    const auto fenceAll = [&] {
#pragma unroll
      for (int i = 0; i < MT; i++)
#pragma unroll
        for (int g = 0; g < G; g++) fenceOperand(acc[i][g]);
    };
    for (int step = 0; step < steps; step++) {
      const int s = step % S;
      barrierWait(full + 8 * s, (step / S) & 1);
      const uint32_t stage = base + s * T::STAGE_BYTES;
      const uint32_t present = __shfl_sync(0xffffffff, maskOf[step], 0);
      fenceAll();
      constexpr int KS = 32 / T::K_STEP;
      uint32_t a[MT][KS][4];  // AREG: this step's activation fragments
      if constexpr (AREG) {
        const uint8_t* tile = smemRaw + (stage - smemAddr(smemRaw));
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
          for (int k = 0; k < KS; k++) loadA<BF>(a[i][k], tile + (tok + 64 * i) * T::ROW_BYTES, k);
      }
      wgmmaFence();
#pragma unroll
      for (int g = 0; g < G; g++) {
        if (!(present >> g & 1)) continue;
        const uint64_t db = descriptor<BF>(stage + T::A_BYTES + g * T::B_BYTES);
#pragma unroll
        for (int i = 0; i < MT; i++) {
          const uint64_t da = descriptor<BF>(stage + (tok + 64 * i) * T::ROW_BYTES);
#pragma unroll
          for (int k = 0; k < KS; k++) {
            if constexpr (AREG) wgmmaRegA<BF>(acc[i][g], a[i][k], db + 2 * k);
            else wgmma<BF>(acc[i][g], da + 2 * k, db + 2 * k);
          }
        }
      }
      wgmmaCommit();
      wgmmaWait<PENDING>();
      fenceAll();
      // The products of step - PENDING are done: their stage may be refilled.
      if (step >= PENDING && threadIdx.x % 128 == 0) arrive(empty + 8 * ((step - PENDING) % S));
    }
    wgmmaWait<0>();
    fenceAll();
    const int limit = (int)min((uint32_t)TOKENS, m - m0);
#pragma unroll
    for (int g = 0; g < G; g++) {
      const int ob = unionRows ? unionRows[group * G + g] : (int)(group * G + g);
      if (ob < 0 || ob * BS >= (int)outCols) continue;
#pragma unroll
      for (int i = 0; i < MT; i++) storeTile(acc[i][g], out, outCols, m0, tok + 64 * i, limit, ob * BS);
    }
  }
#endif
}

// One kernel per precision; on an H100 (density 0.5, X [16384, 1024] by W [4096, 1024]) TF32 ran
// fastest with the activations read by the instructions from shared memory and one group in
// flight (0.39 vs 0.42 ms through registers), BF16 with them through registers (0.34 vs 0.35).
// Both take 4 stages (192 KB in TF32); the fp32 kernel 2 (two CTAs per multiprocessor).
// bf16_bf16 writes bf16 (the bf16 tensors of autocast), the others float32.
#define TMA_KERNEL(NAME, G, S, P, AREG, BF, F32, O)                                                                                \
  extern "C" __global__ void __launch_bounds__(F32 ? F32_THREADS : THREADS, F32 ? 2 : 1) bsr_tma_##NAME##_32(const __grid_constant__ CUtensorMap act,        \
      const __grid_constant__ CUtensorMap w, const int32_t* up, const int32_t* ui, const int32_t* ub, const int32_t* ur, O* out, \
      uint32_t m, uint32_t outCols, uint32_t band) { tmaUnion<G, S, P, AREG, BF, F32, O>(act, w, up, ui, ub, ur, out, m, outCols, band); }
TMA_KERNEL(tf32, TC_GROUP, 4, 1, false, false, false, float)
TMA_KERNEL(bf16, TC_GROUP, 4, 0, true, true, false, float)
TMA_KERNEL(bf16_bf16, TC_GROUP, 4, 0, true, true, false, __nv_bfloat16)
TMA_KERNEL(f32, 1, F32_STAGES, 0, false, false, true, float)

// For the host: group size of the tensor-core kernels, tokens per CTA, the most column blocks a
// table may have, the dynamic shared memory of the TF32, BF16 and fp32 kernels, and the fp32
// kernel's threads.
extern "C" __global__ void bsr_tma_params(int32_t* out) {
  out[0] = TC_GROUP;
  out[1] = TOKENS;
  out[2] = MAX_STEPS;
  out[3] = TmaShape<TC_GROUP, 4, false>::SMEM;
  out[4] = TmaShape<TC_GROUP, 4, true>::SMEM;
  out[5] = TmaShape<1, F32_STAGES, false>::SMEM;
  out[6] = F32_THREADS;
}
