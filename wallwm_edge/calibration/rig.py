"""The rig file: every camera's intrinsics, distortion and camera-to-base pose.

Written by `wallwm-edge calibrate` (or by the simulator from the MuJoCo model); read by the dataset, the
model (sight-cone masks) and the on-board runtime. numpy only, so the runtime can read it without torch.

Conventions (one, everywhere):
- Camera frame is OpenCV's: x right, y down, z forward (optical axis). Pixel (u, v) = (column, row), the
  centre of the top-left pixel is (0, 0).
- `T_base_cam` (4x4) maps camera coordinates to robot-base coordinates: p_base = T_base_cam @ p_cam.
- A wrist camera (`mount="wrist"`) also stores `T_flange_cam`, its pose on the flange; its per-frame pose
  is T_base_flange(t) @ T_flange_cam (the episode stores it per frame as well).
- Distortion is OpenCV's (k1, k2, p1, p2, k3).

File format (JSON): {"format": "wallwm-rig/1", "cameras": [{"name", "width", "height", "K", "dist",
"T_base_cam", "mount", "T_flange_cam"?}], "workspace": {"min": [x,y,z], "max": [x,y,z]}?}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wallwm_edge.errors import DataError, read_json_object
from wallwm_edge.validate import array, describe, integer, matrix, number, obj, optional, require, string

FORMAT = "wallwm-rig/1"

# Types, sizes and finiteness of a rig's JSON, checked before any number is used (NaN distortion, an
# infinite width or a camera entry that is not an object each give one line naming the field).
CAMERA_SPEC = obj({
    "name": string(nonempty=True, max_len=200),
    "width": integer(1, 1 << 16),
    "height": integer(1, 1 << 16),
    "K": matrix(3, 3),
    "dist": array(number(), length=5),
    "T_base_cam": matrix(4, 4),
    "mount": string(choices=("fixed", "wrist")),
    "T_flange_cam": optional(matrix(4, 4)),
}, required=("name", "width", "height", "K", "T_base_cam"))
WORKSPACE_SPEC = obj({"min": array(number(), length=3), "max": array(number(), length=3)}, required=("min", "max"))


def check_pose(T: np.ndarray, where: str, tol: float = 1e-4) -> np.ndarray:
    """Return T as float64 (4, 4) or raise DataError naming `where` if it is not a rigid transform."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise DataError(f"{where}: pose must be 4x4, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise DataError(f"{where}: pose has NaN or inf")
    R = T[:3, :3]
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > tol or np.linalg.det(R) < 0:
        raise DataError(f"{where}: rotation is not orthonormal (|R^T R - I| = {err:.2e}, det = {np.linalg.det(R):.3f})")
    if np.abs(T[3] - [0, 0, 0, 1]).max() > 1e-9:
        raise DataError(f"{where}: last row of the pose must be [0, 0, 0, 1], got {T[3].tolist()}")
    return T


