// Block-sparse masked attention, forward, float32 on CPU (OpenMP over (batch, head, query tile)).
//
// One task = one tile of 16 query rows, and the 16 rows are the 16 lanes of one vector. Tiles take the
// rows in `row_order` (default 0..N-1); an order that groups rows seeing similar keys (ops.attention.
// attention_row_order) shrinks the keys a tile must visit. That layout makes
// every step a plain vertical vector op, with no transposes or gathers of K and V:
//   S^T[c] (16 rows) = sum_d Q^T[d] * k_c[d]          Q^T (D, 16) once per tile; k_c[d] a broadcast load
//   online softmax per lane: m, l, alpha, p            vertical max / exp / sum over the chunk's keys
//   acc[r] += sum_c p[c][r] * v_c                      v_c a contiguous row, p a broadcast
// The keys a tile visits are the union, over its rows, of the allowed keys inside the blocks its rows'
// block-mask rows mark: empty blocks are never read, and keys no row of the tile may see are never
// computed. The mask used is `mask AND block_mask` (expanded): pass the block mask of the mask itself
// (ops.sightcone.block_mask) or a superset to get exactly `mask`. The element mask is read transposed (mask^T, built once per call) so 16 rows' bits for one key
// are 16 contiguous bytes. Masked entries get p = 0 exactly; a row that never sees an allowed key keeps
// l = 0 and is written as zeros.
//
// Inner loops use GCC/Clang vector extensions (16 floats), which lower to AVX-512, AVX2, SSE or NEON. On
// x86 the tile function is compiled for x86-64-v4 (AVX-512), v3 (AVX2+FMA) and baseline and picked at
// load time (target_clones), so one wheel runs everywhere at full width.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"

