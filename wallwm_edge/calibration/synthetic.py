"""Synthetic calibration captures with ground truth: known rigs, board motions, projections and rendered images.

Used by the tests, the benchmark and `wallwm-edge calibrate synth` (a sample capture to try the tool on).
Base frame: robot base at the origin, z up; the workspace centre is WORK_CENTRE. Every pose is a 4x4
float64 array; `T_a_b` maps b coordinates to a coordinates.

Layouts of the fixed cameras (which cameras see the board in one frame):
- "overlap": cameras 30 degrees apart on an arc; a frame is aimed at one camera, every camera that sees it keeps its view.
- "chain":   cameras 50 degrees apart; a frame is aimed between two neighbours and only they see it.
- "none":    a frame is aimed at one camera and only it sees it (cameras linked only by the arm's poses).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wallwm_edge.calibration.board import Board
from wallwm_edge.calibration.observations import Session, View
from wallwm_edge.calibration.rig import Camera, Rig
from wallwm_edge.calibration.se3 import look_at, make_T, rotvec_to_R

WORK_CENTRE = np.array([0.55, 0.0, 0.25])


@dataclass(frozen=True)
class SceneConfig:
    n_cameras: int = 3
    layout: str = "overlap"  # overlap | chain | none
    board_mount: str = "free"  # free | gripper | static (static: a wrist camera moves over a board on the table)
    n_frames: int = 40
    width: int = 640
    height: int = 480
    distance: float = 0.85  # camera to workspace centre, metres
    board_distance: tuple[float, float] = (0.35, 0.7)  # camera to board centre, metres
    tilt_deg: tuple[float, float] = (15.0, 50.0)  # board normal away from the camera's view ray
    wrist: bool = False  # add a wrist camera "wrist" (needs board_mount="static" frames to be seen)
    table_seen_by_fixed: bool = True  # static board: fixed cameras see it too (False: only the wrist camera does)
    degenerate: bool = False  # board always far (2.5 m) and frontal: intrinsics cannot be determined
    k1: tuple[float, float] = (-0.2, 0.1)  # radial distortion of the fixed cameras, drawn uniformly (-0.3: a strong barrel)
    seed: int = 0


@dataclass
class Scene:
    rig: Rig  # ground truth (wrist camera's T_base_cam at frame 0)
    board: Board
    board_mount: str
    T_base_board: dict[str, np.ndarray]  # frame -> (4, 4)
    flange: dict[str, np.ndarray] | None  # frame -> T_base_flange (4, 4)
    T_flange_board: np.ndarray | None = None
    targets: dict[str, list[str]] = field(default_factory=dict)  # frame -> cameras allowed to see it


def make_rig(cfg: SceneConfig, rng: np.random.Generator) -> Rig:
    spacing = {"overlap": 30.0, "chain": 50.0, "none": 70.0}[cfg.layout]  # degrees between neighbours
    arc = min(spacing * (cfg.n_cameras - 1), 300.0)
    n = cfg.n_cameras
    az = np.deg2rad(np.linspace(-arc / 2, arc / 2, n) if n > 1 else [0.0]) + np.pi  # cameras face the robot's front
    cams = []
    for i, a in enumerate(az):
        pos = WORK_CENTRE + cfg.distance * np.array([np.cos(a), np.sin(a), 0.0]) + [0, 0, 0.35 + 0.1 * rng.uniform(-1, 1)]
        T = look_at(pos, WORK_CENTRE + rng.normal(0, 0.03, 3), roll_deg=rng.uniform(-8, 8))
        f = rng.uniform(480, 620)
        K = np.array([[f, 0, cfg.width / 2 + rng.uniform(-12, 12)], [0, f * rng.uniform(0.995, 1.005), cfg.height / 2 + rng.uniform(-10, 10)], [0, 0, 1]])
        dist = np.array([rng.uniform(*cfg.k1), rng.uniform(-0.05, 0.1), rng.uniform(-1e-3, 1e-3), rng.uniform(-1e-3, 1e-3), 0.0])
        cams.append(Camera(f"cam{i}", cfg.width, cfg.height, K, dist, T))
    if cfg.wrist:
        K = np.array([[420.0, 0, cfg.width / 2 + 4], [0, 421.0, cfg.height / 2 - 3], [0, 0, 1]])
        T_flange_cam = make_T(rotvec_to_R(np.deg2rad([2.0, -3.0, 90.0]) * np.array([1, 1, 1])), [0.06, -0.01, 0.05])
        cams.append(Camera("wrist", cfg.width, cfg.height, K, np.array([-0.08, 0.03, 0, 0, 0]), np.eye(4), "wrist", T_flange_cam))
    return Rig(tuple(cams))


def _board_facing(board: Board, cam_pos: np.ndarray, centre: np.ndarray, tilt_deg: float, rng) -> np.ndarray:
    """T_base_board with the board centre at `centre`, its printed side tilted `tilt_deg` away from cam_pos."""
    to_cam = cam_pos - centre
    to_cam /= np.linalg.norm(to_cam)
    axis = np.cross(to_cam, rng.normal(size=3))
    axis /= np.linalg.norm(axis)
    normal = rotvec_to_R(axis * np.deg2rad(tilt_deg)) @ to_cam  # towards the viewer
    z = -normal  # board z points into the board
    x = np.cross(rng.normal(size=3), z)
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z], axis=1)
    w, h = board.size_m
    return make_T(R, centre - R @ np.array([w / 2, h / 2, 0.0]))


def make_scene(cfg: SceneConfig, board: Board) -> Scene:
    rng = np.random.default_rng(cfg.seed)
    rig = make_rig(cfg, rng)
    fixed = [c for c in rig.cameras if c.mount == "fixed"]
    poses, targets = {}, {}
    mount = cfg.board_mount
    T_flange_board = make_T(rotvec_to_R(np.deg2rad([180.0, 0, 0])), [-board.size_m[0] / 2, board.size_m[1] / 2, 0.12]) if mount == "gripper" else None
    T_table_board = _board_facing(board, WORK_CENTRE + [0, 0, 1.0], WORK_CENTRE - [0, 0, 0.2], 0.0, rng) if mount == "static" else None
    for k in range(cfg.n_frames):
        name = f"{k:04d}"
        if mount == "static":
            poses[name] = T_table_board
            targets[name] = [c.name for c in rig.cameras if c.mount == "wrist" or cfg.table_seen_by_fixed]
            continue
        if cfg.layout == "overlap" or len(fixed) == 1:
            aim = [c.name for c in fixed]  # close to one camera (fills its image), seen by the others too
            aim = aim[k % len(fixed):] + aim[: k % len(fixed)]
            view_pos = fixed[k % len(fixed)].center
        elif cfg.layout == "chain":
            i = k % (len(fixed) - 1)
            aim = [fixed[i].name, fixed[i + 1].name]
            view_pos = (fixed[i].center + fixed[i + 1].center) / 2
        else:
            i = k % len(fixed)
            aim = [fixed[i].name]
            view_pos = fixed[i].center
        if cfg.degenerate:
            d, tilt = 2.5, rng.uniform(0, 3)
        else:
            d, tilt = rng.uniform(*cfg.board_distance), rng.uniform(*cfg.tilt_deg)
        # board centre on the ray of a random pixel of the aimed-at camera(s), so detections cover the image
        cam = next(c for c in fixed if c.name == aim[0]) if cfg.layout != "chain" else fixed[i]
        px = np.array([rng.uniform(0.15, 0.85) * cfg.width, rng.uniform(0.15, 0.85) * cfg.height])
        ray = cam.pixel_rays(px[None])[0] if not cfg.degenerate else WORK_CENTRE - view_pos
        if cfg.layout == "chain":
            ray = (ray + (WORK_CENTRE - view_pos) / np.linalg.norm(WORK_CENTRE - view_pos)) / 2
        centre = view_pos + d * ray / np.linalg.norm(ray)
        poses[name] = _board_facing(board, view_pos, centre, tilt, rng)
        targets[name] = aim
    flange = None
    if mount == "gripper":
        flange = {n: T @ np.linalg.inv(T_flange_board) for n, T in poses.items()}
    elif mount == "static":
        wrist = rig.camera("wrist")
        bc = T_table_board @ np.array([board.size_m[0] / 2, board.size_m[1] / 2, 0, 1])
        flange = {}
        for n in poses:
            d = rng.uniform(0.3, 0.5)
            direction = rotvec_to_R(rng.normal(0, 1, 3) * np.deg2rad(15)) @ np.array([0, 0, 1.0])  # ~20 deg off vertical
            T_cam = look_at(bc[:3] + d * direction / np.linalg.norm(direction), bc[:3] + rng.normal(0, 0.03, 3), roll_deg=rng.uniform(-60, 60))
            flange[n] = T_cam @ np.linalg.inv(wrist.T_flange_cam)
        rig = Rig(tuple(c.with_pose(flange["0000"] @ c.T_flange_cam) if c.mount == "wrist" else c for c in rig.cameras))
    return Scene(rig, board, mount, poses, flange, T_flange_board, targets)


FIELD_CAMERAS = {  # name: (azimuth from the robot's front, degrees; height above the workspace centre, m), as issue 15's rig
    "oblique": (50.0, 0.35), "side": (-20.0, 0.35), "top": (None, 0.85), "lonely": (-95.0, 0.30)}


def field_scenes(seed: int = 0, n_frames: int = 40, wrist_frames: int = 20, k1=(-0.30, -0.12), width: int = 640,
                 height: int = 480, board: Board | None = None) -> tuple[Scene, Scene]:
    """Issue 15's hard rig as two captures sharing one ground-truth rig: (held, table).

    held:  the board in the gripper, `n_frames` frames, each aimed at one fixed camera in turn:
           "oblique" sees only its own frames, with the board tilted 55-70 degrees from its view ray ("side" and
           "top" may see those frames too); "side" and "top" see each other's frames; "lonely" (on the robot's
           flank) sees only its own frames and no other camera does: only the arm's poses link it.
    table: the board lying on the table, `wrist_frames` arm poses, seen by the wrist camera only.
    Lenses: k1 drawn from `k1` (strong barrel), 640x480, focal 480-620 px, principal point off centre."""
    from wallwm_edge.calibration.board import Board as _Board

    board = board or _Board.load("charuco_a3")
    rng = np.random.default_rng(1000 + seed)
    cams = []
    for name, (az, up) in FIELD_CAMERAS.items():
        if az is None:
            pos = WORK_CENTRE + [-0.25, 0.05 * rng.uniform(-1, 1), up]
        else:
            a = np.deg2rad(az) + np.pi
            pos = WORK_CENTRE + 0.85 * np.array([np.cos(a), np.sin(a), 0.0]) + [0, 0, up + 0.1 * rng.uniform(-1, 1)]
        T = look_at(pos, WORK_CENTRE + rng.normal(0, 0.03, 3), roll_deg=rng.uniform(-8, 8), up=(0, 0, 1) if az is not None else (1, 0, 0))
        f = rng.uniform(480, 620)
        K = np.array([[f, 0, width / 2 + rng.uniform(-12, 12)], [0, f * rng.uniform(0.995, 1.005), height / 2 + rng.uniform(-10, 10)], [0, 0, 1]])
        dist = np.array([rng.uniform(*k1), rng.uniform(-0.05, 0.1), rng.uniform(-1e-3, 1e-3), rng.uniform(-1e-3, 1e-3), 0.0])
        cams.append(Camera(name, width, height, K, dist, T))
    seen_with = {"oblique": ["oblique", "side", "top"], "side": ["side", "top"], "top": ["top", "side"], "lonely": ["lonely"]}
    T_flange_board = make_T(rotvec_to_R(np.deg2rad([180.0, 0, 0])), [-board.size_m[0] / 2, board.size_m[1] / 2, 0.12])
    poses, targets = {}, {}
    for k in range(n_frames):
        cam = cams[k % len(cams)]
        tilt = rng.uniform(55, 70) if cam.name == "oblique" else rng.uniform(20, 55)
        px = np.array([rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height])
        centre = cam.center + rng.uniform(0.3, 0.55) * cam.pixel_rays(px[None])[0]
        poses[f"{k:04d}"] = _board_facing(board, cam.center, centre, tilt, rng)
        targets[f"{k:04d}"] = seen_with[cam.name]
    flange = {n: T @ np.linalg.inv(T_flange_board) for n, T in poses.items()}
    table = make_scene(SceneConfig(n_cameras=1, layout="none", board_mount="static", n_frames=wrist_frames, wrist=True,
                                   table_seen_by_fixed=False, width=width, height=height, seed=seed), board)
    rig = Rig(tuple(cams) + (table.rig.camera("wrist"),))
    held = Scene(rig, board, "gripper", poses, flange, T_flange_board, targets)
    return held, Scene(rig, board, "static", table.T_base_board, table.flange, None, table.targets)


def bump(scene: Scene, name: str, deg: float = 1.0, mm: float = 5.0) -> Scene:
    """The same scene (board poses, arm poses) with camera `name` knocked: turned by `deg` degrees about
    a tilted axis and shifted by `mm` millimetres, in its own frame, as a knock moves a mount."""
    axis = np.array([0.6, -0.5, 0.4]) / np.linalg.norm([0.6, -0.5, 0.4])
    shift = np.array([0.4, -0.6, 0.3]) / np.linalg.norm([0.4, -0.6, 0.3])
    T = make_T(rotvec_to_R(axis * np.deg2rad(deg)), shift * mm / 1000)
    cams = []
    for c in scene.rig.cameras:
        if c.name == name:
            c = c.with_pose(c.T_base_cam @ T) if c.mount == "fixed" else \
                Camera(c.name, c.width, c.height, c.K, c.dist, c.T_base_cam @ T, c.mount, c.T_flange_cam @ T)
        cams.append(c)
    rig = Rig(tuple(cams), scene.rig.workspace_min, scene.rig.workspace_max)
    return Scene(rig, scene.board, scene.board_mount, scene.T_base_board, scene.flange, scene.T_flange_board, scene.targets)


def camera_pose(scene: Scene, cam: Camera, frame: str) -> np.ndarray:
    """T_base_cam of `cam` at `frame` (wrist cameras move with the flange)."""
    if cam.mount == "wrist":
        return scene.flange[frame] @ cam.T_flange_cam
    return cam.T_base_cam


def may_see(scene: Scene, cam: Camera, frame: str) -> bool:
    """Whether `cam` can see the board in `frame`: a wrist camera only sees a board lying still (on a
    gripper-held board it would see the same image in every frame); a fixed camera when aimed at."""
    if cam.mount == "wrist":
        return scene.board_mount == "static" and cam.name in scene.targets[frame]
    return cam.name in scene.targets[frame]


def in_capture(scene: Scene) -> list[Camera]:
    """The cameras that appear in the capture (a camera that can never see the board has no images)."""
    return [c for c in scene.rig.cameras if any(may_see(scene, c, f) for f in scene.T_base_board)]


def project_views(scene: Scene, sigma: float = 0.5, outlier_frac: float = 0.0, outlier_px=(10.0, 50.0), min_corners: int = 8,
                  seed: int = 0) -> Session:
    """Project the board corners through every camera that may see them: noise sigma px, some outliers."""
    rng = np.random.default_rng(seed)
    X = scene.board.corners()  # (M, 3)
    views = []
    for frame, T_bb in scene.T_base_board.items():
        Xb = X @ T_bb[:3, :3].T + T_bb[:3, 3]
        normal = -T_bb[:3, 2]
        for cam in scene.rig.cameras:
            if not may_see(scene, cam, frame):
                continue
            T = camera_pose(scene, cam, frame)
            uv, z = cam.with_pose(T).project(Xb)
            facing = np.dot(normal, T[:3, 3] - Xb.mean(0)) / np.linalg.norm(T[:3, 3] - Xb.mean(0))
            ok = (z > 0.05) & (uv[:, 0] > 4) & (uv[:, 1] > 4) & (uv[:, 0] < cam.width - 5) & (uv[:, 1] < cam.height - 5)
            if facing < np.cos(np.deg2rad(75)) or ok.sum() < min_corners:
                continue
            ids = np.flatnonzero(ok)
            pts = uv[ids] + rng.normal(0, sigma, (len(ids), 2))
            n_out = rng.binomial(len(ids), outlier_frac) if outlier_frac > 0 else 0
            if n_out:
                k = rng.choice(len(ids), n_out, replace=False)
                ang = rng.uniform(0, 2 * np.pi, n_out)
                pts[k] += rng.uniform(*outlier_px, n_out)[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
            views.append(View(cam.name, frame, ids.astype(np.int64), pts, f"synthetic:{cam.name}/{frame}"))
    cams = in_capture(scene)
    sizes = {c.name: (c.width, c.height) for c in cams}
    wrist = tuple(c.name for c in cams if c.mount == "wrist")
    return Session("synthetic", scene.board, scene.board_mount, sizes, views, scene.flange, wrist)


def render_view(board: Board, cam: Camera, T_base_cam: np.ndarray, T_base_board: np.ndarray, noise: float = 2.0,
                blur: float = 0.5, rng: np.random.Generator | None = None, _cache: dict = {}) -> np.ndarray:
    """The board sheet as `cam` sees it (distortion included): uint8 (H, W), grey background.

    Each pixel is back-projected (undistorted with OpenCV, cached per camera), intersected with the board
    plane and looked up in the drawn sheet; 2x2 supersampling keeps the edges honest.
    """
    import cv2

    rng = rng or np.random.default_rng(0)
    ss, px_per_square = 2, 48
    key = (cam.width, cam.height, tuple(np.ravel(cam.K)), tuple(cam.dist))
    if key not in _cache:
        u, v = np.meshgrid((np.arange(cam.width * ss) + 0.5) / ss - 0.5, (np.arange(cam.height * ss) + 0.5) / ss - 0.5)
        pts = np.stack([u.ravel(), v.ravel()], 1).astype(np.float64)[:, None]
        und = cv2.undistortPoints(pts, cam.K, cam.dist, criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-10))
        if len(_cache) > 8:
            _cache.clear()
        _cache[key] = und.reshape(-1, 2).T.astype(np.float32).copy()  # (2, N) normalised rays (x, y, 1)
    if ("sheet", board) not in _cache:
        _cache[("sheet", board)] = cv2.GaussianBlur(board.image(px_per_square, margin_px=px_per_square), (0, 0), 0.7)
    rays, sheet = _cache[key], _cache[("sheet", board)]
    T = np.linalg.inv(T_base_board) @ T_base_cam  # T_board_cam
    R, o = T[:3, :3].astype(np.float32), T[:3, 3]
    x, y = rays
    d = [R[k, 0] * x + R[k, 1] * y + R[k, 2] for k in range(3)]  # rays in the board frame (elementwise: no BLAS threads)
    s = np.float32(-o[2]) / d[2]
    scale = np.float32(px_per_square / board.square_m)
    mx = (np.float32(o[0]) + s * d[0]) * scale + np.float32(px_per_square - 0.5)
    my = (np.float32(o[1]) + s * d[1]) * scale + np.float32(px_per_square - 0.5)
    mx[s <= 0] = -1e4  # behind the camera
    shape = (cam.height * ss, cam.width * ss)
    hi = cv2.remap(sheet, mx.reshape(shape), my.reshape(shape), cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=128)
    img = cv2.resize(hi, (cam.width, cam.height), interpolation=cv2.INTER_AREA).astype(np.float32)
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    img = img * 0.8 + 25 + rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_capture(scene: Scene, out_dir, noise: float = 2.0, seed: int = 0) -> dict:
    """Render every (camera, frame) that may see the board into OUT/<camera>/<frame>.png plus arm_poses.json and
    capture.json: a capture folder `wallwm-edge calibrate run` reads. Returns {camera: n_images}."""
    import json
    from pathlib import Path

    import cv2

    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    counts = {}
    cams = in_capture(scene)
    for cam in cams:
        (out / cam.name).mkdir(parents=True, exist_ok=True)
        counts[cam.name] = 0
        for frame, T_bb in scene.T_base_board.items():
            if not may_see(scene, cam, frame):
                continue
            img = render_view(scene.board, cam, camera_pose(scene, cam, frame), T_bb, noise=noise, rng=rng)
            cv2.imwrite(str(out / cam.name / f"{frame}.png"), img)
            counts[cam.name] += 1
    meta = {"board": scene.board.to_json(), "board_mount": scene.board_mount, "wrist": [c.name for c in cams if c.mount == "wrist"]}
    (out / "capture.json").write_text(json.dumps(meta, indent=2) + "\n")
    if scene.flange is not None:
        (out / "arm_poses.json").write_text(json.dumps({k: v.tolist() for k, v in scene.flange.items()}) + "\n")
    return counts
