// Block-sparse masked attention, forward, float32 on CPU (OpenMP over (batch, head, query tile)).
//
// One task = one tile of R = NV x W query rows, and the rows are the lanes of NV native vectors of W floats (W =
// 16 on AVX-512 with NV = 1; W = 8 on AVX2, 4 on SSE2 and NEON, with NV = 2, so a broadcast K element feeds two
// FMAs). Tiles take the rows in `row_order` (default 0..N-1); an order that groups rows seeing similar keys
// (ops.attention.attention_row_order) shrinks the keys a tile must visit.
// That layout makes every step a plain vertical vector op, with no transposes or gathers of K and V:
//   S^T[c] (W rows) = sum_d Q^T[d] * k_c[d]            Q^T (D, W) once per tile; k_c[d] a broadcast load
//   online softmax per lane: m, l, alpha, p            vertical max / exp / sum over the chunk's keys
//   acc[r] += sum_c p[c][r] * v_c                      v_c a contiguous row, p a broadcast
// The keys a tile visits are the union, over its rows, of the allowed keys inside the blocks its rows'
// block-mask rows mark: empty blocks are never read, and keys no row of the tile may see are never
// computed. The mask used is `mask AND block_mask` (expanded): pass the block mask of the mask itself
// (ops.sightcone.block_mask) or a superset to get exactly `mask`. The element mask is read transposed
// (mask^T, built once per call) so W rows' bits for one key are W contiguous bytes. Masked entries get p = 0
// exactly; a row that never sees an allowed key keeps l = 0 and is written as zeros.
//
// One algorithm, one template (`tile_impl<W, NV, Regs>`), instantiated per instruction set at its native vector
// width with register tiles sized to its register file (Regs: 32 vector registers on AVX-512 and NEON, 16 on
// AVX2 and SSE2). A 16-float vector on AVX2 is two registers: the former one-width kernel's register tiles
// then needed twice the registers AVX2 has and spilled to the stack in every inner loop (5x slower than SDPA
// on an AVX2 EPYC). On x86 the AVX-512, AVX2 and SSE2 paths are all compiled (target attributes) and one is
// picked at the first call from the CPU (or WALLWM_CPU_ISA=avx512|avx2|sse2, or attention_cpu_path(isa)), so
// one wheel runs everywhere at full width. On aarch64 (Jetson) the NEON path is the only one.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels.h"