// GCC notes that 64-byte vectors change the calling convention without AVX-512; every helper taking them is
// inlined into the tile, so no such call crosses an ABI boundary.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace wallwm {
namespace {

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
typedef int32_t i16v __attribute__((vector_size(64)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));
constexpr int kLanes = 16;  // query rows per tile = lanes per vector
constexpr int kChunk = 64;  // keys per online-softmax step
constexpr int kKeyTile = 8;  // keys per register tile of the score product

#define WALLWM_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WALLWM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define WALLWM_CLONES
#endif

WALLWM_INLINE v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
WALLWM_INLINE void store(float* p, v16 x) { *reinterpret_cast<v16u*>(p) = x; }
WALLWM_INLINE v16 splat(float x) { return v16{} + x; }
WALLWM_INLINE v16 vmax(v16 a, v16 b) { return a > b ? a : b; }

// exp(x) for x <= 0 (scores minus the running max), relative error < 2e-7: Cephes' expf polynomial after
// x = n ln2 + r, 2^n built in the exponent bits. x > 0 (only masked entries) is clamped to 0 so it stays
// finite before the mask zeroes it; x < -87 flushes to 0.
WALLWM_INLINE v16 vexp(v16 x) {
  x = x > splat(0.0f) ? splat(0.0f) : x;
  const auto tiny = x < splat(-87.0f);
  x = x < splat(-87.0f) ? splat(-87.0f) : x;
  v16 t = x * 1.44269504088896341f + 12582912.0f;  // round to nearest via the 1.5 * 2^23 trick
  v16 n = t - 12582912.0f;
  v16 r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  v16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  i16v e = (__builtin_convertvector(n, i16v) + 127) << 23;
  v16 res = p * (v16)e;  // vector cast = bit cast
  return tiny ? splat(0.0f) : res;
}

struct Scratch {
  std::vector<float> qt, st, acc;
  std::vector<int32_t> keys;
  void resize(int64_t D, int64_t N) {
    qt.assign(D * kLanes, 0.f);
    st.assign(kChunk * kLanes, 0.f);
    acc.assign(kLanes * D, 0.f);
    keys.assign(N, 0);
  }
};

// acc[r] += sum_c p[c][r] v_c for RG rows at a time, DV vectors per row kept in registers.
template <int DV>
inline void accumulate_pv(const float* v, const int32_t* keys, int64_t nc, const float* st, int64_t D, float* acc) {
  constexpr int RG = DV <= 2 ? 8 : (DV <= 4 ? 4 : 2);
  for (int r0 = 0; r0 < kLanes; r0 += RG) {
    v16 a[RG][DV];
    for (int r = 0; r < RG; ++r)
      for (int e = 0; e < DV; ++e) a[r][e] = load(acc + (r0 + r) * D + 16 * e);
    for (int64_t c = 0; c < nc; ++c) {
      const float* vr = v + int64_t(keys[c]) * D;
      v16 vv[DV];
      for (int e = 0; e < DV; ++e) vv[e] = load(vr + 16 * e);
      for (int r = 0; r < RG; ++r) {
        const v16 p = splat(st[c * kLanes + r0 + r]);
        for (int e = 0; e < DV; ++e) a[r][e] += p * vv[e];
      }
    }
    for (int r = 0; r < RG; ++r)
      for (int e = 0; e < DV; ++e) store(acc + (r0 + r) * D + 16 * e, a[r][e]);
  }
}

inline void accumulate_pv_any(const float* v, const int32_t* keys, int64_t nc, const float* st, int64_t D, float* acc) {
  for (int r = 0; r < kLanes; ++r)
    for (int64_t c = 0; c < nc; ++c) {
      const v16 p = splat(st[c * kLanes + r]);
      const float* vr = v + int64_t(keys[c]) * D;
      for (int64_t d = 0; d < D; d += 16) store(acc + r * D + d, load(acc + r * D + d) + p * load(vr + d));
    }
}

// One tile: the rows rows[0..nr), nr <= 16, of one (batch, head), which sit at positions [p0, p0 + nr) of
// the row order. q, k, v, out: (N, D) with D % 16 == 0. maskT: (N, Np), maskT[j][pos] = mask AND block mask
// of (row at pos, key j), positions padded to Np (multiple of 16) with zeros.
template <int DV>
WALLWM_CLONES void tile(const float* q, const float* k, const float* v, int64_t N, int64_t D, const uint8_t* maskT,
                        int64_t Np, const uint8_t* bmask, int64_t nb, int64_t block, const int32_t* rows,
                        int64_t p0, int64_t nr, float scale, Scratch& sc, float* out) {
  float* qt = sc.qt.data();
  float* st = sc.st.data();
  float* acc = sc.acc.data();
  int32_t* keys = sc.keys.data();
  for (int64_t d = 0; d < D; ++d)
    for (int r = 0; r < kLanes; ++r) qt[d * kLanes + r] = r < nr ? q[int64_t(rows[r]) * D + d] : 0.f;
  std::fill(acc, acc + kLanes * D, 0.f);
  // Keys to visit: allowed for some row of the tile, inside a block marked for one of the tile's block rows.
  int64_t brow[kLanes], nbr = 0;  // the distinct block rows of the tile's rows
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
    for (int64_t j = kb * block; j < j1; ++j) {
      uint64_t w[2];
      std::memcpy(w, maskT + j * Np + p0, 16);
      if (w[0] | w[1]) keys[nk++] = int32_t(j);
    }
  }
  v16 m = splat(-INFINITY), l = splat(0.f);
  for (int64_t c0 = 0; c0 < nk; c0 += kChunk) {
    const int64_t nc = std::min<int64_t>(kChunk, nk - c0);
    const int32_t* ck = keys + c0;
    // S^T = (Q K^T)^T for this chunk: kKeyTile keys x 16 rows in registers per step.
    for (int64_t c = 0; c < nc; c += kKeyTile) {
      const int kt = int(std::min<int64_t>(kKeyTile, nc - c));
      const float* kr[kKeyTile];
      for (int t = 0; t < kKeyTile; ++t) kr[t] = k + int64_t(ck[c + std::min(t, kt - 1)]) * D;
      v16 s[kKeyTile] = {};
      for (int64_t d = 0; d < D; ++d) {
        const v16 qv = load(qt + d * kLanes);
        for (int t = 0; t < kKeyTile; ++t) s[t] += qv * kr[t][d];
      }
      for (int t = 0; t < kt; ++t) store(st + (c + t) * kLanes, s[t] * scale);  // scale after the dot: one rounding less on q
    }
    // Online softmax, one lane per row.
    v16 ok[kChunk];
    v16 mx = splat(-INFINITY);
    for (int64_t c = 0; c < nc; ++c) {
      u8x16 bytes;
      std::memcpy(&bytes, maskT + int64_t(ck[c]) * Np + p0, kLanes);  // 0/1, block mask folded in
      v16 okc = __builtin_convertvector(bytes, v16);
      ok[c] = okc;
      mx = vmax(mx, okc > splat(0.f) ? load(st + c * kLanes) : splat(-INFINITY));
    }
    const v16 mnew = vmax(m, mx);
    const v16 mref = mnew == splat(-INFINITY) ? splat(0.f) : mnew;  // rows with nothing allowed yet
    const v16 alpha = m == splat(-INFINITY) ? splat(0.f) : vexp(m - mref);
    v16 sum = splat(0.f);
    for (int64_t c = 0; c < nc; ++c) {
      const v16 p = vexp(load(st + c * kLanes) - mref) * ok[c];
      store(st + c * kLanes, p);
      sum += p;
    }
    l = l * alpha + sum;
    m = mnew;
    for (int r = 0; r < kLanes; ++r)
      if (alpha[r] != 1.f)
        for (int64_t d = 0; d < D; d += 16) store(acc + r * D + d, load(acc + r * D + d) * alpha[r]);
    if constexpr (DV > 0)
      accumulate_pv<DV>(v, ck, nc, st, D, acc);
    else
      accumulate_pv_any(v, ck, nc, st, D, acc);
  }
  for (int64_t r = 0; r < nr; ++r) {
    const float lr = l[r];  // fully masked row -> zeros
    for (int64_t d = 0; d < D; ++d) out[int64_t(rows[r]) * D + d] = lr > 0.f ? acc[r * D + d] / lr : 0.f;
  }
}

