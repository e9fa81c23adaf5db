// Sight-cone token masks in C++: the algorithm of wallwm_edge/ops/sightcone.py (the float64 reference),
// step for step, so both give the same mask. Per token: the patch's cone (4 side planes through the camera
// centre, near and far planes, optionally the 6 workspace planes), its vertices (every triple of planes,
// kept when inside all planes within EPS), its face normals and edge directions. Per cross-view pair: a
// separating-axis test that drops the pair only when some axis proves the two cones disjoint.
//
// Speed comes from early exits: the axis-aligned bounds of the vertices are checked first (a valid
// separating axis too, so the result is unchanged); a vertex of one cone strictly inside the other proves
// an intersection (no axis could separate them, so again the same answer); only then the face normals and
// the 36 edge cross products.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"

namespace wallwm {
namespace {

constexpr int kUndistortIters = 20;
constexpr int kBorderSamples = 8;
constexpr double kDistortMargin = 0.02;
constexpr double kEps = 1e-9;
constexpr int kMaxPlanes = 12;
constexpr int kMaxVerts = 220;  // C(12, 3): every triple of planes

struct Cone {
  double planes[kMaxPlanes][4];  // n.x <= h
  int np = 0;
  double verts[kMaxVerts][3];
  int nv = 0;
  double faces[5][3];  // 4 side normals + optical axis
  double edges[6][3];  // 4 lateral rays + 2 near-plane edges
  double lo[3], hi[3];               // vertex bounds (axis-aligned separating test)
  double face_lo[5], face_hi[5];     // the cone's own interval on each face axis
};

inline void cross(const double* a, const double* b, double* c) {
  c[0] = a[1] * b[2] - a[2] * b[1];
  c[1] = a[2] * b[0] - a[0] * b[2];
  c[2] = a[0] * b[1] - a[1] * b[0];
}
inline double dot(const double* a, const double* b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

struct Cam {
  double fx, s, cx, fy, cy, k1, k2, p1, p2, k3;
  const double* T;  // (4,4) camera -> base
  bool distorted;
  int gh, gw;
};

void undistort(const Cam& c, double u, double v, double* x_out, double* y_out) {
  double yd = (v - c.cy) / c.fy;
  double xd = (u - c.cx - c.s * yd) / c.fx;
  double x = xd, y = yd;
  for (int it = 0; it < kUndistortIters; ++it) {
    double r2 = x * x + y * y;
    double radial = 1 + c.k1 * r2 + c.k2 * r2 * r2 + c.k3 * r2 * r2 * r2;
    double dx = 2 * c.p1 * x * y + c.p2 * (r2 + 2 * x * x);
    double dy = c.p1 * (r2 + 2 * y * y) + 2 * c.p2 * x * y;
    x = (xd - dx) / radial;
    y = (yd - dy) / radial;
  }
  *x_out = x;
  *y_out = y;
}

// Normalized image coordinates of one patch's corners (u0,v0), (u1,v0), (u1,v1), (u0,v1).
void patch_corners(const Cam& c, int patch, int gy, int gx, double xy[4][2]) {
  double u0 = gx * patch - 0.5, v0 = gy * patch - 0.5, u1 = u0 + patch, v1 = v0 + patch;
  if (!c.distorted) {
    const double us[4] = {u0, u1, u1, u0}, vs[4] = {v0, v0, v1, v1};
    for (int k = 0; k < 4; ++k) {
      xy[k][1] = (vs[k] - c.cy) / c.fy;
      xy[k][0] = (us[k] - c.cx - c.s * xy[k][1]) / c.fx;
    }
    return;
  }
  double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
  for (int side = 0; side < 4; ++side) {
    for (int i = 0; i < kBorderSamples; ++i) {
      double t = double(i) / (kBorderSamples - 1) * patch, u, v;
      switch (side) {
        case 0: u = u0 + t; v = v0; break;
        case 1: u = u1; v = v0 + t; break;
        case 2: u = u0 + t; v = v1; break;
        default: u = u0; v = v0 + t; break;
      }
      double x, y;
      undistort(c, u, v, &x, &y);
      lo[0] = std::min(lo[0], x); lo[1] = std::min(lo[1], y);
      hi[0] = std::max(hi[0], x); hi[1] = std::max(hi[1], y);
    }
  }
  for (int d = 0; d < 2; ++d) {
    double pad = kDistortMargin * (hi[d] - lo[d]) + 1e-12;
    lo[d] -= pad;
    hi[d] += pad;
  }
  xy[0][0] = lo[0]; xy[0][1] = lo[1];
  xy[1][0] = hi[0]; xy[1][1] = lo[1];
  xy[2][0] = hi[0]; xy[2][1] = hi[1];
  xy[3][0] = lo[0]; xy[3][1] = hi[1];
}

double det3(const double a[3][3]) {
  return a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
         a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
}

// Vertices of the clipped cone: every plane triple, kept if inside every plane (within EPS, loose on purpose).
void clip_vertices(Cone& cone) {
  cone.nv = 0;
  const int P = cone.np;
  for (int a = 0; a < P; ++a)
    for (int b = a + 1; b < P; ++b)
      for (int c = b + 1; c < P; ++c) {
        const double* pl[3] = {cone.planes[a], cone.planes[b], cone.planes[c]};
        double A[3][3];
        for (int r = 0; r < 3; ++r)
          for (int k = 0; k < 3; ++k) A[r][k] = pl[r][k];
        double det = det3(A);
        if (std::fabs(det) <= 1e-12) continue;
        double x[3];
        for (int col = 0; col < 3; ++col) {  // Cramer's rule
          double M[3][3];
          std::memcpy(M, A, sizeof(M));
          for (int r = 0; r < 3; ++r) M[r][col] = pl[r][3];
          x[col] = det3(M) / det;
        }
        double tol = kEps * (1 + std::max({std::fabs(x[0]), std::fabs(x[1]), std::fabs(x[2])}));
        bool inside = true;
        for (int p = 0; p < P && inside; ++p) inside = dot(cone.planes[p], x) - cone.planes[p][3] <= tol;
        if (inside) std::memcpy(cone.verts[cone.nv++], x, sizeof(x));
      }
}

void build_cone(const Cam& c, int patch, int g, double near, double far, const double* ws, Cone& cone) {
  const double* T = c.T;
  double xy[4][2];
  patch_corners(c, patch, g / c.gw, g % c.gw, xy);
  double rays[4][3], t[3] = {T[3], T[7], T[11]}, z[3] = {T[2], T[6], T[10]}, inside[3] = {0, 0, 0};
  for (int k = 0; k < 4; ++k) {
    for (int r = 0; r < 3; ++r) rays[k][r] = T[4 * r] * xy[k][0] + T[4 * r + 1] * xy[k][1] + T[4 * r + 2];
    for (int r = 0; r < 3; ++r) inside[r] += rays[k][r] / 4;
  }
  cone.np = 0;
  for (int k = 0; k < 4; ++k) {
    double n[3];
    cross(rays[k], rays[(k + 1) % 4], n);
    if (dot(n, inside) > 0)
      for (double& e : n) e = -e;
    double* pl = cone.planes[cone.np++];
    pl[0] = n[0]; pl[1] = n[1]; pl[2] = n[2]; pl[3] = dot(n, t);
    std::memcpy(cone.faces[k], n, sizeof(n));
  }
  double zt = dot(z, t);
  double* pn = cone.planes[cone.np++];
  pn[0] = -z[0]; pn[1] = -z[1]; pn[2] = -z[2]; pn[3] = -near - zt;
  double* pf = cone.planes[cone.np++];
  pf[0] = z[0]; pf[1] = z[1]; pf[2] = z[2]; pf[3] = far + zt;
  std::memcpy(cone.faces[4], z, sizeof(z));
  for (int k = 0; k < 4; ++k) std::memcpy(cone.edges[k], rays[k], sizeof(rays[k]));
  for (int r = 0; r < 3; ++r) {
    cone.edges[4][r] = rays[1][r] - rays[0][r];
    cone.edges[5][r] = rays[3][r] - rays[0][r];
  }
  if (ws == nullptr) {
    cone.nv = 8;
    for (int k = 0; k < 4; ++k)
      for (int r = 0; r < 3; ++r) {
        cone.verts[k][r] = t[r] + near * rays[k][r];
        cone.verts[4 + k][r] = t[r] + far * rays[k][r];
      }
  } else {
    for (int d = 0; d < 3; ++d) {  // x_d <= max_d and -x_d <= -min_d
      double* hi = cone.planes[cone.np++];
      hi[0] = hi[1] = hi[2] = 0; hi[d] = 1; hi[3] = ws[3 + d];
    }
    for (int d = 0; d < 3; ++d) {
      double* lo = cone.planes[cone.np++];
      lo[0] = lo[1] = lo[2] = 0; lo[d] = -1; lo[3] = -ws[d];
    }
    clip_vertices(cone);
  }
  for (int r = 0; r < 3; ++r) {
    cone.lo[r] = INFINITY;
    cone.hi[r] = -INFINITY;
  }
  for (int f = 0; f < 5; ++f) {
    cone.face_lo[f] = INFINITY;
    cone.face_hi[f] = -INFINITY;
  }
  for (int i = 0; i < cone.nv; ++i) {
    for (int r = 0; r < 3; ++r) {
      cone.lo[r] = std::min(cone.lo[r], cone.verts[i][r]);
      cone.hi[r] = std::max(cone.hi[r], cone.verts[i][r]);
    }
    for (int f = 0; f < 5; ++f) {
      double p = dot(cone.faces[f], cone.verts[i]);
      cone.face_lo[f] = std::min(cone.face_lo[f], p);
      cone.face_hi[f] = std::max(cone.face_hi[f], p);
    }
  }
}

inline void interval(const Cone& c, const double* axis, double* lo, double* hi) {
  double a = INFINITY, b = -INFINITY;
  for (int i = 0; i < c.nv; ++i) {
    double p = dot(axis, c.verts[i]);
    a = std::min(a, p);
    b = std::max(b, p);
  }
  *lo = a;
  *hi = b;
}

inline bool gap_exceeds(double alo, double ahi, double blo, double bhi, double axis_norm) {
  return std::max(blo - ahi, alo - bhi) > kEps * (1 + axis_norm);
}

// A vertex of one cone strictly inside the other proves they intersect: no axis can separate them.
bool vertex_inside(const Cone& a, const Cone& b) {
  for (int i = 0; i < a.nv; ++i) {
    bool in = true;
    for (int p = 0; p < b.np && in; ++p) in = dot(b.planes[p], a.verts[i]) < b.planes[p][3];
    if (in) return true;
  }
  return false;
}

// True when some tested axis proves the two cones disjoint.
bool separated(const Cone& a, const Cone& b) {
  for (int r = 0; r < 3; ++r)
    if (gap_exceeds(a.lo[r], a.hi[r], b.lo[r], b.hi[r], 1.0)) return true;
  if (vertex_inside(a, b) || vertex_inside(b, a)) return false;  // early accept (same answer, faster)
  double lo, hi;
  for (int f = 0; f < 5; ++f) {
    double nrm = std::sqrt(dot(a.faces[f], a.faces[f]));
    interval(b, a.faces[f], &lo, &hi);
    if (gap_exceeds(a.face_lo[f], a.face_hi[f], lo, hi, nrm)) return true;
  }
  for (int f = 0; f < 5; ++f) {
    double nrm = std::sqrt(dot(b.faces[f], b.faces[f]));
    interval(a, b.faces[f], &lo, &hi);
    if (gap_exceeds(lo, hi, b.face_lo[f], b.face_hi[f], nrm)) return true;
  }
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j) {
      double ax[3], alo, ahi, blo, bhi;
      cross(a.edges[i], b.edges[j], ax);
      interval(a, ax, &alo, &ahi);
      interval(b, ax, &blo, &bhi);
      if (gap_exceeds(alo, ahi, blo, bhi, std::sqrt(dot(ax, ax)))) return true;
    }
  return false;
}

}  // namespace

void sightcone_mask_cpu(const double* K, const double* dist, const double* T, const int64_t* hw, int V, int patch,
                        double near, double far, const double* workspace, uint8_t* out) {
  std::vector<Cam> cams(V);
  std::vector<int64_t> offs(V + 1, 0);
  for (int c = 0; c < V; ++c) {
    const double* k = K + 9 * c;
    const double* d = dist + 5 * c;
    cams[c] = Cam{k[0], k[1], k[2], k[4], k[5], d[0], d[1], d[2], d[3], d[4], T + 16 * c,
                  d[0] != 0 || d[1] != 0 || d[2] != 0 || d[3] != 0 || d[4] != 0, int(hw[2 * c] / patch),
                  int(hw[2 * c + 1] / patch)};
    offs[c + 1] = offs[c] + int64_t(cams[c].gh) * cams[c].gw;
  }
  const int64_t N = offs[V];
  std::vector<Cone> cones(N);
  std::vector<int> view_of(N);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < N; ++i) {
    int c = int(std::upper_bound(offs.begin(), offs.end(), i) - offs.begin()) - 1;
    view_of[i] = c;
    build_cone(cams[c], patch, int(i - offs[c]), near, far, workspace, cones[i]);
  }
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t i = 0; i < N; ++i) {
    const int vi = view_of[i];
    uint8_t* row = out + i * N;
    for (int64_t j = 0; j < N; ++j) {
      const int vj = view_of[j];
      if (vi == vj) {
        row[j] = 1;
      } else if (vj < vi) {
        continue;  // filled by the mirror below (row j < i writes column i of this row)
      } else {
        bool allowed = cones[i].nv > 0 && cones[j].nv > 0 && !separated(cones[i], cones[j]);
        row[j] = allowed;
        out[j * N + i] = allowed;
      }
    }
  }
}

void block_mask_cpu(const uint8_t* mask, int64_t N, int64_t block, uint8_t* out) {
  const int64_t nb = (N + block - 1) / block;
  std::memset(out, 0, size_t(nb * nb));
#pragma omp parallel for schedule(static)
  for (int64_t bi = 0; bi < nb; ++bi)
    for (int64_t i = bi * block; i < std::min(N, (bi + 1) * block); ++i)
      for (int64_t j = 0; j < N; ++j)
        out[bi * nb + j / block] |= mask[i * N + j] != 0;
}

}  // namespace wallwm