// GCC notes that vectors wider than the baseline ABI change the calling convention; every helper taking them is
// inlined into the tile, so no such call crosses an ABI boundary.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace wallwm {
namespace {

constexpr int kChunk = 64;   // keys per online-softmax step
constexpr int kKeyTile = 8;  // keys per register tile of the score product, at most (KT NV + NV + 1 registers)
constexpr int kMaxLanes = 16;

#define WALLWM_INLINE inline __attribute__((always_inline))

template <int W>
struct V {
  typedef float f __attribute__((vector_size(4 * W)));
  typedef float fu __attribute__((vector_size(4 * W), aligned(4)));
  typedef int32_t i __attribute__((vector_size(4 * W)));
  typedef uint8_t b __attribute__((vector_size(W), aligned(1)));
};

template <int W>
WALLWM_INLINE typename V<W>::f load(const float* p) {
  return *reinterpret_cast<const typename V<W>::fu*>(p);
}
template <int W>
WALLWM_INLINE void store(float* p, typename V<W>::f x) {
  *reinterpret_cast<typename V<W>::fu*>(p) = x;
}
// For constants. A runtime scalar is better multiplied in directly (v * x): GCC computes `vf{} + x` as a
// scalar add before the broadcast (0 + -0 is +0), and builds {x, ..., x} lane by lane.
template <int W>
WALLWM_INLINE typename V<W>::f splat(float x) {
  return typename V<W>::f{} + x;
}
template <int W>
WALLWM_INLINE typename V<W>::f vmax(typename V<W>::f a, typename V<W>::f b) {
  return a > b ? a : b;
}
// W mask bytes (0/1) as W floats.
template <int W>
WALLWM_INLINE typename V<W>::f mask_lanes(const uint8_t* p) {
  typename V<W>::b bytes;
  std::memcpy(&bytes, p, W);
  return __builtin_convertvector(bytes, typename V<W>::f);
}
template <int W>
WALLWM_INLINE bool any_byte(const uint8_t* p) {
  uint64_t w[(W + 7) / 8] = {};
  std::memcpy(w, p, W);
  uint64_t a = 0;
  for (int i = 0; i < (W + 7) / 8; ++i) a |= w[i];
  return a != 0;
}

// exp(x) for x <= 0 (scores minus the running max), relative error < 2e-7: Cephes' expf polynomial after
// x = n ln2 + r, 2^n built in the exponent bits. x > 0 (only masked entries) is clamped to 0 so it stays
// finite before the mask zeroes it; x < -87 flushes to 0.
template <int W>
WALLWM_INLINE typename V<W>::f vexp(typename V<W>::f x) {
  typedef typename V<W>::f vf;
  typedef typename V<W>::i vi;
  const vf zero = splat<W>(0.0f), lo = splat<W>(-87.0f);
  x = x > zero ? zero : x;
  const auto tiny = x < lo;
  x = tiny ? lo : x;
  vf t = x * 1.44269504088896341f + 12582912.0f;  // round to nearest via the 1.5 * 2^23 trick
  vf n = t - 12582912.0f;
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = splat<W>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  vf res = p * (vf)e;  // vector cast = bit cast
  return tiny ? zero : res;
}

struct Scratch {
  std::vector<float> qt, st, acc;
  std::vector<int32_t> keys;
  void resize(int64_t D, int64_t N) {
    qt.assign(D * kMaxLanes, 0.f);
    st.assign(kChunk * kMaxLanes, 0.f);
    acc.assign(kMaxLanes * D, 0.f);
    keys.assign(N, 0);
  }
};

// acc[r] += sum_c p[c][r] v_c, register tile: RG rows x EV vectors of the row, over columns [e0, e0 + EV W).
template <int W, int R, int RG, int EV>
WALLWM_INLINE void pv_block(const float* v, const int32_t* keys, int64_t nc, const float* st, int64_t D, int r0,
                            int64_t e0, float* acc) {
  typedef typename V<W>::f vf;
  vf a[RG][EV];
  for (int r = 0; r < RG; ++r)
    for (int e = 0; e < EV; ++e) a[r][e] = load<W>(acc + (r0 + r) * D + e0 + W * e);
  for (int64_t c = 0; c < nc; ++c) {
    const float* vr = v + int64_t(keys[c]) * D + e0;
    vf vv[EV];
    for (int e = 0; e < EV; ++e) vv[e] = load<W>(vr + W * e);
    for (int r = 0; r < RG; ++r) {
      const float p = st[c * R + r0 + r];  // vector * scalar: one broadcast from memory
      for (int e = 0; e < EV; ++e) a[r][e] += vv[e] * p;
    }
  }
  for (int r = 0; r < RG; ++r)
    for (int e = 0; e < EV; ++e) store<W>(acc + (r0 + r) * D + e0 + W * e, a[r][e]);
}

// RG rows x EV vectors of accumulators + EV of V + 1 broadcast must fit the register file.
template <int W, int R, int Regs>
WALLWM_INLINE void accumulate_pv(const float* v, const int32_t* keys, int64_t nc, const float* st, int64_t D,
                                 float* acc) {
  constexpr int RG = W >= 4 ? 4 : W;
  constexpr int EV = Regs >= 32 ? 4 : 2;
  static_assert(RG * EV + EV + 1 <= Regs, "register tile must fit");
  for (int r0 = 0; r0 < R; r0 += RG) {
    int64_t e0 = 0;
    for (; e0 + EV * W <= D; e0 += EV * W) pv_block<W, R, RG, EV>(v, keys, nc, st, D, r0, e0, acc);
    for (; e0 < D; e0 += W) pv_block<W, R, RG, 1>(v, keys, nc, st, D, r0, e0, acc);
  }
}

// One tile: the rows rows[0..nr), nr <= R = NV W, of one (batch, head), which sit at positions [p0, p0 + nr)
// of the row order. q, k, v, out: (N, D) with D % 16 == 0. maskT: (N, Np), maskT[j][pos] = mask AND block mask
// of (row at pos, key j), positions padded to Np (a multiple of 16) with zeros.
template <int W, int NV, int Regs>
WALLWM_INLINE void tile_impl(const float* q, const float* k, const float* v, int64_t N, int64_t D,
                             const uint8_t* maskT, int64_t Np, const uint8_t* bmask, int64_t nb, int64_t block,
                             const int32_t* rows, int64_t p0, int64_t nr, float scale, Scratch& sc, float* out) {
  typedef typename V<W>::f vf;
  constexpr int R = W * NV;                                   // rows per tile
  constexpr int KT = (Regs - NV - 1) / NV < kKeyTile ? (Regs - NV - 1) / NV : kKeyTile;  // keys per score tile
  static_assert(R <= kMaxLanes && KT >= 1, "tile shape");
  float* qt = sc.qt.data();
  float* st = sc.st.data();
  float* acc = sc.acc.data();
  int32_t* keys = sc.keys.data();
  for (int64_t d = 0; d < D; ++d)
    for (int r = 0; r < R; ++r) qt[d * R + r] = r < nr ? q[int64_t(rows[r]) * D + d] : 0.f;
  std::fill(acc, acc + R * D, 0.f);
  // Keys to visit: allowed for some row of the tile, inside a block marked for one of the tile's block rows.
  int64_t brow[R], nbr = 0;  // the distinct block rows of the tile's rows
  for (int64_t r = 0; r < nr; ++r) {
    const int64_t bi = rows[r] / block;
    bool seen = false;
    for (int64_t i = 0; i < nbr && !seen; ++i) seen = brow[i] == bi;
    if (!seen) brow[nbr++] = bi;
  }
  int64_t nk = 0;
  for (int64_t kb = 0; kb < nb; ++kb) {
    bool active = false;
    for (int64_t i = 0; i < nbr && !active; ++i) active = bmask[brow[i] * nb + kb] != 0;
    if (!active) continue;
    const int64_t j1 = std::min(N, (kb + 1) * block);
    for (int64_t j = kb * block; j < j1; ++j)
      if (any_byte<R>(maskT + j * Np + p0)) keys[nk++] = int32_t(j);
  }
  vf m[NV], l[NV];
  for (int u = 0; u < NV; ++u) m[u] = splat<W>(-INFINITY), l[u] = splat<W>(0.f);
  for (int64_t c0 = 0; c0 < nk; c0 += kChunk) {
    const int64_t nc = std::min<int64_t>(kChunk, nk - c0);
    const int32_t* ck = keys + c0;
    // S^T = (Q K^T)^T for this chunk: KT keys x R rows in registers per step.
    for (int64_t c = 0; c < nc; c += KT) {
      const int kt = int(std::min<int64_t>(KT, nc - c));
      const float* kr[KT];
      for (int t = 0; t < KT; ++t) kr[t] = k + int64_t(ck[c + std::min(t, kt - 1)]) * D;
      vf s[KT][NV] = {};
      for (int64_t d = 0; d < D; ++d) {
        vf qv[NV];
        for (int u = 0; u < NV; ++u) qv[u] = load<W>(qt + d * R + u * W);
        for (int t = 0; t < KT; ++t) {
          const float kd = kr[t][d];
          for (int u = 0; u < NV; ++u) s[t][u] += qv[u] * kd;
        }
      }
      for (int t = 0; t < kt; ++t)
        for (int u = 0; u < NV; ++u) store<W>(st + (c + t) * R + u * W, s[t][u] * scale);  // scale after the dot
    }
    // Online softmax, one lane per row. Pass 1: the chunk's max over allowed entries (masked scores -> -inf).
    vf alpha[NV];
    for (int u = 0; u < NV; ++u) {
      vf mx = splat<W>(-INFINITY), ok[kChunk];
      for (int64_t c = 0; c < nc; ++c) {
        ok[c] = mask_lanes<W>(maskT + int64_t(ck[c]) * Np + p0 + u * W);  // 0/1, block mask folded in
        mx = vmax<W>(mx, ok[c] > splat<W>(0.f) ? load<W>(st + c * R + u * W) : splat<W>(-INFINITY));
      }
      const vf mnew = vmax<W>(m[u], mx);
      const vf mref = mnew == splat<W>(-INFINITY) ? splat<W>(0.f) : mnew;  // rows with nothing allowed yet
      alpha[u] = m[u] == splat<W>(-INFINITY) ? splat<W>(0.f) : vexp<W>(m[u] - mref);
      vf sum = splat<W>(0.f);
      for (int64_t c = 0; c < nc; ++c) {
        const vf p = vexp<W>(load<W>(st + c * R + u * W) - mref) * ok[c];
        store<W>(st + c * R + u * W, p);
        sum += p;
      }
      l[u] = l[u] * alpha[u] + sum;
      m[u] = mnew;
    }
    for (int r = 0; r < R; ++r) {
      const float a = alpha[r / W][r % W];
      if (a != 1.f)
        for (int64_t d = 0; d < D; d += W) store<W>(acc + r * D + d, load<W>(acc + r * D + d) * a);
    }
    accumulate_pv<W, R, Regs>(v, ck, nc, st, D, acc);
  }
  for (int64_t r = 0; r < nr; ++r) {
    const float lr = l[r / W][r % W];
    const float inv = lr > 0.f ? 1.f / lr : 0.f;  // fully masked row -> zeros
    for (int64_t d = 0; d < D; d += W) store<W>(out + int64_t(rows[r]) * D + d, load<W>(acc + r * D + d) * inv);
  }
}

// Vectors per tile (NV) off AVX-512: 2 measured 3 % (AVX2) and 7 % (SSE2) faster than 1 on an AMD EPYC.
#ifndef AVX2_NV
#define AVX2_NV 2
#endif
#ifndef SSE_NV
#define SSE_NV 2
#endif
#ifndef NEON_NV
#define NEON_NV 2
#endif
#define WALLWM_TILE_ARGS                                                                                           \
  const float *q, const float *k, const float *v, int64_t N, int64_t D, const uint8_t *maskT, int64_t Np,           \
      const uint8_t *bmask, int64_t nb, int64_t block, const int32_t *rows, int64_t p0, int64_t nr, float scale, \
      Scratch &sc, float *out
#define WALLWM_TILE_PASS q, k, v, N, D, maskT, Np, bmask, nb, block, rows, p0, nr, scale, sc, out

typedef void (*TileFn)(WALLWM_TILE_ARGS);

struct Path {
  const char* name;
  int lanes;  // query rows per tile (NV vectors of W floats)
  TileFn fn;
};

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))) void tile_avx512(WALLWM_TILE_ARGS) {
  tile_impl<16, 1, 32>(WALLWM_TILE_PASS);
}
__attribute__((target("avx2,fma"))) void tile_avx2(WALLWM_TILE_ARGS) { tile_impl<8, AVX2_NV, 16>(WALLWM_TILE_PASS); }
void tile_sse2(WALLWM_TILE_ARGS) { tile_impl<4, SSE_NV, 16>(WALLWM_TILE_PASS); }
const Path kPaths[] = {{"avx512", 16, tile_avx512}, {"avx2", 8 * AVX2_NV, tile_avx2}, {"sse2", 4 * SSE_NV, tile_sse2}};
bool supported(int i) {
  __builtin_cpu_init();
  if (i == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  if (i == 1) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return true;
}
#elif defined(__aarch64__)
void tile_neon(WALLWM_TILE_ARGS) { tile_impl<4, NEON_NV, 32>(WALLWM_TILE_PASS); }
const Path kPaths[] = {{"neon", 4 * NEON_NV, tile_neon}};
bool supported(int) { return true; }
#else
void tile_generic(WALLWM_TILE_ARGS) { tile_impl<4, 1, 16>(WALLWM_TILE_PASS); }
const Path kPaths[] = {{"generic", 4, tile_generic}};
bool supported(int) { return true; }
#endif
constexpr int kNumPaths = int(sizeof(kPaths) / sizeof(kPaths[0]));

int find_path(const char* name) {
  for (int i = 0; i < kNumPaths; ++i)
    if (std::strcmp(kPaths[i].name, name) == 0) return supported(i) ? i : -2;
  return -1;
}

// -1: not chosen yet. First use: WALLWM_CPU_ISA if set to a supported path, else the widest the CPU runs.
std::atomic<int> g_path{-1};

int current_path() {
  int p = g_path.load(std::memory_order_relaxed);
  if (p >= 0) return p;
  const char* env = std::getenv("WALLWM_CPU_ISA");
  p = env && *env && std::strcmp(env, "auto") != 0 ? find_path(env) : -1;
  if (p < 0)
    for (p = 0; p < kNumPaths - 1 && !supported(p); ++p) {
    }
  g_path.store(p, std::memory_order_relaxed);
  return p;
}

// (B, H, N, D) -> (B, H, N, Dp) with zero columns, so every row is a whole number of vectors.
std::vector<float> pad_heads(const float* x, int64_t rows, int64_t D, int64_t Dp) {
  std::vector<float> y(rows * Dp, 0.f);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) std::memcpy(y.data() + r * Dp, x + r * D, sizeof(float) * D);
  return y;
}

}  // namespace

