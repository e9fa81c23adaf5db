"""Joint bundle adjustment of every camera's intrinsics and pose over every board observation.

One scipy.optimize.least_squares problem: residual = projected board corner - detected corner, (2N,).
Parameters, each block optional (held fixed when asked):
  per camera   intrinsics [fx, fy, cx, cy, k1, k2, p1, p2, k3] (9) and pose (6, rotation vector + t):
               T_cam_base for a fixed camera, T_cam_flange for a wrist camera
  per node     board pose (6): T_base_board per frame ("free"), T_flange_board ("gripper"), T_base_board ("static")
A view's camera-from-board transform is  P_cam @ M_view @ N_board  with the constant M_view = F^-1 (wrist
camera) times F (gripper board), F = T_base_flange at that frame, so fixed cameras, wrist cameras (hand-eye),
gripper-held boards and hand-held boards are one code path, and cameras whose views never overlap are tied
together through the arm's poses. The Jacobian is analytic and sparse (`Problem.jacobian`: 21 nonzeros per
row, one pass over the points); finite differences over the coloured pattern (`Problem.sparsity`) needed
about 20 residual evaluations per Jacobian, and a test holds the two to each other.

Two passes: a robust one (soft-L1, scale `robust_px`) that outliers cannot drag, then a Huber pass over the
points within `reject_sigma` robust sigmas, which is close to least squares on the inliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import least_squares

from wallwm_edge.calibration import se3
from wallwm_edge.calibration.initial import ViewRef

N_INTR = 9
DENSE_MAX_PARAMS = 300  # up to this many unknowns the trust-region step is solved densely (SVD), beyond it with LSMR


@dataclass(frozen=True)
class AdjustConfig:
    dist_terms: int = 5  # 5: k1 k2 p1 p2 k3; 4: k3 held at 0 (narrow lenses)
    robust_px: float = 1.0  # soft-L1 scale of the robust pass, pixels
    reject_sigma: float = 5.0  # after the robust pass, drop points beyond this many robust sigmas (and >= 2 px)
    max_nfev: int = 100  # per pass; a well-posed rig converges in 10-30
    jacobian: str = "analytic"  # analytic | fd (finite differences over the sparsity pattern: the benchmark's baseline)


def project(X: np.ndarray, intr: np.ndarray) -> np.ndarray:
    """Camera-frame points (N, 3) with per-point intrinsics (N, 9) -> pixels (N, 2). OpenCV's model."""
    x, y = X[:, 0] / X[:, 2], X[:, 1] / X[:, 2]
    fx, fy, cx, cy, k1, k2, p1, p2, k3 = intr.T
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([fx * xd + cx, fy * yd + cy], axis=1)


