"""Rigid-transform helpers (numpy + scipy.spatial.transform): 4x4 poses, rotation vectors, averaging, errors."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def make_T(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def rotvec_to_R(r: np.ndarray) -> np.ndarray:
    """(3,) -> (3, 3) or (N, 3) -> (N, 3, 3)."""
    return Rotation.from_rotvec(r).as_matrix()


def R_to_rotvec(R: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(R).as_rotvec()


def T_to_vec(T: np.ndarray) -> np.ndarray:
    """(4, 4) -> (6,) [rotvec, t]."""
    return np.concatenate([R_to_rotvec(T[:3, :3]), T[:3, 3]])


def vec_to_T(v: np.ndarray) -> np.ndarray:
    """(..., 6) [rotvec, t] -> (..., 4, 4)."""
    v = np.asarray(v, np.float64)
    flat = v.reshape(-1, 6)
    T = np.tile(np.eye(4), (len(flat), 1, 1))
    T[:, :3, :3] = rotvec_to_R(flat[:, :3])
    T[:, :3, 3] = flat[:, 3:]
    return T.reshape(v.shape[:-1] + (4, 4))


def inv(T: np.ndarray) -> np.ndarray:
    """Inverse of (..., 4, 4) rigid transforms."""
    R = np.swapaxes(T[..., :3, :3], -1, -2)
    out = np.zeros_like(T)
    out[..., :3, :3] = R
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", R, T[..., :3, 3])
    out[..., 3, 3] = 1
    return out


def average(Ts: list[np.ndarray]) -> np.ndarray:
    """Robust-ish mean pose: chordal L2 rotation mean (projected to SO(3)) and median translation."""
    Ts = np.asarray(Ts)
    M = Ts[:, :3, :3].sum(0)
    U, _, Vt = np.linalg.svd(M)
    R = U @ np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    return make_T(R, np.median(Ts[:, :3, 3], axis=0))


def rotation_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Angle of R_a^T R_b in degrees."""
    c = (np.trace(R_a.T @ R_b) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


def pose_error(T_est: np.ndarray, T_true: np.ndarray) -> tuple[float, float]:
    """(rotation error deg, translation error m) between two poses."""
    return rotation_deg(T_est[:3, :3], T_true[:3, :3]), float(np.linalg.norm(T_est[:3, 3] - T_true[:3, 3]))


def look_at(position, target, roll_deg: float = 0.0, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """T_base_cam of an OpenCV camera (z forward, y down) at `position` looking at `target`."""
    z = np.asarray(target, float) - np.asarray(position, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [1.0, 0, 0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1) @ rotvec_to_R(np.array([0, 0, np.deg2rad(roll_deg)]))
    return make_T(R, position)


def hand_eye(T_base_flange: list[np.ndarray], T_cam_target: list[np.ndarray], min_angle_deg: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Solve T_base_flange[i] @ X @ T_cam_target[i] = C (X = T_flange_cam, C = T_base_target constant).

    Park & Martin's closed form for the rotation of AX = XB over all pairs of stations, linear least
    squares for the translation. cv2.calibrateHandEye is not in the OpenCV 5.0 Python bindings installed
    here (only its CALIB_HAND_EYE_* flags are), so the 40-line textbook solution lives here; it is only an
    initial value, the bundle adjustment refines it. Returns (X, C).
    """
    n = len(T_base_flange)
    Ms, A_rows, b_rows = np.zeros((3, 3)), [], []
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for i, j in pairs:
        A = inv(T_base_flange[i]) @ T_base_flange[j]
        B = T_cam_target[i] @ inv(T_cam_target[j])
        a, b = R_to_rotvec(A[:3, :3]), R_to_rotvec(B[:3, :3])
        if np.degrees(np.linalg.norm(a)) < min_angle_deg or np.degrees(np.linalg.norm(b)) < min_angle_deg:
            continue
        Ms += np.outer(b, a)
    if not np.any(Ms):
        raise ValueError("the stations do not rotate relative to each other")
    w, V = np.linalg.eigh(Ms.T @ Ms)
    if w.min() <= 1e-12 * w.max():
        raise ValueError("the stations rotate about one axis only")
    R = V @ np.diag(w**-0.5) @ V.T @ Ms.T
    for i, j in pairs:
        A = inv(T_base_flange[i]) @ T_base_flange[j]
        B = T_cam_target[i] @ inv(T_cam_target[j])
        A_rows.append(A[:3, :3] - np.eye(3))
        b_rows.append(R @ B[:3, 3] - A[:3, 3])
    t = np.linalg.lstsq(np.concatenate(A_rows), np.concatenate(b_rows), rcond=None)[0]
    X = make_T(R, t)
    C = average([T_base_flange[i] @ X @ T_cam_target[i] for i in range(n)])
    return X, C
