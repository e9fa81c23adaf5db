"""`wallwm-edge calibrate check`: from a few new captures, which camera moved, by how much; refine only it.

Intrinsics stay as in the rig (a bump moves a camera, it does not change its lens). For every camera c we
place the board from the *other* cameras (or from the arm's poses through the gripper-held board), then
fit c's pose alone; the camera whose removal leaves the others consistent is the one that moved. Repeats
for a second moved camera. Needs, in each frame, the board seen by at least two unmoved cameras, or arm poses.

Then the result is verified: every camera held at the returned rig, only the boards fitted, each camera's
median residual must stay under `max_residual_px`; and each view alone (PnP with the rig's intrinsics)
must fit under `max_pnp_px`. A camera that misses either does not match the rig at all: a capture of
another rig, or a lens whose zoom or focus changed. That is `CheckResult.mismatch`, and the CLI refuses
to write a rig from it (a bump moves a camera; it cannot explain a different focal length).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from wallwm_edge.calibration import se3
from wallwm_edge.calibration.adjust import AdjustConfig, Problem
from wallwm_edge.calibration.initial import pnp, propagate, view_refs
from wallwm_edge.calibration.observations import Session
from wallwm_edge.calibration.rig import Rig
from wallwm_edge.errors import DataError


@dataclass(frozen=True)
class CheckConfig:
    rot_tol_deg: float = 0.15  # a camera moved if its pose changed by more than this ...
    trans_tol_mm: float = 1.5  # ... or this
    robust_px: float = 1.0
    min_gain_px: float = 0.5  # ... and the new pose lowers the median residual by at least this much
    max_residual_px: float = 1.5  # verification: median residual of a camera held at the result rig
    max_pnp_px: float = 1.0  # verification: median residual of single views fitted alone with the rig's intrinsics


@dataclass
class CameraCheck:
    name: str
    moved: bool
    rot_deg: float  # pose change found (rig -> now)
    trans_mm: float
    rms_before_px: float  # median residual with the rig pose
    rms_after_px: float  # with the refined pose (moved cameras)
    residual_px: float = float("nan")  # verification: median residual with the result rig (every camera held)
    pnp_px: float = float("nan")  # verification: median over views of the median residual of a PnP fit per view

    def mismatch(self, cfg: "CheckConfig") -> str:
        """'' when the camera fits the rig, else why not (one clause)."""
        why = []
        if self.residual_px > cfg.max_residual_px:
            why.append(f"median residual {self.residual_px:.2f} px with the rig (> {cfg.max_residual_px:g})")
        if self.pnp_px > cfg.max_pnp_px:
            why.append(f"single views fit its intrinsics to {self.pnp_px:.2f} px (> {cfg.max_pnp_px:g})")
        return " and ".join(why)


@dataclass
class CheckResult:
    cameras: list[CameraCheck]
    rig: Rig  # the rig with the moved cameras' poses refined
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    config: CheckConfig = field(default_factory=CheckConfig)

    @property
    def moved(self) -> list[str]:
        return [c.name for c in self.cameras if c.moved]

    @property
    def mismatch(self) -> dict[str, str]:
        """camera -> why its images do not fit the rig (another rig's capture, a changed lens); empty when all fit."""
        return {c.name: why for c in self.cameras if (why := c.mismatch(self.config))}


def _node(cam) -> np.ndarray:
    return cam.T_flange_cam if cam.mount == "wrist" else cam.T_base_cam


def _fit(refs, sessions, cams, init, free_poses, cfg: CheckConfig) -> Problem:
    """Fit board nodes (+ the poses of `free_poses`) with the given cameras' intrinsics and other poses held."""
    sub = [r for r in refs if r.view.camera in cams]
    fixed = {("K", c) for c in cams} | {("pose", c) for c in cams if c not in free_poses}
    prob = Problem(sub, [s.board.corners() for s in sessions], cams, init, fixed, AdjustConfig())
    keep = np.ones(len(prob.uv), bool)
    res = least_squares(prob.residuals, prob.pack(), jac_sparsity=prob.sparsity(keep), loss="soft_l1", f_scale=cfg.robust_px,
                        x_scale="jac", args=(keep,), tr_solver="lsmr", tr_options=dict(atol=1e-10, btol=1e-10), max_nfev=100)
    prob.set(res.x)
    return prob


def _median_residual(prob: Problem, cam: str) -> float:
    i = prob.cameras.index(cam)
    r = np.linalg.norm(prob.predict(prob.pack()) - prob.uv, axis=1)[prob.obs_cam == i]
    return float(np.median(r)) if len(r) else float("nan")


def check(rig: Rig, sessions: list[Session], cfg: CheckConfig = CheckConfig()) -> CheckResult:
    import time

    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    cams = [c for c in rig.names if any(s.views_of(c) for s in sessions)]
    missing = [c for s in sessions for c in s.cameras() if c not in rig.names]
    if missing:
        raise DataError(f"cameras {sorted(set(missing))} are in the capture but not in the rig ({rig.names})")
    if len(cams) < 2 and not any(s.board_mount == "gripper" for s in sessions):
        raise DataError("check needs the board seen by at least two cameras of the rig, or arm poses with the board in the gripper")
    refs = [r for r in view_refs(sessions) if r.view.camera in cams]
    for r in refs:
        c = rig.camera(r.view.camera)
        r.T_cam_board = pnp(r.view, sessions[r.session].board.corners(), c.K, c.dist)
    base = {("K", c): (rig.camera(c).K, rig.camera(c).dist) for c in cams}
    base.update({("cam", c): _node(rig.camera(c)) for c in cams})
    with threadpool_limits(1):
        moved: list[str] = []
        checks: dict[str, CameraCheck] = {}
        for _ in range(max(len(cams) - 1, 1)):
            rest = [c for c in cams if c not in moved]
            best = None
            for c in rest:
                others = [o for o in rest if o != c]
                init = dict(base)
                init.update(propagate([r for r in refs if r.view.camera in others], {("cam", o): base[("cam", o)] for o in others}) if others else {})
                if sum(r.board_node in init for r in refs if r.view.camera == c) < 2:
                    continue  # c shares (almost) no frame with the others: cannot test it alone
                prob = _fit(refs, sessions, others, init, set(), cfg) if others else None
                consistency = np.median([_median_residual(prob, o) for o in others]) if prob else 0.0
                if best is None or consistency < best[1]:
                    best = (c, consistency, prob)
            if best is None:
                raise DataError("no frame is seen by enough cameras to tell which camera moved; capture frames where the board is seen by "
                                "three or more cameras, or hold it in the gripper with arm poses")
            c, _, prob = best
            # c's pose with the board placed by the others
            init = dict(base)
            for n, i in prob.board_index.items():
                init[n] = se3.vec_to_T(prob.board[i])
            own = [r for r in refs if r.view.camera == c and r.board_node in init]  # c's views of boards the others placed
            before = Problem(own, [s.board.corners() for s in sessions], [c], init, {("K", c), ("pose", c)}, AdjustConfig())
            rms_before = _median_residual(before, c)
            # refit c's pose alone, the board held where the others put it
            solo_fixed = Problem(own, [s.board.corners() for s in sessions], [c], init, {("K", c)}, AdjustConfig())
            solo_fixed.board_free[:] = False
            keep = np.ones(len(solo_fixed.uv), bool)
            res = least_squares(solo_fixed.residuals, solo_fixed.pack(), jac_sparsity=solo_fixed.sparsity(keep), loss="soft_l1",
                                f_scale=cfg.robust_px, x_scale="jac", args=(keep,), tr_solver="lsmr", max_nfev=100)
            solo_fixed.set(res.x)
            new = se3.inv(se3.vec_to_T(solo_fixed.pose[0]))
            rot, tr = se3.pose_error(new, base[("cam", c)])
            rms_after = _median_residual(solo_fixed, c)
            # a pose change counts only when the images demand it: with few, oblique shared views a camera's pose
            # is loose, and a different pose that fits no better is noise, not a bump
            evident = rms_before > max(1.5 * rms_after, rms_after + cfg.min_gain_px)
            is_moved = (rot > cfg.rot_tol_deg or 1000 * tr > cfg.trans_tol_mm) and evident
            checks[c] = CameraCheck(c, is_moved, rot, 1000 * tr, rms_before, rms_after)
            if not is_moved:
                break
            moved.append(c)
            base[("cam", c)] = new
        if moved:
            # final refinement: the moved cameras' poses and every board pose together, the unmoved cameras held
            init = dict(base)
            init.update(propagate(refs, {("cam", c): base[("cam", c)] for c in cams}))
            prob = _fit(refs, sessions, cams, init, set(moved), cfg)
            for c in moved:
                new = se3.inv(se3.vec_to_T(prob.pose[prob.cameras.index(c)]))
                base[("cam", c)] = new
                rot, tr = se3.pose_error(new, _node(rig.camera(c)))
                checks[c] = CameraCheck(c, True, rot, 1000 * tr, checks[c].rms_before_px, _median_residual(prob, c))
        for c in cams:
            if c not in checks:
                checks[c] = CameraCheck(c, False, 0.0, 0.0, float("nan"), float("nan"))
        residual = _verify(refs, sessions, cams, base, cfg)
        pnp_px = _pnp_residuals(refs, sessions, rig)
        for c in cams:
            checks[c].residual_px, checks[c].pnp_px = residual.get(c, float("nan")), pnp_px.get(c, float("nan"))
    cams_out = []
    for cam in rig.cameras:
        if cam.name in moved:
            T = base[("cam", cam.name)]
            cams_out.append(cam.with_pose(T) if cam.mount == "fixed" else
                            type(cam)(cam.name, cam.width, cam.height, cam.K, cam.dist, cam.T_base_cam @ se3.inv(cam.T_flange_cam) @ T, "wrist", T))
        else:
            cams_out.append(cam)
    out = Rig(tuple(cams_out), rig.workspace_min, rig.workspace_max)
    return CheckResult([checks[c] for c in cams], out, time.perf_counter() - t0, config=cfg)


def _verify(refs, sessions, cams, base, cfg: CheckConfig) -> dict[str, float]:
    """Each camera's median residual with every camera held at `base` (the result), only the boards fitted."""
    init = dict(base)
    init.update(propagate(refs, {("cam", c): base[("cam", c)] for c in cams}))
    prob = _fit(refs, sessions, cams, init, set(), cfg)
    return {c: _median_residual(prob, c) for c in cams}


def _pnp_residuals(refs, sessions, rig: Rig) -> dict[str, float]:
    """Per camera, the median over its views of the median reprojection error of the view's own PnP pose
    with the rig's intrinsics: pose-free, so it tests the lens alone (a bumped camera still fits)."""
    import cv2

    per: dict[str, list[float]] = {}
    for r in refs:
        cam = rig.camera(r.view.camera)
        X = sessions[r.session].board.corners()[r.view.ids]
        rvec, _ = cv2.Rodrigues(r.T_cam_board[:3, :3])
        uv, _ = cv2.projectPoints(X, rvec, r.T_cam_board[:3, 3], cam.K, cam.dist)
        per.setdefault(r.view.camera, []).append(float(np.median(np.linalg.norm(uv.reshape(-1, 2) - r.view.uv, axis=1))))
    return {c: float(np.median(v)) for c, v in per.items()}
