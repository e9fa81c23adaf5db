"""Is the calibration good? Per-camera figures and a plain verdict with what to recapture.

Figures per camera: views, points, outliers, inlier RMS, per-view RMS, image coverage of the detections,
board tilt range, and the 1-sigma uncertainty of the focal length and of the camera pose from the
adjustment's covariance. The uncertainty is what catches degenerate captures (board always far and
frontal: focal length and distance trade off), so they are reported as insufficient instead of fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wallwm_edge.calibration import se3
from wallwm_edge.calibration.adjust import _right_jac

GRID = (6, 8)  # coverage cells (rows, cols)
REGIONS = [["top-left", "top", "top-right"], ["left", "centre", "right"], ["bottom-left", "bottom", "bottom-right"]]


@dataclass(frozen=True)
class QualityConfig:
    max_focal_std_pct: float = 0.2  # 1-sigma focal uncertainty above this: intrinsics not determined
    min_perspective: float = 0.1  # some view must show the board with >= 10% depth change across it (tilted, close)
    min_coverage: float = 0.5  # fraction of GRID cells with detections
    max_rot_std_deg: float = 0.1
    max_centre_std_mm: float = 1.0
    max_rms_px: float = 1.5
    bad_view_factor: float = 3.0  # a view whose RMS is this many times the camera's median is flagged


@dataclass
class CameraQuality:
    name: str
    n_views: int
    n_points: int
    n_outliers: int
    rms_px: float
    view_rms: list[tuple[str, float]]  # (image, RMS px), capture order
    coverage: float
    empty_regions: list[str]
    perspective: float  # largest relative depth change across the board over the views (from detections alone)
    focal_std_pct: float
    rot_std_deg: float
    centre_std_mm: float
    status: str = "good"  # good | recapture | insufficient
    advice: list[str] = field(default_factory=list)
    mount: str = "fixed"  # fixed | wrist
    shares_views: bool = True  # some frame shows its board to another camera too


def perspective(X: np.ndarray, uv: np.ndarray) -> float:
    """Relative depth change across the board in one view, (max w - min w) / mean w of the plane-to-image
    homography's projective depths w. It needs no intrinsics, so it also judges captures whose fit failed:
    a board seen far and frontal has w nearly constant and then focal length and distance trade off."""
    import cv2

    H, _ = cv2.findHomography(X[:, :2], uv, 0)
    if H is None:
        return 0.0
    w = np.concatenate([X[:, :2], np.ones((len(X), 1))], 1) @ H[2]
    return float((w.max() - w.min()) / abs(w.mean()))


def coverage(uv: np.ndarray, size: tuple[int, int]) -> tuple[float, list[str]]:
    w, h = size
    r = np.clip((uv[:, 1] / h * GRID[0]).astype(int), 0, GRID[0] - 1)
    c = np.clip((uv[:, 0] / w * GRID[1]).astype(int), 0, GRID[1] - 1)
    hit = np.zeros(GRID, bool)
    hit[r, c] = True
    empty = []
    for i, rows in enumerate(np.array_split(np.arange(GRID[0]), 3)):
        for j, cols in enumerate(np.array_split(np.arange(GRID[1]), 3)):
            if hit[np.ix_(rows, cols)].mean() < 0.5:
                empty.append(REGIONS[i][j])
    return float(hit.mean()), empty


def rotation_cov(rotvec: np.ndarray, cov3: np.ndarray) -> np.ndarray:
    """Covariance (3, 3) of the rotation as an angle vector (radians, tangent space) from that of its rotation
    vector parameters: R(r + d) = R(r) Exp(J_r(r) d). A camera's rotation vector is 2-3 rad long, where J_r
    shrinks the directions across the axis by up to ~20 %, so the parameters' own variance overstated the
    angle's (the benchmark's hard rigs: reported 0.08-0.11 deg where repeated noise gave 0.06-0.10)."""
    J = _right_jac(np.asarray(rotvec, np.float64)[None])[0]
    return J @ cov3 @ J.T


def _centre_cov(vec: np.ndarray, cov6: np.ndarray) -> np.ndarray:
    """Covariance (3, 3) of the camera centre -R^T t from that of the (rotvec, t) of T_cam_X."""
    def centre(v):
        T = se3.vec_to_T(v)
        return -T[:3, :3].T @ T[:3, 3]
    J = np.zeros((3, 6))
    for k in range(6):
        d = np.zeros(6)
        d[k] = 1e-6
        J[:, k] = (centre(vec + d) - centre(vec - d)) / 2e-6
    return J @ cov6 @ J.T


def assess(cal, cfg: QualityConfig = QualityConfig()) -> list[CameraQuality]:
    """Per-camera quality of a `solve.Calibration`."""
    prob, res = cal.problem, cal.result
    out = []
    n_intr = prob.intr_free.sum()
    intr_col = np.full(prob.intr_free.shape, -1)
    intr_col[prob.intr_free] = np.arange(n_intr)
    pose_col = np.full(prob.pose_free.shape, -1)
    pose_col[prob.pose_free] = n_intr + np.arange(prob.pose_free.sum())
    seen_by: dict[tuple, set] = {}
    for r in prob.refs:
        seen_by.setdefault(r.board_node, set()).add(r.view.camera)
    for i, name in enumerate(prob.cameras):
        obs = prob.obs_cam == i
        inl = obs & res.inlier
        r = np.linalg.norm(res.residual, axis=1)
        rms = float(np.sqrt(np.mean(r[inl] ** 2))) if inl.any() else float("nan")
        vidx = np.flatnonzero(prob.view_cam == i)
        view_rms = []
        for v in vidx:
            m = (prob.obs_view == v) & res.inlier
            view_rms.append((prob.refs[v].view.source, float(np.sqrt(np.mean(r[m] ** 2))) if m.any() else float("inf")))
        persp = max(perspective(cal.boards[prob.refs[v].session][prob.refs[v].view.ids], prob.refs[v].view.uv) for v in vidx)
        cov_frac, empty = coverage(prob.uv[obs], cal.sizes[name])
        fcol = intr_col[i, 0]
        f = prob.intr[i, 0]
        f_std = (100 * np.sqrt(max(res.cov[fcol, fcol], 0.0)) / f if f > 0 else float("inf")) if fcol >= 0 else 0.0
        pc = pose_col[i]
        if pc[0] >= 0:
            c6 = res.cov[np.ix_(pc, pc)]
            rot_std = float(np.degrees(np.sqrt(np.trace(rotation_cov(prob.pose[i, :3], c6[:3, :3])))))
            centre_std = float(1000 * np.sqrt(np.trace(_centre_cov(prob.pose[i], c6))))
        else:
            rot_std = centre_std = 0.0  # held fixed (the reference camera defines the frame)
        q = CameraQuality(name, len(vidx), int(obs.sum()), int((obs & ~res.inlier).sum()), rms, view_rms, cov_frac, empty,
                          persp, float(f_std), rot_std, centre_std, mount=cal.rig.camera(name).mount,
                          shares_views=any(len(seen_by[r.board_node]) > 1 for r in prob.refs if r.view.camera == name))
        _verdict(q, cfg)
        out.append(q)
    return out


def _verdict(q: CameraQuality, cfg: QualityConfig) -> None:
    bad, warn = [], []
    if not np.isfinite(q.focal_std_pct) or q.focal_std_pct > cfg.max_focal_std_pct:
        bad.append(f"focal length is not determined (+-{q.focal_std_pct:.2g}% at 1 sigma, if at all): bring the board closer so it fills a third "
                   "of the image and tilt it 30-45 degrees towards the camera in several views")
    if q.perspective < cfg.min_perspective:
        bad.append(f"the board is always seen far or nearly frontal (depth varies by at most {100 * q.perspective:.0f}% across it): "
                   "bring it closer and tilt it 30-45 degrees left, right, up and down")
    pose_ratio = max(q.rot_std_deg / cfg.max_rot_std_deg, q.centre_std_mm / cfg.max_centre_std_mm)
    if pose_ratio > 1:  # 1-2.5x the limit: usable, recapture advised; beyond: not determined
        # the remedy depends on what can tie this camera down: the arm moving it (wrist), the arm moving the board
        # in front of it (a camera that shares no view with the others), or views shared with the others
        if q.mount == "wrist":
            how = ("move the arm through more poses with larger rotations, about at least two different axes, while the wrist camera "
                   "sees the board lying still")
        elif not q.shares_views:
            how = ("hold the board in the gripper and move the arm through more poses in front of this camera, turning the board about "
                   "at least two different axes")
        else:
            how = "add views shared with the other cameras, or hold the board in the gripper and move the arm"
        (bad if pose_ratio > 2.5 else warn).append(f"pose is uncertain (+-{q.rot_std_deg:.2g} deg, +-{q.centre_std_mm:.2g} mm): {how}")
    if q.coverage < cfg.min_coverage:
        warn.append(f"detections cover {100 * q.coverage:.0f}% of the image: add views with the board in the "
                    f"{', '.join(q.empty_regions) or 'empty'} part(s) of the image")
    if q.rms_px > cfg.max_rms_px:
        warn.append(f"reprojection RMS {q.rms_px:.2f} px is high: check focus, motion blur and that the board is flat")
    finite = [v for _, v in q.view_rms if np.isfinite(v)]
    med = float(np.median(finite)) if finite else 0.0
    worst = [s for s, v in q.view_rms if v > max(cfg.bad_view_factor * med, 1.0)]
    if worst:
        warn.append(f"{len(worst)} view(s) fit badly (blur, a bent board or a wrong detection): recapture or drop {', '.join(worst[:6])}"
                    + (" ..." if len(worst) > 6 else ""))
    if q.n_outliers > 0.1 * q.n_points:
        warn.append(f"{q.n_outliers} of {q.n_points} corners rejected as outliers")
    q.status = "insufficient" if bad else ("recapture" if warn else "good")
    q.advice = bad + warn
