// Block-sparse masked attention, forward, float16 / bfloat16 on CUDA (float32 accumulation).
//
// Grid (query blocks, H, B), 4 warps per block; a warp owns every 4th row of the query block. For one row,
// the warp walks the key blocks its block-mask row marks (empty blocks are never read), 32 keys at a time:
// lane j scores key j (q row staged in shared memory), warp shuffles give the chunk max and sum, and the
// online softmax rescales the running sum and the accumulator, which lanes hold split over the head dim.
// A row with no allowed key is written as zeros. One template, two instantiations (half, bfloat16), so the
// build for sm_87 / sm_90 / sm_110 stays quick. It is a straightforward kernel (no tensor cores, no shared
// K/V tiles): correct first; tiling is the next step when a GPU is at hand to measure it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels.h"

namespace wallwm {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxPerLane = 8;  // D <= 256

__device__ inline float to_f(__half x) { return __half2float(x); }
__device__ inline float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T> __device__ inline T from_f(float x);
template <> __device__ inline __half from_f<__half>(float x) { return __float2half(x); }
template <> __device__ inline __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

__device__ inline float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ inline float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

template <class T>
__global__ void __launch_bounds__(kWarps * 32)
    bsa_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, int N, int D,
               const uint8_t* __restrict__ mask, const uint8_t* __restrict__ bmask, int nb, int block, float scale,
               T* __restrict__ out) {
  extern __shared__ float qs_all[];  // (kWarps, D)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int qb = blockIdx.x;
  const int64_t bh = int64_t(blockIdx.z) * gridDim.y + blockIdx.y;
  const T* qh = q + bh * N * D;
  const T* kh = k + bh * N * D;
  const T* vh = v + bh * N * D;
  T* oh = out + bh * N * D;
  float* qs = qs_all + warp * D;
  const int r_end = min(N, (qb + 1) * block);
  for (int i = qb * block + warp; i < r_end; i += kWarps) {
    __syncwarp();
    for (int d = lane; d < D; d += 32) qs[d] = to_f(qh[int64_t(i) * D + d]) * scale;
    __syncwarp();
    float m = -INFINITY, l = 0.f, acc[kMaxPerLane];
#pragma unroll
    for (int e = 0; e < kMaxPerLane; ++e) acc[e] = 0.f;
    for (int kb = 0; kb < nb; ++kb) {
      if (!bmask[qb * nb + kb]) continue;
      const int j_end = min(N, (kb + 1) * block);
      for (int j0 = kb * block; j0 < j_end; j0 += 32) {
        const int j = j0 + lane;
        const bool allowed = j < j_end && mask[int64_t(i) * N + j];
        float s = -INFINITY;
        if (allowed) {
          s = 0.f;
          const T* kr = kh + int64_t(j) * D;
          for (int d = 0; d < D; ++d) s += qs[d] * to_f(kr[d]);
        }
        const float mx = warp_max(s);
        if (mx == -INFINITY) continue;  // warp-uniform
        const float mnew = fmaxf(m, mx);
        const float alpha = m == -INFINITY ? 0.f : __expf(m - mnew);
        const float p = allowed ? __expf(s - mnew) : 0.f;
        l = l * alpha + warp_sum(p);
#pragma unroll
        for (int e = 0; e < kMaxPerLane; ++e) acc[e] *= alpha;
        for (int jj = 0; jj < 32; ++jj) {
          const float pj = __shfl_sync(0xffffffffu, p, jj);
          if (pj == 0.f) continue;  // warp-uniform (broadcast value)
          const T* vr = vh + int64_t(j0 + jj) * D;
#pragma unroll
          for (int e = 0; e < kMaxPerLane; ++e) {
            const int d = lane + 32 * e;
            if (d < D) acc[e] += pj * to_f(vr[d]);
          }
        }
        m = mnew;
      }
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;  // fully masked row -> zeros
#pragma unroll
    for (int e = 0; e < kMaxPerLane; ++e) {
      const int d = lane + 32 * e;
      if (d < D) oh[int64_t(i) * D + d] = from_f<T>(acc[e] * inv);
    }
  }
}

}  // namespace

const char* block_sparse_attention_cuda(int dtype, const void* q, const void* k, const void* v, int64_t B, int64_t H,
                                        int64_t N, int64_t D, const uint8_t* mask, const uint8_t* block_mask,
                                        int64_t block, float scale, void* out, void* stream) {
  if (B * H * N == 0) return "";
  const int nb = int((N + block - 1) / block);
  dim3 grid(nb, unsigned(H), unsigned(B));
  const size_t smem = sizeof(float) * kWarps * D;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (dtype == 0)
    bsa_kernel<__half><<<grid, kWarps * 32, smem, s>>>(static_cast<const __half*>(q), static_cast<const __half*>(k),
                                                       static_cast<const __half*>(v), int(N), int(D), mask,
                                                       block_mask, nb, int(block), scale, static_cast<__half*>(out));
  else
    bsa_kernel<__nv_bfloat16><<<grid, kWarps * 32, smem, s>>>(
        static_cast<const __nv_bfloat16*>(q), static_cast<const __nv_bfloat16*>(k),
        static_cast<const __nv_bfloat16*>(v), int(N), int(D), mask, block_mask, nb, int(block), scale,
        static_cast<__nv_bfloat16*>(out));
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? "" : cudaGetErrorString(e);
}

}  // namespace wallwm
