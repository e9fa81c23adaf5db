"""`wallwm-edge calibrate check`: from a few new captures, which camera moved, by how much; refine only it.

Intrinsics stay as in the rig (a bump moves a camera, it does not change its lens). Every camera the
capture shows is checked, wrist cameras included (their unknown is the flange-to-camera transform
T_flange_cam, read from any capture where the arm moves them over a board lying still):
1. every camera held at the rig, only the board poses fitted: each camera's median residual "before";
2. for each camera c in turn, c's pose freed as well (the others held): its pose change and median
   residual "after". The camera whose freeing explains the images best, with a pose change above the
   tolerance and a residual that clearly drops, moved; it is set to its new pose and the search repeats
   for a second moved camera.
A camera can be checked when some of its views show a board that another camera also sees, or when the
arm's poses tie it to the base on their own (a fixed camera on a gripper-held board, a wrist camera over
a board lying still: hand-eye). Otherwise it is reported as not checked, never as "ok".

Then the result is verified: every camera held at the returned rig, only the boards fitted, each camera's
median residual must stay under `max_residual_px`; and each view alone (PnP with the rig's intrinsics)
must fit under `max_pnp_px`. A camera that misses either does not match the rig at all: a capture of
another rig, or a lens whose zoom or focus changed. That is `CheckResult.mismatch`, and the CLI refuses
to write a rig from it (a bump moves a camera; it cannot explain a different focal length).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    rot_deg: float  # pose change found (rig -> now); for a wrist camera, of T_flange_cam
    trans_mm: float
    rms_before_px: float  # median residual with the rig pose (every camera held, boards fitted)
    rms_after_px: float  # with this camera's pose refitted (refined, for moved cameras)
    residual_px: float = float("nan")  # verification: median residual with the result rig (every camera held)
    pnp_px: float = float("nan")  # verification: median over views of the median residual of a PnP fit per view
    mount: str = "fixed"
    unchecked: str = ""  # why this camera could not be checked ('' when it was)

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
    def unchecked(self) -> list[str]:
        return [c.name for c in self.cameras if c.unchecked]

    @property
    def mismatch(self) -> dict[str, str]:
        """camera -> why its images do not fit the rig (another rig's capture, a changed lens); empty when all fit."""
        return {c.name: why for c in self.cameras if (why := c.mismatch(self.config))}


def _node(cam) -> np.ndarray:
    return cam.T_flange_cam if cam.mount == "wrist" else cam.T_base_cam


def _fit(refs, sessions, cams, init, free_poses, cfg: CheckConfig) -> tuple[Problem, float]:
    """Fit board nodes (+ the poses of `free_poses`) with the given cameras' intrinsics and other poses held;
    returns the problem at the solution and its robust cost."""
    sub = [r for r in refs if r.view.camera in cams]
    fixed = {("K", c) for c in cams} | {("pose", c) for c in cams if c not in free_poses}
    prob = Problem(sub, [s.board.corners() for s in sessions], cams, init, fixed, AdjustConfig())
    keep = np.ones(len(prob.uv), bool)
    res = least_squares(prob.residuals, prob.pack(), jac=prob.jacobian, loss="soft_l1", f_scale=cfg.robust_px,
                        x_scale="jac", args=(keep,), tr_solver="lsmr", tr_options=dict(atol=1e-10, btol=1e-10), max_nfev=100)
    prob.set(res.x)
    return prob, float(res.cost)


def _median_residual(prob: Problem, cam: str) -> float:
    i = prob.cameras.index(cam)
    r = np.linalg.norm(prob.predict(prob.pack()) - prob.uv, axis=1)[prob.obs_cam == i]
    return float(np.median(r)) if len(r) else float("nan")


def _why_unchecked(c: str, refs, cams) -> str:
    """'' when camera c's pose is determined with the other cameras held, else why not."""
    seen_by: dict[tuple, set] = {}
    for r in refs:
        seen_by.setdefault(r.board_node, set()).add(r.view.camera)
    shared = sum(1 for r in refs if r.view.camera == c and len(seen_by[r.board_node]) > 1)
    per_session: dict[int, int] = {}
    for r in refs:
        if r.view.camera == c and r.gripper != r.wrist and r.board_node[2] is None:  # hand-eye: one board node, the arm moving
            per_session[r.session] = per_session.get(r.session, 0) + 1
    if shared >= 2 or max(per_session.values(), default=0) >= 3:
        return ""
    return ("the board is seen by no other camera in the same frames and no arm pose ties it to the base: capture frames where "
            "another camera sees the board too, hold the board in the gripper, or (wrist camera) lay it on the table and move the arm")


def _pose(prob: Problem, c: str) -> np.ndarray:
    return se3.inv(se3.vec_to_T(prob.pose[prob.cameras.index(c)]))


def check(rig: Rig, sessions: list[Session], cfg: CheckConfig = CheckConfig()) -> CheckResult:
    import time

    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    missing = [c for s in sessions for c in s.cameras() if c not in rig.names]
    if missing:
        raise DataError(f"cameras {sorted(set(missing))} are in the capture but not in the rig ({rig.names})")
    cams = [c for c in rig.names if any(s.views_of(c) for s in sessions)]
    for s in sessions:
        for w in s.wrist:
            if w in rig.names and rig.camera(w).mount != "wrist":
                raise DataError(f"session {s.name!r}: camera {w!r} is listed as a wrist camera but the rig has it fixed")
    for c in cams:
        if rig.camera(c).mount == "wrist" and rig.camera(c).T_flange_cam is None:
            raise DataError(f"rig camera {c!r} is on the wrist but has no T_flange_cam; recalibrate it with `calibrate run`")
    # the rig knows which cameras ride on the wrist, whether or not capture.json says so
    sessions = [replace(s, wrist=tuple(dict.fromkeys([*s.wrist, *(c for c in s.cameras() if c in cams and rig.camera(c).mount == "wrist")])))
                for s in sessions]
    refs = [r for r in view_refs(sessions) if r.view.camera in cams]
    if not refs:
        raise DataError("the board was not found in any image of the capture; check the board file and that the cameras see it")
    why = {c: _why_unchecked(c, refs, cams) for c in cams}
    if all(why.values()):
        raise DataError(f"no camera can be checked from this capture ({', '.join(cams)}): {next(iter(why.values()))}")
    for r in refs:
        c = rig.camera(r.view.camera)
        r.T_cam_board = pnp(r.view, sessions[r.session].board.corners(), c.K, c.dist)
    base = {("K", c): (rig.camera(c).K, rig.camera(c).dist) for c in cams}
    base.update({("cam", c): _node(rig.camera(c)) for c in cams})
    arm_linked = any(r.gripper or r.wrist for r in refs)
    max_moved = len(cams) if arm_linked else len(cams) - 1  # without arm poses one camera must stay to hold the frame

    def init_from(base):
        init = dict(base)
        init.update(propagate(refs, {("cam", c): base[("cam", c)] for c in cams}))
        return init

    pnp_px = _pnp_residuals(refs, sessions, rig)
    if any(pnp_px.get(c, 0.0) > cfg.max_pnp_px for c in cams):
        max_moved = 0  # a lens that no longer fits its own intrinsics: no bump explains it, so search for none
    with threadpool_limits(1):
        moved: list[str] = []
        checks: dict[str, CameraCheck] = {}
        while True:
            init = init_from(base)
            held, _ = _fit(refs, sessions, cams, init, set(), cfg)
            for c in cams:
                if c not in moved:
                    checks[c] = CameraCheck(c, False, float("nan"), float("nan"), _median_residual(held, c), float("nan"), mount=rig.camera(c).mount)
            if len(moved) >= max_moved:
                break
            best = None
            for c in cams:
                if c in moved or why[c]:
                    continue
                prob, cost = _fit(refs, sessions, cams, init, {c}, cfg)
                new = _pose(prob, c)
                rot, tr = se3.pose_error(new, base[("cam", c)])
                before, after = _median_residual(held, c), _median_residual(prob, c)
                # a pose change counts only when the images demand it: with few, oblique views a camera's pose is
                # loose, and a different pose that fits no better is noise, not a bump
                evident = before > max(1.5 * after, after + cfg.min_gain_px)
                is_moved = (rot > cfg.rot_tol_deg or 1000 * tr > cfg.trans_tol_mm) and evident
                checks[c] = CameraCheck(c, False, rot, 1000 * tr, before, after, mount=rig.camera(c).mount)
                if is_moved and (best is None or cost < best[1]):
                    best = (c, cost, new)
            if best is None:
                break
            c, _, new = best
            moved.append(c)
            checks[c].moved = True
            base[("cam", c)] = new
        if moved:
            # final refinement: the moved cameras' poses and every board pose together, the unmoved cameras held
            prob, _ = _fit(refs, sessions, cams, init_from(base), set(moved), cfg)
            for c in moved:
                new = _pose(prob, c)
                base[("cam", c)] = new
                rot, tr = se3.pose_error(new, _node(rig.camera(c)))
                checks[c] = CameraCheck(c, True, rot, 1000 * tr, checks[c].rms_before_px, _median_residual(prob, c), mount=rig.camera(c).mount)
        for c in cams:
            if why[c]:
                checks[c] = CameraCheck(c, False, float("nan"), float("nan"), float("nan"), float("nan"), mount=rig.camera(c).mount, unchecked=why[c])
        residual = _verify(refs, sessions, cams, base, cfg)
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
    prob, _ = _fit(refs, sessions, cams, init, set(), cfg)
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
