"""Calibrate a rig from detected board views: checks, initial values, joint adjustment, rig, quality.

    cal = calibrate(sessions)            # sessions from detect.load_session(...) or synthetic.project_views(...)
    cal.rig.save("rig.json"); cal.ok     # False when some camera's result is not trustworthy
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from wallwm_edge.calibration import se3
from wallwm_edge.calibration.adjust import AdjustConfig, AdjustResult, Problem, adjust
from wallwm_edge.calibration.initial import (check_counts, flag_poor_poses, intrinsics, pnp, propagate, reseed_hand_eye, seed, view_refs,
                                              view_rms)
from wallwm_edge.calibration.observations import Session
from wallwm_edge.calibration.quality import CameraQuality, QualityConfig, assess, perspective
from wallwm_edge.calibration.rig import Camera, Rig
from wallwm_edge.errors import DataError


@dataclass(frozen=True)
class CalibrateConfig:
    reference: str | None = None  # camera that defines the frame when no arm pose ties the rig to the base
    min_views: int = 6
    adjust: AdjustConfig = field(default_factory=AdjustConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)


@dataclass
class Calibration:
    rig: Rig
    absolute: bool  # True: poses are in the robot base frame; False: in the reference camera's frame
    reference: str | None
    sizes: dict
    problem: Problem
    result: AdjustResult
    cameras: list[CameraQuality]
    boards: list[np.ndarray]  # per session, board corners (M, 3)

    @property
    def ok(self) -> bool:
        return all(c.status != "insufficient" for c in self.cameras)

    @property
    def verdict(self) -> str:
        if all(c.status == "good" for c in self.cameras):
            return "GOOD: every camera is well determined"
        bad = [c.name for c in self.cameras if c.status == "insufficient"]
        if bad:
            return f"INSUFFICIENT: {', '.join(bad)} not determined by this capture; recapture as advised (no rig should be trusted)"
        return "USABLE, with recapture advice for " + ", ".join(c.name for c in self.cameras if c.status != "good")


def _sizes(sessions: list[Session]) -> dict:
    sizes: dict[str, tuple[int, int]] = {}
    for s in sessions:
        for cam, wh in s.sizes.items():
            if cam in sizes and tuple(sizes[cam]) != tuple(wh):
                raise DataError(f"camera {cam!r}: image size {wh[0]}x{wh[1]} in session {s.name!r} differs from {sizes[cam][0]}x{sizes[cam][1]} elsewhere")
            sizes[cam] = tuple(wh)
    return sizes


def calibrate(sessions: list[Session], cfg: CalibrateConfig = CalibrateConfig(), prior: Rig | None = None,
              fixed: set = frozenset(), progress=None) -> Calibration:
    """Joint calibration. `prior` gives initial (and, for blocks named in `fixed` as ("K", cam) or
    ("pose", cam), held) intrinsics and poses; `calibrate check` uses that to refine one camera only."""
    sizes = _sizes(sessions)
    cameras = list(sizes)
    wrist = {c for s in sessions for c in s.wrist}
    need_K = [c for c in cameras if ("K", c) not in fixed]
    check_counts(sessions, cameras, cfg.min_views if need_K else 1)
    check_counts(sessions, need_K, cfg.min_views)
    init: dict = {}
    refs = view_refs(sessions)
    pnp_pose: dict = {}
    for cam in cameras:
        if ("K", cam) in fixed or (prior is not None and need_K == []):
            pc = prior.camera(cam)
            init[("K", cam)] = (pc.K, pc.dist)
        else:
            K, dist, poses = intrinsics(sessions, cam, sizes[cam])
            init[("K", cam)] = (K, dist)
            pnp_pose.update(poses)
        if progress:
            progress(1)
    for r in refs:
        K, dist = init[("K", r.view.camera)]
        r.T_cam_board = pnp_pose.get(id(r.view))
        if r.T_cam_board is None:
            r.T_cam_board = pnp(r.view, sessions[r.session].board.corners(), K, dist)
    flag_poor_poses(refs, [view_rms(r, sessions[r.session].board.corners(), *init[("K", r.view.camera)]) for r in refs])
    reference = cfg.reference or next((c for c in cameras if c not in wrist), cameras[0])
    if reference not in cameras:
        raise DataError(f"reference camera {reference!r} is not in the capture; cameras: {cameras}")
    if prior is not None and any(k == "pose" for k, _ in fixed):
        known = {("cam", c.name): (c.T_flange_cam if c.mount == "wrist" else c.T_base_cam) for c in prior.cameras if c.name in cameras}
        known = {k: v for k, v in known.items() if ("pose", k[1]) in fixed}
        absolute = True
    else:
        known, absolute = seed(sessions, refs, reference)
    for c in wrist:
        if not absolute:
            raise DataError(f"camera {c!r} is on the wrist: it needs a session with arm poses and a static board (board_mount 'static')")
    known = propagate(refs, known, reseed_hand_eye(sessions, refs) if absolute else None)
    init.update({k: v for k, v in known.items()})
    hold = set(fixed) | (set() if absolute else {("pose", reference)})
    adjust_cfg = cfg.adjust
    boards = [s.board.corners() for s in sessions]
    persp = {c: max(perspective(boards[r.session][r.view.ids], r.view.uv) for r in refs if r.view.camera == c) for c in need_K}
    if persp and min(persp.values()) < cfg.quality.min_perspective:
        # a camera only ever saw the board frontal: its focal length is unobservable and the adjustment would
        # wander along that valley for hundreds of iterations; a short run is enough to report it
        adjust_cfg = replace(adjust_cfg, max_nfev=min(adjust_cfg.max_nfev, 15))
    problem = Problem(refs, boards, cameras, init, hold, adjust_cfg)
    result = adjust(problem, adjust_cfg, progress=progress)
    rig = _rig(problem, sessions, sizes, wrist, prior)
    cal = Calibration(rig, absolute, None if absolute else reference, sizes, problem, result, [], boards)
    cal.cameras = assess(cal, cfg.quality)
    return cal


def _rig(problem: Problem, sessions: list[Session], sizes: dict, wrist: set, prior: Rig | None) -> Rig:
    cams = []
    for i, name in enumerate(problem.cameras):
        fx, fy, cx, cy, *dist = problem.intr[i]
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        T = se3.inv(se3.vec_to_T(problem.pose[i]))
        if name in wrist:
            # the rig stores the wrist camera at the first arm pose of the capture; its per-frame pose is
            # T_base_flange(t) @ T_flange_cam
            F = next(s.flange[v.frame] for s in sessions for v in s.views_of(name))
            cams.append(Camera(name, *sizes[name], K, np.array(dist), F @ T, "wrist", T))
        else:
            cams.append(Camera(name, *sizes[name], K, np.array(dist), T))
    if prior is not None:  # keep the prior's other cameras and workspace
        done = {c.name for c in cams}
        cams = [next(c for c in cams if c.name == p.name) if p.name in done else p for p in prior.cameras] + \
               [c for c in cams if c.name not in set(prior.names)]
        return Rig(tuple(cams), prior.workspace_min, prior.workspace_max)
    return Rig(tuple(cams))