class Problem:
    """Index bookkeeping: which parameter block every observation touches."""

    def __init__(self, refs: list[ViewRef], boards_X: list[np.ndarray], cameras: list[str], init: dict,
                 fixed: set, cfg: AdjustConfig):
        # init: {("K", cam): (K, dist), ("cam", cam): T node, ("board", ...): T node} (see initial.py)
        self.refs, self.cameras, self.cfg = refs, cameras, cfg
        self.cam_index = {c: i for i, c in enumerate(cameras)}
        self.board_nodes = sorted({r.board_node for r in refs}, key=lambda n: (n[1], str(n[2])))
        self.board_index = {n: i for i, n in enumerate(self.board_nodes)}
        C, B = len(cameras), len(self.board_nodes)
        # values of all blocks (free or fixed)
        self.intr = np.zeros((C, N_INTR))
        self.pose = np.zeros((C, 6))
        for i, c in enumerate(cameras):
            K, dist = init[("K", c)]
            self.intr[i] = [K[0, 0], K[1, 1], K[0, 2], K[1, 2], *np.asarray(dist, float)[:5]]
            self.pose[i] = se3.T_to_vec(se3.inv(init[("cam", c)]))
        self.board = np.stack([se3.T_to_vec(init[n]) for n in self.board_nodes])
        # which entries are free: a boolean mask per block
        self.intr_free = np.ones((C, N_INTR), bool)
        if cfg.dist_terms < 5:
            self.intr_free[:, 8] = False
        self.pose_free = np.ones((C, 6), bool)
        for kind, name in fixed:
            i = self.cam_index[name]
            (self.intr_free if kind == "K" else self.pose_free)[i] = False
        self.board_free = np.ones((B, 6), bool)
        # observations
        vcam = np.array([self.cam_index[r.view.camera] for r in refs])
        vboard = np.array([self.board_index[r.board_node] for r in refs])
        M = np.stack([(se3.inv(r.F) if r.wrist else np.eye(4)) @ (r.F if r.gripper else np.eye(4)) for r in refs])
        self.view_cam, self.view_board, self.view_M = vcam, vboard, M
        counts = np.array([len(r.view.ids) for r in refs])
        self.obs_view = np.repeat(np.arange(len(refs)), counts)  # (N,)
        self.X = np.concatenate([boards_X[r.session][r.view.ids] for r in refs])  # (N, 3) board frame
        self.uv = np.concatenate([r.view.uv for r in refs]).astype(np.float64)  # (N, 2)
        self.obs_cam = vcam[self.obs_view]

    # ---- parameter vector <-> blocks ---------------------------------------------------------------------
    def pack(self) -> np.ndarray:
        return np.concatenate([self.intr[self.intr_free], self.pose[self.pose_free], self.board[self.board_free]])

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        intr, pose, board = self.intr.copy(), self.pose.copy(), self.board.copy()
        a = self.intr_free.sum()
        b = a + self.pose_free.sum()
        intr[self.intr_free], pose[self.pose_free], board[self.board_free] = x[:a], x[a:b], x[b:]
        return intr, pose, board

    def set(self, x: np.ndarray) -> None:
        self.intr, self.pose, self.board = self.unpack(x)

    def view_T(self, pose: np.ndarray, board: np.ndarray) -> np.ndarray:
        """(V, 4, 4) camera-from-board transform of every view."""
        return se3.vec_to_T(pose)[self.view_cam] @ self.view_M @ se3.vec_to_T(board)[self.view_board]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, 2) projected pixels of every observation."""
        intr, pose, board = self.unpack(x)
        T = self.view_T(pose, board)[self.obs_view]  # (N, 4, 4)
        Xc = np.einsum("nij,nj->ni", T[:, :3, :3], self.X) + T[:, :3, 3]  # (N, 3) camera frame
        return project(Xc, intr[self.obs_cam])

    def residuals(self, x: np.ndarray, keep: np.ndarray) -> np.ndarray:
        return (self.predict(x) - self.uv)[keep].ravel()

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Column of every (block, entry) in the parameter vector, -1 where held: intr (C, 9), pose (C, 6), board (B, 6)."""
        col, pcol, bcol = np.full(self.intr.shape, -1), np.full(self.pose.shape, -1), np.full(self.board.shape, -1)
        n = 0
        for c, free in ((col, self.intr_free), (pcol, self.pose_free), (bcol, self.board_free)):
            c[free] = np.arange(n, n + free.sum())
            n += free.sum()
        return col, pcol, bcol

    def jacobian(self, x: np.ndarray, keep: np.ndarray) -> sp.csr_matrix:
        """Analytic d residuals / d x, (2N_keep, n_params), the same pattern as `sparsity`.

        Chain: X_cam = P (M (N X)), P = [R_p | t_p] the camera pose, N = [R_b | t_b] the board node, M constant.
        A rotation vector r moves R p by d(R p)/dr = -R [p]_x J_r(r) (J_r: SO(3)'s right Jacobian), so each
        6-block is two 3x3 products per point; the projection's derivatives are the textbook ones of OpenCV's
        model. One residual-sized pass instead of the ~20 that finite differences over a coloured pattern need."""
        intr, pose, board = self.unpack(x)
        obs = np.flatnonzero(keep)
        v = self.obs_view[obs]
        Rp, tp = _rotvec_R(pose[:, :3]), pose[:, 3:]
        Rb, tb = _rotvec_R(board[:, :3]), board[:, 3:]
        ci, bi = self.view_cam[v], self.view_board[v]
        M = self.view_M[v]
        X = self.X[obs]
        Y = np.einsum("nij,nj->ni", Rb[bi], X) + tb[bi]  # board node applied
        Z = np.einsum("nij,nj->ni", M[:, :3, :3], Y) + M[:, :3, 3]  # constant arm transform applied
        Xc = np.einsum("nij,nj->ni", Rp[ci], Z) + tp[ci]  # camera frame
        # d X_cam / d (pose, board): (n, 3, 6) each
        d_pose = np.concatenate([-Rp[ci] @ _skew(Z) @ _right_jac(pose[ci, :3]), np.broadcast_to(np.eye(3), (len(obs), 3, 3))], axis=2)
        A = Rp[ci] @ M[:, :3, :3]
        d_board = np.concatenate([-A @ Rb[bi] @ _skew(X) @ _right_jac(board[bi, :3]), A], axis=2)
        # projection
        fx, fy, cx, cy, k1, k2, p1, p2, k3 = intr[ci].T
        iz = 1.0 / Xc[:, 2]
        xn, yn = Xc[:, 0] * iz, Xc[:, 1] * iz
        r2 = xn * xn + yn * yn
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        drad = k1 + r2 * (2 * k2 + 3 * k3 * r2)  # d radial / d r2
        xd = xn * radial + 2 * p1 * xn * yn + p2 * (r2 + 2 * xn * xn)
        yd = yn * radial + p1 * (r2 + 2 * yn * yn) + 2 * p2 * xn * yn
        dxd = np.stack([radial + 2 * xn * xn * drad + 2 * p1 * yn + 6 * p2 * xn, 2 * xn * yn * drad + 2 * p1 * xn + 2 * p2 * yn], 1)
        dyd = np.stack([2 * xn * yn * drad + 2 * p1 * xn + 2 * p2 * yn, radial + 2 * yn * yn * drad + 6 * p1 * yn + 2 * p2 * xn], 1)
        dn = np.zeros((len(obs), 2, 3))  # d (xn, yn) / d X_cam
        dn[:, 0, 0], dn[:, 0, 2] = iz, -xn * iz
        dn[:, 1, 1], dn[:, 1, 2] = iz, -yn * iz
        duv = np.stack([fx[:, None] * dxd, fy[:, None] * dyd], 1) @ dn  # (n, 2, 3)
        one, zero = np.ones(len(obs)), np.zeros(len(obs))
        # d (u, v) / d [fx, fy, cx, cy, k1, k2, p1, p2, k3]
        du = np.stack([xd, zero, one, zero, *(fx * t for t in (xn * r2, xn * r2**2, 2 * xn * yn, r2 + 2 * xn * xn, xn * r2**3))], 1)
        dv = np.stack([zero, yd, zero, one, *(fy * t for t in (yn * r2, yn * r2**2, r2 + 2 * yn * yn, 2 * xn * yn, yn * r2**3))], 1)
        d_intr = np.stack([du, dv], 1)  # (n, 2, 9)
        vals = np.concatenate([d_intr, duv @ d_pose, duv @ d_board], axis=2)  # (n, 2, 21)
        col, pcol, bcol = self.columns()
        cols = np.concatenate([col[ci], pcol[ci], bcol[bi]], axis=1)  # (n, 21)
        rows = 2 * np.arange(len(obs))[:, None, None] + np.arange(2)[None, :, None]  # (n, 2, 1)
        ok = np.broadcast_to(cols[:, None, :] >= 0, vals.shape)
        r = np.broadcast_to(rows, vals.shape)[ok]
        c = np.broadcast_to(cols[:, None, :], vals.shape)[ok]
        n_params = self.intr_free.sum() + self.pose_free.sum() + self.board_free.sum()
        return sp.csr_matrix((vals[ok], (r, c)), shape=(2 * len(obs), n_params))

    def sparsity(self, keep: np.ndarray) -> sp.csr_matrix:
        """(2N_keep, n_params) 0/1 pattern: a point touches its camera's intrinsics and pose and its board node."""
        C, B = len(self.cameras), len(self.board_nodes)
        col = np.full((C, N_INTR), -1)
        n = 0
        col[self.intr_free] = np.arange(n, n + self.intr_free.sum())
        n += self.intr_free.sum()
        pcol = np.full((C, 6), -1)
        pcol[self.pose_free] = np.arange(n, n + self.pose_free.sum())
        n += self.pose_free.sum()
        bcol = np.full((B, 6), -1)
        bcol[self.board_free] = np.arange(n, n + self.board_free.sum())
        n += self.board_free.sum()
        obs = np.flatnonzero(keep)
        cols = np.concatenate([col[self.obs_cam[obs]], pcol[self.obs_cam[obs]], bcol[self.view_board[self.obs_view[obs]]]], axis=1)  # (n, 21)
        rows = np.repeat(np.arange(len(obs)), cols.shape[1]).reshape(len(obs), -1)
        ok = cols >= 0
        r, c = rows[ok], cols[ok]
        r2 = np.concatenate([2 * r, 2 * r + 1])
        c2 = np.concatenate([c, c])
        return sp.csr_matrix((np.ones(len(r2), np.int8), (r2, c2)), shape=(2 * len(obs), n))


