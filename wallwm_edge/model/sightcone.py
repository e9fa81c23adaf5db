"""Sight-cone view-token masks from the rig, for the model (numpy in, numpy out).

The geometry lives in `wallwm_edge.ops.sightcone` (numpy reference; C++ kernel when `_C` is built):
`sightcone_mask(cameras, patch, near, far, workspace) -> (Vn, Vn) bool`, view-major token order, same-view
pairs True. This wrapper adds what the model needs around it:
- the rig's cameras picked in the checkpoint's view order (a missing camera is a ConfigError naming it);
- per-frame poses (`cam_poses (V, 4, 4)` of the episode or the robot) replace the rig's poses, so the
  wrist camera follows the arm and jittered static cameras are honoured;
- poses snapped to a 5 mm / ~5 mrad grid before the geometry (rotation re-orthonormalised), and a cache
  keyed by the snapped pose: static rigs compute one mask, a wrist camera one per grid cell it visits.
  The mask is a pure function of the snapped pose, so training is reproducible whatever order frames
  come in (exact resume), and training and inference see the same masks. Snapping moves a 16-px
  patch's cone by a few mm, small next to the cone's width (~10 cm at 0.5 m for these cameras).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from wallwm_edge.calibration.rig import Rig
from wallwm_edge.errors import ConfigError, DataError

POSE_ROUND_T = 5e-3  # metres
POSE_ROUND_R = 5e-3  # rotation-matrix entries (~radians)


def snap_poses(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, 4, 4) -> (integer grid key (V, 12), snapped rigid poses (V, 4, 4))."""
    qr = np.round(poses[:, :3, :3] / POSE_ROUND_R)
    qt = np.round(poses[:, :3, 3] / POSE_ROUND_T)
    U, _, Vt = np.linalg.svd(qr * POSE_ROUND_R)
    R = U @ Vt  # nearest rotation to the rounded matrix (det +1 for any pose near a rotation)
    out = np.tile(np.eye(4), (len(poses), 1, 1))
    out[:, :3, :3] = R
    out[:, :3, 3] = qt * POSE_ROUND_T
    return np.concatenate([qr.reshape(len(poses), -1), qt], axis=1).astype(np.int64), out


class SightCone:
    def __init__(self, rig: Rig, views, patch: int, near: float, far: float, image_size=None, cache_size: int = 16384):
        try:
            self.rig = rig.select(list(views))
        except DataError:
            missing = [v for v in views if v not in rig.names]
            raise ConfigError(f"rig is missing camera(s) {missing}: the model expects views {list(views)}, the rig has {rig.names}") from None
        self.views = list(views)
        for c in self.rig.cameras:
            if image_size is not None and (c.height, c.width) != tuple(image_size):
                raise ConfigError(f"rig camera {c.name!r} is {c.height}x{c.width}, the model expects images of {image_size[0]}x{image_size[1]}")
        self.patch, self.near, self.far = int(patch), float(near), float(far)
        ws = None if self.rig.workspace_min is None else (self.rig.workspace_min, self.rig.workspace_max)
        self.workspace = ws
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()  # bit-packed masks (~1.5 KB each at 108 tokens)
        self.cache_size = cache_size
        self.computed = 0  # masks actually computed (for tests and logs)

    def view_mask(self, cam_poses: np.ndarray | None = None) -> np.ndarray:
        """(Vn, Vn) bool for the rig at these camera-to-base poses (V, 4, 4); None = the rig's own poses."""
        from wallwm_edge.ops.sightcone import sightcone_mask

        if cam_poses is None:
            poses = np.stack([np.asarray(c.T_base_cam, np.float64) for c in self.rig.cameras])
        else:
            poses = np.asarray(cam_poses, np.float64)
            if poses.shape != (len(self.views), 4, 4):
                raise ConfigError(f"cam_poses has shape {poses.shape}, the model expects ({len(self.views)}, 4, 4) for views {self.views}")
        grid, snapped = snap_poses(poses)
        key = grid.tobytes()
        n = len(self.views) * (self.rig.cameras[0].height // self.patch) * (self.rig.cameras[0].width // self.patch)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return np.unpackbits(hit, count=n * n).reshape(n, n).astype(bool)
        cams = [c.with_pose(T) for c, T in zip(self.rig.cameras, snapped)]
        mask = sightcone_mask(cams, self.patch, self.near, self.far, self.workspace)
        self.computed += 1
        self._cache[key] = np.packbits(mask)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return mask