const char* attention_cpu_path(const char* isa, int* lanes) {
  if (isa && *isa) {
    const int p = std::strcmp(isa, "auto") == 0 ? -1 : find_path(isa);
    if (p == -1 && std::strcmp(isa, "auto") != 0) return nullptr;  // unknown name
    if (p == -2) return nullptr;                                     // known, not supported by this CPU
    g_path.store(p, std::memory_order_relaxed);
  }
  const Path& path = kPaths[current_path()];
  if (lanes) *lanes = path.lanes;
  return path.name;
}

const char* attention_cpu_paths() {
#if defined(__x86_64__) && defined(__GNUC__)
  return "avx512 avx2 sse2";
#elif defined(__aarch64__)
  return "neon";
#else
  return "generic";
#endif
}

void block_sparse_attention_cpu(const float* q, const float* k, const float* v, int64_t B, int64_t H, int64_t N,
                                int64_t D, const uint8_t* mask, const uint8_t* block_mask, int64_t block, float scale,
                                const int32_t* row_order, float* out) {
  const Path& path = kPaths[current_path()];
  const int64_t W = path.lanes;
  const int64_t Dp = (D + 15) / 16 * 16, rows = B * H * N;
  std::vector<float> qp, kp, vp, op;
  if (Dp != D) {  // odd head dims: run on zero-padded copies (O(N D), small next to O(N^2 D))
    qp = pad_heads(q, rows, D, Dp);
    kp = pad_heads(k, rows, D, Dp);
    vp = pad_heads(v, rows, D, Dp);
    op.assign(rows * Dp, 0.f);
    q = qp.data(), k = kp.data(), v = vp.data();
  }
  float* o = Dp != D ? op.data() : out;
  const int64_t Np = (N + kMaxLanes - 1) / kMaxLanes * kMaxLanes;
  const int64_t nb = (N + block - 1) / block, tiles = (N + W - 1) / W, tasks = B * H * tiles;
  std::vector<int32_t> order(Np, 0);
  for (int64_t p = 0; p < N; ++p) order[p] = row_order ? row_order[p] : int32_t(p);
  // maskT[j][pos]: the mask AND the block mask for (row at pos, key j), so W rows of one key are W bytes.
  std::vector<uint8_t> maskT(N * Np, 0);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < N; ++p) {
    const int64_t i = order[p];
    const uint8_t* mrow = mask + i * N;
    const uint8_t* brow = block_mask + (i / block) * nb;
    for (int64_t kb = 0; kb < nb; ++kb) {
      if (!brow[kb]) continue;  // maskT starts zeroed: an empty block stays empty
      for (int64_t j = kb * block; j < std::min(N, (kb + 1) * block); ++j) maskT[j * Np + p] = mrow[j] != 0;
    }
  }
  const TileFn fn = path.fn;
#pragma omp parallel
  {
    Scratch sc;
    sc.resize(Dp, N);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t bh = t / tiles, p0 = (t % tiles) * W;
      const int64_t off = bh * N * Dp;
      fn(q + off, k + off, v + off, N, Dp, maskT.data(), Np, block_mask, nb, block, order.data() + p0, p0,
         std::min<int64_t>(W, N - p0), scale, sc, o + off);
    }
  }
  if (Dp != D) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) std::memcpy(out + r * D, op.data() + r * Dp, sizeof(float) * D);
  }
}

}  // namespace wallwm
