// Standalone test of the CPU block-sparse attention (csrc/attention.cpp), no Python: every compiled
// instruction-set path this CPU runs against a float64 scalar reference, on odd shapes and masks with fully
// masked rows, all-allowed rows and cleared blocks. Built natively or cross-compiled for aarch64 and run
// under qemu-aarch64 (csrc/tests/run_aarch64.sh). Exit status 0 when every case passes.
//   attention_test            correctness (prints one line per path and case)
//   attention_test --bench [MASK_FILE]   also time 8 heads x 64 per path on a sight-cone-like mask (N=432) or
//                             the mask in MASK_FILE (native only: timings under emulation mean nothing);
//                             a third argument names the one path to run
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels.h"

namespace {

struct Case {
  int64_t B, H, N, D, block;
  int kind;  // 0 random 30 %, 1 three views + sparse cross pairs, 2 dense
};

// out = softmax(scale q k^T | eff) v in float64, eff = mask AND expand(block_mask); rows with no key -> 0.
void reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v, const Case& c,
               const std::vector<uint8_t>& mask, const std::vector<uint8_t>& bm, float scale, std::vector<double>& out) {
  const int64_t N = c.N, D = c.D, nb = (N + c.block - 1) / c.block;
  out.assign(c.B * c.H * N * D, 0.0);
  std::vector<double> s(N);
  for (int64_t bh = 0; bh < c.B * c.H; ++bh) {
    const float *qh = &q[bh * N * D], *kh = &k[bh * N * D], *vh = &v[bh * N * D];
    for (int64_t i = 0; i < N; ++i) {
      double mx = -INFINITY;
      for (int64_t j = 0; j < N; ++j) {
        const bool ok = mask[i * N + j] && bm[(i / c.block) * nb + j / c.block];
        double d = 0;
        for (int64_t e = 0; e < D; ++e) d += double(qh[i * D + e]) * kh[j * D + e];
        s[j] = ok ? d * scale : -INFINITY;
        mx = std::max(mx, s[j]);
      }
      if (mx == -INFINITY) continue;
      double l = 0;
      for (int64_t j = 0; j < N; ++j) l += s[j] = std::exp(s[j] - mx);
      for (int64_t j = 0; j < N; ++j)
        for (int64_t e = 0; e < D; ++e) out[(bh * N + i) * D + e] += s[j] / l * vh[j * D + e];
    }
  }
}

std::vector<uint8_t> make_mask(const Case& c, std::mt19937& rng) {
  const int64_t N = c.N;
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<uint8_t> m(N * N);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j)
      m[i * N + j] = c.kind == 0 ? u(rng) < 0.3 : c.kind == 1 ? (i * 3 / N == j * 3 / N) || u(rng) < 0.04 : 1;
  const int64_t dead = rng() % N, full = rng() % N, nobody = rng() % N;
  for (int64_t j = 0; j < N; ++j) m[dead * N + j] = 0;  // a fully masked row -> zeros
  for (int64_t j = 0; j < N; ++j) m[full * N + j] = 1;  // an all-allowed row
  if (N > 2)
    for (int64_t i = 0; i < N; ++i) m[i * N + nobody] = 0;  // a key nobody may see
  return m;
}

std::vector<uint8_t> make_block_mask(const std::vector<uint8_t>& m, int64_t N, int64_t block, bool clear_some,
                                     std::mt19937& rng) {
  const int64_t nb = (N + block - 1) / block;
  std::vector<uint8_t> bm(nb * nb, 0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j) bm[(i / block) * nb + j / block] |= m[i * N + j];
  if (clear_some && nb > 1)
    for (int t = 0; t < 2; ++t) bm[rng() % (nb * nb)] = 0;  // mask used = mask AND block mask
  return bm;
}

// max |out - ref| over the case, and whether every output was written (out starts as NaN).
bool run_case(const Case& c, uint32_t seed, const char* path, bool order_rows) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 2.f);
  const int64_t n = c.B * c.H * c.N * c.D;
  std::vector<float> q(n), k(n), v(n), out(n, NAN);
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = g(rng);
  const auto mask = make_mask(c, rng);
  const auto bm = make_block_mask(mask, c.N, c.block, seed % 2 == 0, rng);
  std::vector<int32_t> order(c.N);
  for (int64_t i = 0; i < c.N; ++i) order[i] = int32_t(i);
  if (order_rows) std::shuffle(order.begin(), order.end(), rng);
  const float scale = 1.f / std::sqrt(float(c.D));
  wallwm::block_sparse_attention_cpu(q.data(), k.data(), v.data(), c.B, c.H, c.N, c.D, mask.data(), bm.data(),
                                     c.block, scale, order_rows ? order.data() : nullptr, out.data());
  std::vector<double> ref;
  reference(q, k, v, c, mask, bm, scale, ref);
  double err = 0, sq = 0, mag = 1;
  bool written = true;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(out[i])) written = false;
    const double d = std::fabs(out[i] - ref[i]);
    err = std::max(err, d);
    sq += d * d;
    mag = std::max(mag, std::fabs(ref[i]));
  }
  const double rms = std::sqrt(sq / double(n));
  // float32 attention over <= 130 keys: errors are a few ulp of the largest output.
  const bool ok = written && err <= 64 * 1.19e-7 * mag && rms <= 8 * 1.19e-7 * mag;
  std::printf("%-7s B%lld H%lld N%lld D%lld block%lld %-6s order=%d: max err %.3g rms %.3g %s\n", path,
              (long long)c.B, (long long)c.H, (long long)c.N, (long long)c.D, (long long)c.block,
              c.kind == 0 ? "random" : c.kind == 1 ? "views" : "dense", int(order_rows), err, rms,
              ok ? "ok" : (written ? "FAIL" : "FAIL (unwritten output)"));
  return ok;
}