def _skew(p: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n, 3, 3) cross-product matrices [p]_x."""
    S = np.zeros(p.shape[:-1] + (3, 3))
    S[..., 0, 1], S[..., 0, 2], S[..., 1, 2] = -p[..., 2], p[..., 1], -p[..., 0]
    S[..., 1, 0], S[..., 2, 0], S[..., 2, 1] = p[..., 2], -p[..., 1], p[..., 0]
    return S


def _rotvec_R(r: np.ndarray) -> np.ndarray:
    """(n, 3) rotation vectors -> (n, 3, 3), Rodrigues."""
    th = np.linalg.norm(r, axis=-1)[..., None, None]
    K = _skew(r)
    small = th < 1e-8
    a = np.where(small, 1.0, np.sin(th) / np.where(small, 1.0, th))
    b = np.where(small, 0.5, (1 - np.cos(th)) / np.where(small, 1.0, th) ** 2)
    return np.eye(3) + a * K + b * (K @ K)


def _right_jac(r: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n, 3, 3) right Jacobian of SO(3): R(r + d) ~ R(r) Exp(J_r(r) d)."""
    th = np.linalg.norm(r, axis=-1)[..., None, None]
    K = _skew(r)
    small = th < 1e-6
    ts = np.where(small, 1.0, th)
    a = np.where(small, 0.5 - th**2 / 24, (1 - np.cos(ts)) / ts**2)
    b = np.where(small, 1 / 6 - th**2 / 120, (ts - np.sin(ts)) / ts**3)
    return np.eye(3) - a * K + b * (K @ K)