@dataclass(frozen=True)
class Camera:
    name: str
    width: int
    height: int
    K: np.ndarray  # (3, 3) float64
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))  # (5,) k1 k2 p1 p2 k3
    T_base_cam: np.ndarray = field(default_factory=lambda: np.eye(4))  # (4, 4) camera -> base
    mount: str = "fixed"  # "fixed" or "wrist"
    T_flange_cam: np.ndarray | None = None  # (4, 4), wrist cameras only

    def validate(self, where: str = "") -> "Camera":
        w = f"{where}camera {self.name!r}"
        K = np.asarray(self.K, dtype=np.float64)
        if K.shape != (3, 3):
            raise DataError(f"{w}: field K must be 3x3, got shape {K.shape}")
        if not np.all(np.isfinite(K)):
            raise DataError(f"{w}: field K has NaN or inf")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise DataError(f"{w}: field K has non-positive focal length (fx={K[0, 0]}, fy={K[1, 1]})")
        if self.width <= 0 or self.height <= 0:
            raise DataError(f"{w}: image size must be positive, got {self.width}x{self.height}")
        if np.asarray(self.dist).shape != (5,):
            raise DataError(f"{w}: field dist must have 5 coefficients (k1 k2 p1 p2 k3), got {np.asarray(self.dist).shape}")
        if self.mount not in ("fixed", "wrist"):
            raise DataError(f"{w}: field mount must be 'fixed' or 'wrist', got {self.mount!r}")
        check_pose(self.T_base_cam, f"{w} field T_base_cam")
        if self.mount == "wrist" and self.T_flange_cam is not None:
            check_pose(self.T_flange_cam, f"{w} field T_flange_cam")
        return self

    @property
    def center(self) -> np.ndarray:
        """Camera centre in the base frame, (3,)."""
        return np.asarray(self.T_base_cam)[:3, 3]

    def with_pose(self, T_base_cam: np.ndarray) -> "Camera":
        return Camera(self.name, self.width, self.height, self.K, self.dist, np.asarray(T_base_cam, np.float64), self.mount, self.T_flange_cam)

    def project(self, points_base: np.ndarray, distort: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Project (N, 3) base-frame points; returns (N, 2) pixels and (N,) depth (z in camera frame)."""
        T_cam_base = np.linalg.inv(self.T_base_cam)
        p = points_base @ T_cam_base[:3, :3].T + T_cam_base[:3, 3]  # (N, 3) camera frame
        z = p[:, 2]
        x, y = p[:, 0] / z, p[:, 1] / z
        if distort and np.any(self.dist):
            k1, k2, p1, p2, k3 = self.dist
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
            x, y = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        K = self.K
        uv = np.stack([K[0, 0] * x + K[0, 1] * y + K[0, 2], K[1, 1] * y + K[1, 2]], axis=-1)
        return uv, z

    def pixel_rays(self, uv: np.ndarray) -> np.ndarray:
        """Unit ray directions in the base frame for (N, 2) undistorted pixels, (N, 3)."""
        Kinv = np.linalg.inv(self.K)
        d = np.concatenate([uv, np.ones((len(uv), 1))], axis=1) @ Kinv.T  # (N, 3) camera frame, z = 1
        d = d @ np.asarray(self.T_base_cam)[:3, :3].T
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def to_json(self) -> dict:
        d = {
            "name": self.name,
            "width": int(self.width),
            "height": int(self.height),
            "K": np.asarray(self.K, np.float64).tolist(),
            "dist": np.asarray(self.dist, np.float64).tolist(),
            "T_base_cam": np.asarray(self.T_base_cam, np.float64).tolist(),
            "mount": self.mount,
        }
        if self.T_flange_cam is not None:
            d["T_flange_cam"] = np.asarray(self.T_flange_cam, np.float64).tolist()
        return d

    @staticmethod
    def from_json(d: dict, where: str = "", at: str = "") -> "Camera":
        """A validated camera from its JSON; `at` is its field path in the file (e.g. "cameras[1]")."""
        if not isinstance(d, dict):
            raise DataError(f"{where}field '{at or 'camera'}' must be a camera object, got {describe(d)}")
        for key in ("name", "width", "height", "K", "T_base_cam"):
            if key not in d:
                raise DataError(f"{where}camera entry {at + ' ' if at else ''}is missing field {key!r}")
        require(d, CAMERA_SPEC, where, DataError, at)
        try:
            cam = Camera(
                name=str(d["name"]),
                width=int(d["width"]),
                height=int(d["height"]),
                K=np.asarray(d["K"], np.float64),
                dist=np.asarray(d.get("dist", [0, 0, 0, 0, 0]), np.float64),
                T_base_cam=np.asarray(d["T_base_cam"], np.float64),
                mount=d.get("mount", "fixed"),
                T_flange_cam=None if d.get("T_flange_cam") is None else np.asarray(d["T_flange_cam"], np.float64),
            )
        except (TypeError, ValueError) as e:
            raise DataError(f"{where}camera {d.get('name')!r}: malformed field ({e})") from None
        return cam.validate(where)


@dataclass(frozen=True)
class Rig:
    cameras: tuple[Camera, ...]
    workspace_min: np.ndarray | None = None  # (3,) base frame, metres
    workspace_max: np.ndarray | None = None

    def __post_init__(self):
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise DataError(f"rig: camera names must be unique, got {names}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def __len__(self) -> int:
        return len(self.cameras)

    def camera(self, name: str) -> Camera:
        for c in self.cameras:
            if c.name == name:
                return c
        raise DataError(f"rig has no camera {name!r}; it has {self.names}")

    def select(self, names: list[str]) -> "Rig":
        """The sub-rig with exactly these cameras in this order (error names the missing one)."""
        return Rig(tuple(self.camera(n) for n in names), self.workspace_min, self.workspace_max)

    def with_poses(self, T_base_cam: np.ndarray) -> "Rig":
        """Same rig with per-camera poses replaced, T_base_cam (V, 4, 4) (e.g. a wrist camera's pose at one frame)."""
        return Rig(tuple(c.with_pose(T) for c, T in zip(self.cameras, T_base_cam)), self.workspace_min, self.workspace_max)

    def validate(self, where: str = "") -> "Rig":
        for c in self.cameras:
            c.validate(where)
        return self

    def to_json(self) -> dict:
        d = {"format": FORMAT, "cameras": [c.to_json() for c in self.cameras]}
        if self.workspace_min is not None:
            d["workspace"] = {"min": np.asarray(self.workspace_min).tolist(), "max": np.asarray(self.workspace_max).tolist()}
        return d

    @staticmethod
    def from_json(d: dict, where: str = "") -> "Rig":
        if not isinstance(d, dict):
            raise DataError(f"{where}a rig must be a {FORMAT} object, got {describe(d)}")
        if d.get("format") != FORMAT:
            raise DataError(f"{where}field 'format' must be {FORMAT!r}, got {describe(d.get('format'))}")
        cams = d.get("cameras")
        if not isinstance(cams, list) or not cams:
            raise DataError(f"{where}field 'cameras' must be a non-empty list, got {describe(cams)}")
        ws = d.get("workspace")
        wmin = wmax = None
        if ws is not None:
            require(ws, WORKSPACE_SPEC, where, DataError, "workspace")
            wmin, wmax = np.asarray(ws["min"], np.float64), np.asarray(ws["max"], np.float64)
            if np.any(wmin >= wmax):
                raise DataError(f"{where}field 'workspace' must have min < max on every axis, got min {wmin.tolist()} max {wmax.tolist()}")
        cameras = tuple(Camera.from_json(c, where, f"cameras[{i}]") for i, c in enumerate(cams))
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise DataError(f"{where}field 'cameras': camera names must be unique, got {names}")
        return Rig(cameras, wmin, wmax)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, path)  # atomic: a reader never sees half a rig
        return path

    @staticmethod
    def load(path: str | os.PathLike) -> "Rig":
        d = read_json_object(path, DataError, "rig file not found")
        return Rig.from_json(d, where=f"{path}: ")
