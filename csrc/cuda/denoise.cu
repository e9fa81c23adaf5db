// The fused denoising loop's arithmetic on CUDA: flow update with the prefix freeze, unnormalize + clamp.
//
// Graph capture: neither launcher allocates, synchronizes or reads back; each takes the caller's stream and
// bakes its scalars (dt, weights) into the launch. So a caller can capture the whole loop once,
//   with torch.cuda.graph(g):                       # static x, v1, v2, xp, out buffers
//       for k in range(K): v1 = net(x, t[k]); _C.flow_update(x, v1, None, 1, 0, dt[k], prefix, x, stream=s)
//       _C.unnormalize_clamp(x, mean, std, lo, hi, out, stream=s)
// and replay it per control step with one launch (wallwm_edge/ops/denoise.py: CudaDenoiseGraph).
#include <cuda_runtime.h>

#include "kernels.h"

namespace wallwm {
namespace {

__global__ void flow_update_kernel(const float* __restrict__ x, const float* __restrict__ v1,
                                   const float* __restrict__ v2, float w1, float w2, float dt,
                                   const float* __restrict__ prefix, int64_t B, int64_t L, int64_t A, int64_t P,
                                   float* out) {
  const int64_t chunk = L * A, frozen = P * A, n = B * chunk;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / chunk, e = i % chunk;
    if (e < frozen) {
      out[i] = prefix[b * frozen + e];
    } else {
      const float v = w1 * v1[i] + (v2 ? w2 * v2[i] : 0.f);
      out[i] = x[i] + dt * v;
    }
  }
}

__global__ void unnormalize_clamp_kernel(const float* __restrict__ x, const float* __restrict__ mean,
                                         const float* __restrict__ std, const float* __restrict__ lo,
                                         const float* __restrict__ hi, int64_t n, int64_t A, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t a = i % A;
    float y = x[i] * std[a] + mean[a];
    if (lo) y = fmaxf(y, lo[a]);
    if (hi) y = fminf(y, hi[a]);
    out[i] = y;
  }
}

int grid_for(int64_t n) { return int(n / 256 + 1 < 4096 ? n / 256 + 1 : 4096); }

const char* last_error() {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? "" : cudaGetErrorString(e);
}

}  // namespace

const char* flow_update_cuda(const float* x, const float* v1, const float* v2, float w1, float w2, float dt,
                             const float* prefix, int64_t B, int64_t L, int64_t A, int64_t P, float* out, void* stream) {
  const int64_t n = B * L * A;
  if (n == 0) return "";
  flow_update_kernel<<<grid_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(x, v1, v2, w1, w2, dt, prefix, B, L,
                                                                                  A, P, out);
  return last_error();
}

const char* unnormalize_clamp_cuda(const float* x, const float* mean, const float* std, const float* lo,
                                   const float* hi, int64_t rows, int64_t A, float* out, void* stream) {
  const int64_t n = rows * A;
  if (n == 0) return "";
  unnormalize_clamp_kernel<<<grid_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(x, mean, std, lo, hi, n, A,
                                                                                        out);
  return last_error();
}

}  // namespace wallwm