@dataclass
class AdjustResult:
    x: np.ndarray
    residual: np.ndarray  # (N, 2) predicted - detected, every observation
    inlier: np.ndarray  # (N,) bool
    sigma: float  # residual standard deviation of the inliers, pixels (dof-corrected)
    cov: np.ndarray  # (n_params, n_params) parameter covariance (sigma^2 (J^T J)^-1)
    nfev: int
    cost_history: list


def adjust(problem: Problem, cfg: AdjustConfig, progress=None) -> AdjustResult:
    # One BLAS thread: the problem is small and many threads only fight (5x slower on a busy 2-core box).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _adjust(problem, cfg, progress)


def _solve(problem: Problem, x0: np.ndarray, keep: np.ndarray, loss: str, f_scale: float, cfg: AdjustConfig):
    # x_scale="jac" with tight LSMR tolerances: 10-20 iterations here, where loose inner solves needed 200.
    if cfg.jacobian == "analytic" and len(x0) <= DENSE_MAX_PARAMS:
        # few unknowns (boards held by the arm or lying still: one node each): a dense SVD step is exact and cheaper
        # than hundreds of LSMR iterations at tight tolerance
        return least_squares(problem.residuals, x0, jac=lambda x, keep: problem.jacobian(x, keep).toarray(), loss=loss, f_scale=f_scale,
                             x_scale="jac", max_nfev=cfg.max_nfev, args=(keep,), method="trf", tr_solver="exact")
    jac = dict(jac=problem.jacobian) if cfg.jacobian == "analytic" else dict(jac_sparsity=problem.sparsity(keep))
    return least_squares(problem.residuals, x0, **jac, loss=loss, f_scale=f_scale, x_scale="jac",
                         max_nfev=cfg.max_nfev, args=(keep,), method="trf", tr_solver="lsmr", tr_options=dict(atol=1e-12, btol=1e-12))


def _adjust(problem: Problem, cfg: AdjustConfig, progress=None) -> AdjustResult:
    x0 = problem.pack()
    keep = np.ones(len(problem.uv), bool)
    history = []
    res1 = _solve(problem, x0, keep, "soft_l1", cfg.robust_px, cfg)
    history.append(res1.cost)
    if progress:
        progress(1)
    r = np.linalg.norm(problem.predict(res1.x) - problem.uv, axis=1)
    robust_sigma = 1.4826 * np.median(r) / np.sqrt(np.log(4))  # median of a 2-D Rayleigh norm -> per-axis sigma
    keep = r < max(cfg.reject_sigma * robust_sigma, 2.0)
    scale = max(3 * robust_sigma, 0.3)
    res2 = _solve(problem, res1.x, keep, "huber", scale, cfg)
    history.append(res2.cost)
    if progress:
        progress(1)
    problem.set(res2.x)
    resid = problem.predict(res2.x) - problem.uv
    m, n = 2 * keep.sum(), len(res2.x)
    sigma = float(np.sqrt((resid[keep] ** 2).sum() / max(m - n, 1)))
    J = res2.jac.tocsc() if sp.issparse(res2.jac) else sp.csc_matrix(res2.jac)
    JtJ = (J.T @ J).toarray()
    w, V = np.linalg.eigh(JtJ)
    w_inv = np.where(w > w.max() * 1e-15, 1.0 / np.maximum(w, 1e-300), 1e15)  # unobservable directions -> huge variance
    cov = sigma**2 * (V * w_inv) @ V.T
    return AdjustResult(res2.x, resid, keep, sigma, cov, res1.nfev + res2.nfev, history)
