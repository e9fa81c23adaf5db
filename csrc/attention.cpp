// Block-sparse masked attention, forward, float32 on CPU (OpenMP over (batch, head, query tile)).
//
// One task = one query tile of `block` rows. The keys it needs are the union, over the tile's rows, of the
// allowed keys in the blocks its block-mask row marks (empty blocks are never read). Those keys are
// gathered into a compact, transposed buffer, then processed 64 at a time with flash-attention's online
// softmax: S = Q K^T, masked entries get p = 0 exactly, running max m, running sum l, acc rescaled by
// exp(m_old - m_new). A row that never sees an allowed key keeps l = 0 and is written as zeros.
//
// Inner loops use GCC/Clang vector extensions (16 floats): they lower to AVX-512, AVX2, SSE or NEON. On
// x86 the hot function is compiled for AVX-512, AVX2+FMA and baseline and picked at load time
// (target_clones), so one wheel runs everywhere at full width.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"

namespace wallwm {
namespace {

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
typedef int32_t i16v __attribute__((vector_size(64)));
constexpr int kKeys = 64;  // keys per chunk: 4 vectors
constexpr int kRows = 4;   // rows per register tile

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WALLWM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define WALLWM_CLONES
#endif

inline v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
inline void store(float* p, v16 x) { *reinterpret_cast<v16u*>(p) = x; }
inline v16 splat(float x) { return v16{} + x; }

// exp(x) for x <= 0 (scores minus the running max), |rel err| < 2e-7: Cephes' expf polynomial after
// x = n ln2 + r; 2^n built in the exponent bits. Inputs below -87 flush to 0.
inline v16 vexp(v16 x) {
  x = x > splat(0.0f) ? splat(0.0f) : x;  // masked entries may exceed the max: keep them finite (p = 0 later)
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
  v16 res = p * reinterpret_cast<v16&>(e);
  return x <= splat(-87.0f) ? splat(0.0f) : res;
}

inline float hmax(v16 x) {
  float m = x[0];
  for (int i = 1; i < 16; ++i) m = std::max(m, x[i]);
  return m;
}
inline float hsum(v16 x) {
  float s = 0;
  for (int i = 0; i < 16; ++i) s += x[i];
  return s;
}

struct Scratch {
  std::vector<float> qs, kt, vc, s, acc, m, l, ok;
  std::vector<int32_t> keys;
  void resize(int64_t rows, int64_t Dp, int64_t N) {
    qs.assign(rows * Dp, 0.f);
    kt.assign(Dp * kKeys, 0.f);
    vc.assign(kKeys * Dp, 0.f);
    s.assign(rows * kKeys, 0.f);
    ok.assign(rows * kKeys, 0.f);
    acc.assign(rows * Dp, 0.f);
    m.assign(rows, 0.f);
    l.assign(rows, 0.f);
    keys.assign(N, 0);
  }
};

// One query tile: rows [r0, r0 + nr) of one (batch, head). DV = Dp / 16 vectors per row (template for
// register allocation; 0 = run-time count for large head dims).
template <int DV>
WALLWM_CLONES void tile(const float* q, const float* k, const float* v, int64_t N, int64_t D, int64_t Dp, int dv_rt,
                        const uint8_t* mask, const uint8_t* brow, int64_t nb, int64_t block, int64_t r0, int64_t nr,
                        float scale, Scratch& sc, float* out) {
  const int dv = DV ? DV : dv_rt;
  const int64_t rows = (nr + kRows - 1) / kRows * kRows;
  float* qs = sc.qs.data();
  float* kt = sc.kt.data();
  float* vc = sc.vc.data();
  float* S = sc.s.data();
  float* ok = sc.ok.data();
  float* acc = sc.acc.data();
  float* M = sc.m.data();
  float* L = sc.l.data();
  std::fill(qs, qs + rows * Dp, 0.f);
  std::fill(acc, acc + rows * Dp, 0.f);
  for (int64_t i = 0; i < nr; ++i)
    for (int64_t d = 0; d < D; ++d) qs[i * Dp + d] = q[(r0 + i) * D + d] * scale;
  for (int64_t i = 0; i < rows; ++i) {
    M[i] = -INFINITY;
    L[i] = 0.f;
  }
  // Union of the allowed keys of the tile's rows, over the non-empty blocks only.
  int64_t nk = 0;
  for (int64_t kb = 0; kb < nb; ++kb) {
    if (!brow[kb]) continue;
    const int64_t j1 = std::min(N, (kb + 1) * block);
    for (int64_t j = kb * block; j < j1; ++j) {
      uint8_t any = 0;
      for (int64_t i = 0; i < nr; ++i) any |= mask[(r0 + i) * N + j];
      if (any) sc.keys[nk++] = int32_t(j);
    }
  }
  for (int64_t c0 = 0; c0 < nk; c0 += kKeys) {
    const int64_t nc = std::min<int64_t>(kKeys, nk - c0);
    // Gather: K^T (Dp, 64), V (64, Dp), allowed (rows, 64) as 1/0 floats; padding keys are disallowed.
    std::fill(kt, kt + Dp * kKeys, 0.f);
    std::fill(ok, ok + rows * kKeys, 0.f);
    for (int64_t c = 0; c < nc; ++c) {
      const int64_t j = sc.keys[c0 + c];
      const float* kr = k + j * D;
      for (int64_t d = 0; d < D; ++d) kt[d * kKeys + c] = kr[d];
      std::memcpy(vc + c * Dp, v + j * D, sizeof(float) * D);
      for (int64_t i = 0; i < nr; ++i) ok[i * kKeys + c] = mask[(r0 + i) * N + j] ? 1.f : 0.f;
    }
    for (int64_t c = nc; c < kKeys; ++c) std::fill(vc + c * Dp, vc + (c + 1) * Dp, 0.f);
    // S = Qs K^T, kRows x 64 register tiles.
    for (int64_t i = 0; i < rows; i += kRows) {
      v16 s[kRows][4] = {};
      for (int64_t d = 0; d < Dp; ++d) {
        const v16 k0 = load(kt + d * kKeys), k1 = load(kt + d * kKeys + 16), k2 = load(kt + d * kKeys + 32),
                  k3 = load(kt + d * kKeys + 48);
        for (int r = 0; r < kRows; ++r) {
          const v16 qb = splat(qs[(i + r) * Dp + d]);
          s[r][0] += qb * k0;
          s[r][1] += qb * k1;
          s[r][2] += qb * k2;
          s[r][3] += qb * k3;
        }
      }
      for (int r = 0; r < kRows; ++r)
        for (int c = 0; c < 4; ++c) store(S + (i + r) * kKeys + 16 * c, s[r][c]);
    }
    // Online softmax per row; P overwrites S.
    for (int64_t i = 0; i < rows; ++i) {
      float* srow = S + i * kKeys;
      const float* orow = ok + i * kKeys;
      v16 mx = splat(-INFINITY);
      for (int c = 0; c < 4; ++c) {
        const v16 sv = load(srow + 16 * c), okv = load(orow + 16 * c);
        mx = okv > splat(0.f) ? (sv > mx ? sv : mx) : mx;
      }
      const float rowmax = hmax(mx);
      if (rowmax == -INFINITY) {  // nothing allowed for this row in this chunk
        std::fill(srow, srow + kKeys, 0.f);
        continue;
      }
      const float mnew = std::max(M[i], rowmax);
      const float alpha = M[i] == -INFINITY ? 0.f : std::exp(M[i] - mnew);
      v16 sum = splat(0.f);
      for (int c = 0; c < 4; ++c) {
        const v16 p = vexp(load(srow + 16 * c) - mnew) * load(orow + 16 * c);
        store(srow + 16 * c, p);
        sum += p;
      }
      L[i] = L[i] * alpha + hsum(sum);
      M[i] = mnew;
      if (alpha != 1.f)
        for (int64_t d = 0; d < Dp; d += 16) store(acc + i * Dp + d, load(acc + i * Dp + d) * alpha);
    }
    // acc += P V, kRows rows x DV vectors in registers.
    for (int64_t i = 0; i < rows; i += kRows) {
      if constexpr (DV > 0) {
        v16 a[kRows][DV > 0 ? DV : 1];
        for (int r = 0; r < kRows; ++r)
          for (int e = 0; e < dv; ++e) a[r][e] = load(acc + (i + r) * Dp + 16 * e);
        for (int64_t c = 0; c < nc; ++c) {
          for (int e = 0; e < dv; ++e) {
            const v16 vv = load(vc + c * Dp + 16 * e);
            for (int r = 0; r < kRows; ++r) a[r][e] += splat(S[(i + r) * kKeys + c]) * vv;
          }
        }
        for (int r = 0; r < kRows; ++r)
          for (int e = 0; e < dv; ++e) store(acc + (i + r) * Dp + 16 * e, a[r][e]);
      } else {
        for (int r = 0; r < kRows; ++r)
          for (int64_t c = 0; c < nc; ++c) {
            const v16 p = splat(S[(i + r) * kKeys + c]);
            for (int e = 0; e < dv; ++e)
              store(acc + (i + r) * Dp + 16 * e, load(acc + (i + r) * Dp + 16 * e) + p * load(vc + c * Dp + 16 * e));
          }
      }
    }
  }
  for (int64_t i = 0; i < nr; ++i) {
    const float inv = L[i] > 0.f ? 1.f / L[i] : 0.f;  // fully masked row -> zeros
    for (int64_t d = 0; d < D; ++d) out[(r0 + i) * D + d] = acc[i * Dp + d] * inv;
  }
}

typedef void (*TileFn)(const float*, const float*, const float*, int64_t, int64_t, int64_t, int, const uint8_t*,
                       const uint8_t*, int64_t, int64_t, int64_t, int64_t, float, Scratch&, float*);

TileFn pick_tile(int dv) {
  switch (dv) {
    case 1: return tile<1>;
    case 2: return tile<2>;
    case 3: return tile<3>;
    case 4: return tile<4>;
    case 6: return tile<6>;
    case 8: return tile<8>;
    default: return tile<0>;
  }
}

}  // namespace

void block_sparse_attention_cpu(const float* q, const float* k, const float* v, int64_t B, int64_t H, int64_t N,
                                int64_t D, const uint8_t* mask, const uint8_t* block_mask, int64_t block, float scale,
                                float* out) {
  const int64_t Dp = (D + 15) / 16 * 16;
  const int dv = int(Dp / 16);
  const int64_t nb = (N + block - 1) / block;
  const int64_t tasks = B * H * nb;
  const TileFn fn = pick_tile(dv);
#pragma omp parallel
  {
    Scratch sc;
    sc.resize((block + kRows - 1) / kRows * kRows, Dp, N);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t bh = t / nb, qb = t % nb;
      const int64_t off = bh * N * D;
      const int64_t r0 = qb * block, nr = std::min(block, N - r0);
      fn(q + off, k + off, v + off, N, D, Dp, dv, mask, block_mask + qb * nb, nb, block, r0, nr, scale, sc,
         out + off);
    }
  }
}

}  // namespace wallwm
