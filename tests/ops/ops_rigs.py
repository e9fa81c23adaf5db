"""Small camera rigs for the ops tests and benchmarks (look-at cameras around a table-top workspace)."""

from __future__ import annotations

import numpy as np

from wallwm_edge.calibration.rig import Camera


def look_at(name: str, eye, target, fovy_deg: float, width: int, height: int, dist=None, up=(0, 0, 1), skew: float = 0.0) -> Camera:
    """OpenCV camera at `eye` looking at `target` (base frame), vertical field of view fovy_deg."""
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [0, 1, 0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # OpenCV: y points down in the image
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], 1)
    T[:3, 3] = eye
    f = 0.5 * height / np.tan(np.radians(fovy_deg) / 2)
    K = np.array([[f, skew, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
    return Camera(name, width, height, K, np.zeros(5) if dist is None else np.asarray(dist, np.float64), T)


def table_rig(n_views: int, size: int = 32, seed: int = 0, distort: bool = False) -> list[Camera]:
    """n_views cameras on a ring around a 0.6 m table, jittered aims, fovy 45-90 degrees."""
    rng = np.random.default_rng(seed)
    cams = []
    for v in range(n_views):
        ang = 2 * np.pi * v / n_views + rng.uniform(-0.3, 0.3)
        eye = [0.9 * np.cos(ang), 0.9 * np.sin(ang), rng.uniform(0.3, 1.0)]
        target = rng.uniform(-0.2, 0.2, 3) * [1, 1, 0.5]
        dist = rng.uniform(-0.05, 0.05, 5) * [1, 0.5, 0.1, 0.1, 0.1] if distort else None
        cams.append(look_at(f"cam{v}", eye, target, rng.uniform(45, 90), size, size, dist))
    return cams


def monte_carlo_pairs(cameras, patch: int, near: float, far: float, workspace=None, samples: int = 1500, seed: int = 0) -> np.ndarray:
    """(N, N) bool pairs PROVEN to share space: sample points in each token's cone, project into the other views."""
    import cv2

    rng = np.random.default_rng(seed)
    counts = [(c.height // patch) * (c.width // patch) for c in cameras]
    offs = np.concatenate([[0], np.cumsum(counts)])
    N = offs[-1]
    found = np.zeros((N, N), bool)
    for a, ca in enumerate(cameras):
        gw = ca.width // patch
        for g in range(counts[a]):
            gy, gx = divmod(g, gw)
            uv = np.stack([gx * patch - 0.5 + rng.uniform(0, patch, samples), gy * patch - 0.5 + rng.uniform(0, patch, samples)], 1)
            xy = cv2.undistortPoints(uv[:, None], ca.K, ca.dist).reshape(-1, 2) if np.any(ca.dist) else (uv - ca.K[:2, 2]) / np.diag(ca.K)[:2]
            z = rng.uniform(near, far, samples)
            p_cam = np.concatenate([xy * z[:, None], z[:, None]], 1)
            p = p_cam @ ca.T_base_cam[:3, :3].T + ca.T_base_cam[:3, 3]
            if workspace is not None:
                p = p[np.all((p >= workspace[0]) & (p <= workspace[1]), 1)]
            if len(p) == 0:
                continue
            for b, cb in enumerate(cameras):
                if b == a:
                    continue
                pix, depth = cb.project(p)
                u, v = np.floor((pix[:, 0] + 0.5) / patch), np.floor((pix[:, 1] + 0.5) / patch)
                ok = (depth >= near) & (depth <= far) & (u >= 0) & (u < cb.width // patch) & (v >= 0) & (v < cb.height // patch)
                if np.any(cb.dist) and ok.any():
                    # The distortion polynomial folds far off-axis points back into the image: keep only
                    # points whose pixel undistorts back to their true direction (physically imaged there).
                    Tcb = np.linalg.inv(cb.T_base_cam)
                    pc = p @ Tcb[:3, :3].T + Tcb[:3, 3]
                    back = cv2.undistortPoints(pix[:, None], cb.K, cb.dist).reshape(-1, 2)
                    ok &= np.abs(back - pc[:, :2] / pc[:, 2:]).max(1) < 1e-3
                j = offs[b] + (v[ok] * (cb.width // patch) + u[ok]).astype(int)
                found[offs[a] + g, j] = True
    return found | found.T
