"""Sight-cone masks on board: cached for fixed cameras, recomputed for the wrist camera from the arm's pose.

The geometry and its cache live in `wallwm_edge.model.sightcone.SightCone` (numpy; the `_C` kernel when
the extension is built): masks are keyed by the camera poses snapped to a 5 mm grid, so a rig of fixed
cameras computes one mask for the whole run and a wrist camera one per grid cell it visits. Here we
only decide which poses to use:
- a source that knows every camera's pose (the simulator) gives them with the frame;
- otherwise fixed cameras take the rig file's pose and a wrist camera is T_base_flange @ T_flange_cam,
  with T_base_flange from the pose the arm reports (firmware STATE in the "ee" space: x y z, rotation
  vector rx ry rz).
"""

from __future__ import annotations

import numpy as np

from wallwm_edge.calibration.rig import Rig


def pose_from_ee(ee: np.ndarray) -> np.ndarray:
    """(4, 4) T_base_flange from an EE pose (x, y, z, rx, ry, rz) with a rotation vector (Rodrigues)."""
    ee = np.asarray(ee, np.float64)
    T = np.eye(4)
    rv = ee[3:6]
    theta = float(np.linalg.norm(rv))
    if theta > 1e-12:
        k = rv / theta
        Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        T[:3, :3] = np.eye(3) + np.sin(theta) * Kx + (1 - np.cos(theta)) * Kx @ Kx
    T[:3, 3] = ee[:3]
    return T


class MaskProvider:
    """`view_mask(cam_poses=None, T_base_flange=None) -> (Vn, Vn) bool` for the student's views."""

    def __init__(self, rig: Rig, views, patch: int, near: float, far: float, image_size):
        from wallwm_edge.model.sightcone import SightCone

        self.cone = SightCone(rig, views, patch, near, far, image_size)
        self.rig = self.cone.rig
        self.wrist = [i for i, c in enumerate(self.rig.cameras) if c.mount == "wrist"]

    @property
    def computed(self) -> int:
        """Masks actually computed so far (cache misses)."""
        return self.cone.computed

    def poses(self, T_base_flange: np.ndarray | None) -> np.ndarray:
        P = np.stack([np.asarray(c.T_base_cam, np.float64) for c in self.rig.cameras])
        if T_base_flange is not None:
            for i in self.wrist:
                T_fc = self.rig.cameras[i].T_flange_cam
                if T_fc is not None:
                    P[i] = np.asarray(T_base_flange, np.float64) @ np.asarray(T_fc, np.float64)
        return P

    def view_mask(self, cam_poses: np.ndarray | None = None, T_base_flange: np.ndarray | None = None) -> np.ndarray:
        return self.cone.view_mask(cam_poses if cam_poses is not None else self.poses(T_base_flange))
