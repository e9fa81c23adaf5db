// The fused denoising loop's arithmetic on CPU: the flow-matching update with the real-time-chunking prefix
// freeze, and the final unnormalize + clamp. The loop itself (K steps, Euler or Heun, calling the network)
// lives in bindings.cpp because the network is a Python callback on CPU; on CUDA the same two kernels
// (cuda/denoise.cu) are launched on a stream so the whole loop can be captured in one CUDA graph.
#include <algorithm>
#include <cstring>

#include "kernels.h"

namespace wallwm {

void flow_update_cpu(const float* x, const float* v1, const float* v2, float w1, float w2, float dt,
                     const float* prefix, int64_t B, int64_t L, int64_t A, int64_t P, float* out) {
  const int64_t chunk = L * A, frozen = P * A;
#pragma omp parallel for schedule(static) if (B * chunk > (1 << 16))
  for (int64_t b = 0; b < B; ++b) {
    const int64_t o = b * chunk;
    if (frozen > 0) std::memcpy(out + o, prefix + b * frozen, sizeof(float) * frozen);  // held, not integrated
    if (v2 != nullptr) {
#pragma omp simd
      for (int64_t e = frozen; e < chunk; ++e) out[o + e] = x[o + e] + dt * (w1 * v1[o + e] + w2 * v2[o + e]);
    } else {
#pragma omp simd
      for (int64_t e = frozen; e < chunk; ++e) out[o + e] = x[o + e] + dt * (w1 * v1[o + e]);
    }
  }
}

void unnormalize_clamp_cpu(const float* x, const float* mean, const float* std, const float* lo, const float* hi,
                           int64_t rows, int64_t A, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * A;
    float* orow = out + r * A;
    for (int64_t a = 0; a < A; ++a) {
      float y = xr[a] * std[a] + mean[a];
      if (lo != nullptr) y = std::max(y, lo[a]);
      if (hi != nullptr) y = std::min(y, hi[a]);
      orow[a] = y;
    }
  }
}

}  // namespace wallwm