typedef void (*TileFn)(const float*, const float*, const float*, int64_t, int64_t, const uint8_t*, int64_t,
                       const uint8_t*, int64_t, int64_t, const int32_t*, int64_t, int64_t, float, Scratch&, float*);

TileFn pick_tile(int64_t dv) {
  switch (dv) {
    case 1: return tile<1>;
    case 2: return tile<2>;
    case 4: return tile<4>;
    case 8: return tile<8>;
    default: return tile<0>;
  }
}

// (B, H, N, D) -> (B, H, N, Dp) with zero columns, so every row is a whole number of vectors.
std::vector<float> pad_heads(const float* x, int64_t rows, int64_t D, int64_t Dp) {
  std::vector<float> y(rows * Dp, 0.f);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) std::memcpy(y.data() + r * Dp, x + r * D, sizeof(float) * D);
  return y;
}

}  // namespace

void block_sparse_attention_cpu(const float* q, const float* k, const float* v, int64_t B, int64_t H, int64_t N,
                                int64_t D, const uint8_t* mask, const uint8_t* block_mask, int64_t block, float scale,
                                const int32_t* row_order, float* out) {
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
  const int64_t Np = (N + kLanes - 1) / kLanes * kLanes;
  const int64_t nb = (N + block - 1) / block, tiles = Np / kLanes, tasks = B * H * tiles;
  std::vector<int32_t> order(Np, 0);
  for (int64_t p = 0; p < N; ++p) order[p] = row_order ? row_order[p] : int32_t(p);
  // maskT[j][pos]: the mask AND the block mask for (row at pos, key j), so 16 rows of one key are 16 bytes.
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
  const TileFn fn = pick_tile(Dp / 16);
#pragma omp parallel
  {
    Scratch sc;
    sc.resize(Dp, N);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t bh = t / tiles, p0 = (t % tiles) * kLanes;
      const int64_t off = bh * N * Dp;
      fn(q + off, k + off, v + off, N, Dp, maskT.data(), Np, block_mask, nb, block, order.data() + p0, p0,
         std::min<int64_t>(kLanes, N - p0), scale, sc, o + off);
    }
  }
  if (Dp != D) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) std::memcpy(out + r * D, op.data() + r * Dp, sizeof(float) * D);
  }
}

}  // namespace wallwm