// Best of `reps` calls, in CPU seconds of this process (steadier than wall time on a shared machine; with
// OMP_NUM_THREADS=1 it is the kernel's own time). mask_file: int32 N, N*N mask bytes (0/1), N int32 row order
// (e.g. a rig's sightcone_mask and attention_row_order, written raw); else a synthetic sight-cone-like mask.
double bench(int reps, const char* mask_file) {
  int64_t N = 432;
  const int64_t B = 1, H = 8, D = 64, block = 16;
  std::mt19937 rng(0);
  std::normal_distribution<float> g(0.f, 1.f);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<uint8_t> m;
  std::vector<int32_t> order;
  if (mask_file) {
    FILE* f = std::fopen(mask_file, "rb");
    int32_t n32 = 0;
    if (!f || std::fread(&n32, 4, 1, f) != 1 || n32 < 1) return -1;
    N = n32;
    m.resize(N * N);
    order.resize(N);
    const bool ok = std::fread(m.data(), 1, N * N, f) == size_t(N * N) && std::fread(order.data(), 4, N, f) == size_t(N);
    std::fclose(f);
    if (!ok) return -1;
  } else {  // three views: dense same-view attention plus 4.5 % cross-view pairs (density ~0.36)
    m.resize(N * N);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < N; ++j) m[i * N + j] = (i * 3 / N == j * 3 / N) || u(rng) < 0.045;
  }
  const int64_t n = B * H * N * D;
  std::vector<float> q(n), k(n), v(n), out(n);
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = g(rng);
  const auto bm = make_block_mask(m, N, block, false, rng);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const std::clock_t t0 = std::clock();
    wallwm::block_sparse_attention_cpu(q.data(), k.data(), v.data(), B, H, N, D, m.data(), bm.data(), block, 0.125f,
                                       order.empty() ? nullptr : order.data(), out.data());
    best = std::min(best, double(std::clock() - t0) / CLOCKS_PER_SEC);
  }
  return best * 1e3;
}

}  // namespace

int main(int argc, char** argv) {
  const bool do_bench = argc > 1 && std::strcmp(argv[1], "--bench") == 0;
  const char* mask_file = do_bench && argc > 2 ? argv[2] : nullptr;
  const char* only = argc > 3 ? argv[3] : nullptr;  // --bench MASK_FILE PATH: that path only
  const Case cases[] = {{1, 1, 1, 1, 1, 0},    {2, 3, 37, 16, 8, 0}, {1, 2, 100, 64, 16, 1}, {1, 1, 130, 100, 32, 0},
                        {2, 1, 17, 7, 5, 1},   {1, 2, 64, 128, 64, 2}, {1, 1, 45, 48, 12, 1}, {1, 2, 100, 64, 16, 2}};
  std::istringstream paths(wallwm::attention_cpu_paths());
  int failed = 0, run = 0;
  std::string path;
  while (paths >> path) {
    if (only && path != only) continue;
    int lanes = 0;
    if (!wallwm::attention_cpu_path(path.c_str(), &lanes)) {
      std::printf("%-7s not supported by this CPU: skipped\n", path.c_str());
      continue;
    }
    uint32_t seed = 1;
    for (const Case& c : cases)
      for (bool order_rows : {false, true}) {
        failed += !run_case(c, seed++, path.c_str(), order_rows);
        ++run;
      }
    if (do_bench)
      std::printf("%-7s (%d rows per tile) H=8 D=64, %s: best %.3f ms CPU time\n", path.c_str(), lanes,
                  mask_file ? mask_file : "N=432 synthetic mask", bench(do_bench && only ? 200 : 20, mask_file));
  }
  std::printf("%d of %d cases passed\n", run - failed, run);
  return failed || run == 0 ? 1 : 0;
}
