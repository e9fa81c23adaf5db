// The kernels of wallwm_edge._C as plain C++ functions on raw pointers: no Python, no torch.
//
// CPU kernels live in csrc/NAME.cpp, their CUDA counterparts in csrc/cuda/NAME.cu. Every argument is
// checked in csrc/bindings.cpp before it gets here: these functions trust shapes, dtypes and devices.
#pragma once

#include <cstdint>

namespace wallwm {

// ---- sightcone.cpp ---------------------------------------------------------------------------------------
// Same semantics as wallwm_edge/ops/sightcone.py (read its docstring): conservative separating-axis test
// between clipped patch frusta. K (V,3,3), dist (V,5), T_base_cam (V,4,4) float64; hw (V,2) int64
// [height, width]; workspace (2,3) [min; max] or nullptr. out: (N,N) bytes (0/1), N = sum (H/p)*(W/p).
void sightcone_mask_cpu(const double* K, const double* dist, const double* T, const int64_t* hw, int V, int patch,
                        double near, double far, const double* workspace, uint8_t* out);

// (nb, nb) "any allowed" block mask of an (N, N) byte mask, nb = ceil(N / block).
void block_mask_cpu(const uint8_t* mask, int64_t N, int64_t block, uint8_t* out);

// ---- attention.cpp ---------------------------------------------------------------------------------------
// out[b,h,i] = sum_j softmax_j(scale q_i.k_j | mask[i,j]) v_j, q/k/v/out (B,H,N,D) float32 contiguous;
// mask (N,N) bytes; block_mask (nb,nb) bytes for square blocks of `block` tokens (a block whose entry is 0
// is skipped without reading its mask). A row with no allowed key gives zeros. row_order: nullptr or a
// permutation of 0..N-1, the order in which rows are grouped into 16-row tiles (same result, less work).
void block_sparse_attention_cpu(const float* q, const float* k, const float* v, int64_t B, int64_t H, int64_t N,
                                int64_t D, const uint8_t* mask, const uint8_t* block_mask, int64_t block, float scale,
                                const int32_t* row_order, float* out);
// The CPU attention's instruction-set path: "avx512" / "avx2" / "sse2" on x86-64, "neon" on aarch64, else
// "generic". isa nullptr or "": ask; "auto": the widest this CPU runs; a name: use it from now on (returns
// nullptr, changing nothing, for an unknown name or one this CPU cannot run). The first call of the kernel
// without a choice takes WALLWM_CPU_ISA when set, else the widest. *lanes (if given): query rows per tile
// (16 on AVX-512 and AVX2, 8 on SSE2 and NEON). attention_cpu_paths(): the compiled paths, space-separated, widest first.
const char* attention_cpu_path(const char* isa, int* lanes);
const char* attention_cpu_paths();

// ---- denoise.cpp -----------------------------------------------------------------------------------------
// Flow-matching update on an action chunk x (B, L, A) float32, in place. One call per (sub)step:
//   out = x + dt * (w1 * v1 + w2 * v2)          (v2 may be nullptr: then w2 is ignored)
// then rows [0, P) of every chunk are overwritten by prefix (B, P, A) (real-time-chunking freeze).
// `out` may alias `x`. Euler: w1 = 1. Heun predictor: w1 = 1 into a scratch; corrector: w1 = w2 = 1/2.
void flow_update_cpu(const float* x, const float* v1, const float* v2, float w1, float w2, float dt,
                     const float* prefix, int64_t B, int64_t L, int64_t A, int64_t P, float* out);

// out = clamp(x * std + mean, lo, hi) over the last axis A; lo/hi may be nullptr (no clamp on that side).
void unnormalize_clamp_cpu(const float* x, const float* mean, const float* std, const float* lo, const float* hi,
                           int64_t rows, int64_t A, float* out);

// ---- cuda/*.cu (only with WALLWM_WITH_CUDA) ----------------------------------------------------------------
int cuda_device_count();  // 0 when not built with CUDA, no driver, or no device
#ifdef WALLWM_WITH_CUDA
// dtype: 0 = float16, 1 = bfloat16. Pointers are device pointers; stream is a cudaStream_t (0 = default).
// Returns an empty string on success, else the CUDA error text.
const char* block_sparse_attention_cuda(int dtype, const void* q, const void* k, const void* v, int64_t B, int64_t H,
                                        int64_t N, int64_t D, const uint8_t* mask, const uint8_t* block_mask,
                                        int64_t block, float scale, void* out, void* stream);
const char* flow_update_cuda(const float* x, const float* v1, const float* v2, float w1, float w2, float dt,
                             const float* prefix, int64_t B, int64_t L, int64_t A, int64_t P, float* out, void* stream);
const char* unnormalize_clamp_cuda(const float* x, const float* mean, const float* std, const float* lo,
                                   const float* hi, int64_t rows, int64_t A, float* out, void* stream);
#endif

}  // namespace wallwm
