"""Sight-cone token masks: which image patches of different cameras can see the same point in space.

A token is one `patch x patch` image patch of one camera. Its *sight cone* is the patch's back-projected
frustum between the `near` and `far` planes (depth = z in the camera frame), clipped to the workspace box
when one is given. Two tokens of different views may attend to each other iff their cones intersect;
tokens of the same view always may. Tokens are ordered view-major, then row-major over the patch grid:
token index = offset(view) + gh * (W / patch) + gw.

The test is a separating-axis test (SAT) between the two clipped cones, which are convex polyhedra. A
pair is dropped only when some axis *proves* the cones disjoint, so the test is CONSERVATIVE by
construction: it never drops a pair that truly shares space (tests check this against a dense Monte-Carlo
reference). Tested axes: the face normals of both cones (4 sides, the near/far normal, the box faces) and
every cross product of the two unclipped frusta's edge directions (4 lateral rays + 2 near-plane edges
each). Without a workspace box that is exactly the complete SAT axis set, so the test is exact. With a box,
the clipped cones also have edges born from the box cut; their cross products are not tested, so a few
pairs that only such an axis would separate are kept (a slightly denser, still correct mask).

Distortion: with non-zero OpenCV distortion the patch border is sampled (8 points per side), undistorted
(fixed-point iteration, like cv2.undistortPoints) and enclosed in an axis-aligned rectangle in normalized
image coordinates, widened by 2 % of its size, so the cone contains every ray of the distorted patch.
Without distortion the four corner rays are exact (K with skew gives a parallelogram).

This file is the numpy float64 REFERENCE; `wallwm_edge._C.sightcone_mask` (csrc/sightcone.cpp) implements
the same semantics in C++ and `sightcone_mask` below dispatches to it when the extension is built.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np

from wallwm_edge.calibration.rig import Camera

UNDISTORT_ITERS = 20
BORDER_SAMPLES = 8
DISTORT_MARGIN = 0.02
EPS = 1e-9  # metres: a gap must exceed this to count as a separation (keeps the test conservative)


# ---- per-token cone geometry ----------------------------------------------------------------------------


def _check_args(cameras: Sequence[Camera], patch: int, near: float, far: float, workspace) -> tuple | None:
    if len(cameras) == 0:
        raise ValueError("cameras: need at least one camera")
    if int(patch) != patch or patch <= 0:
        raise ValueError(f"patch: must be a positive integer, got {patch!r}")
    if not (np.isfinite(near) and np.isfinite(far) and 0 < near < far):
        raise ValueError(f"near/far: need 0 < near < far, got near={near!r}, far={far!r}")
    for c in cameras:
        if c.width % patch or c.height % patch:
            raise ValueError(f"patch: {patch} does not divide camera {c.name!r} image size {c.width}x{c.height}")
        K = np.asarray(c.K, np.float64)
        if K.shape != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0 or np.any(K[2] != [0, 0, 1]) or K[1, 0] != 0:
            raise ValueError(f"cameras: camera {c.name!r} has an invalid K (need upper-triangular, fx, fy > 0)")
    if workspace is None:
        return None
    lo, hi = np.asarray(workspace[0], np.float64), np.asarray(workspace[1], np.float64)
    if lo.shape != (3,) or hi.shape != (3,) or np.any(~(lo < hi)):
        raise ValueError(f"workspace: need (min[3], max[3]) with min < max, got {workspace!r}")
    return lo, hi


def _undistort(cam: Camera, uv: np.ndarray) -> np.ndarray:
    """(M, 2) distorted pixels -> (M, 2) normalized undistorted image coordinates (x/z, y/z)."""
    K = np.asarray(cam.K, np.float64)
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    yd = (uv[:, 1] - cy) / fy
    xd = (uv[:, 0] - cx - s * yd) / fx
    k1, k2, p1, p2, k3 = np.asarray(cam.dist, np.float64)
    x, y = xd.copy(), yd.copy()
    for _ in range(UNDISTORT_ITERS):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x, y = (xd - dx) / radial, (yd - dy) / radial
    return np.stack([x, y], axis=-1)


def patch_corners(cam: Camera, patch: int) -> np.ndarray:
    """(G, 4, 2) normalized image coordinates of each patch's cone corners, G = (H/p) * (W/p), row-major.

    Corner order: (u0, v0), (u1, v0), (u1, v1), (u0, v1) — a parallelogram, edges c1 - c0 and c3 - c0.
    """
    gh, gw = cam.height // patch, cam.width // patch
    gy, gx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    u0 = (gx.ravel() * patch - 0.5).astype(np.float64)  # pixel centres are integers: edges at +-0.5
    v0 = (gy.ravel() * patch - 0.5).astype(np.float64)
    u1, v1 = u0 + patch, v0 + patch
    if not np.any(np.asarray(cam.dist)):
        K = np.asarray(cam.K, np.float64)
        fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
        us = np.stack([u0, u1, u1, u0], -1)  # (G, 4)
        vs = np.stack([v0, v0, v1, v1], -1)
        y = (vs - cy) / fy
        x = (us - cx - s * y) / fx
        return np.stack([x, y], -1)
    # Distorted: sample the border, undistort, enclose in a widened axis-aligned rectangle.
    t = np.linspace(0.0, 1.0, BORDER_SAMPLES)
    G = len(u0)
    bu = np.concatenate([u0[:, None] + t * patch, np.broadcast_to(u1[:, None], (G, len(t))), u0[:, None] + t * patch,
                         np.broadcast_to(u0[:, None], (G, len(t)))], 1)  # (G, 4S)
    bv = np.concatenate([np.broadcast_to(v0[:, None], (G, len(t))), v0[:, None] + t * patch,
                         np.broadcast_to(v1[:, None], (G, len(t))), v0[:, None] + t * patch], 1)
    xy = _undistort(cam, np.stack([bu.ravel(), bv.ravel()], -1)).reshape(G, -1, 2)
    lo, hi = xy.min(1), xy.max(1)  # (G, 2)
    pad = DISTORT_MARGIN * (hi - lo) + 1e-12
    lo, hi = lo - pad, hi + pad
    return np.stack([lo, np.stack([hi[:, 0], lo[:, 1]], -1), hi, np.stack([lo[:, 0], hi[:, 1]], -1)], 1)


def _cones(cam: Camera, patch: int, near: float, far: float, box) -> dict:
    """Per-token cone geometry in the base frame for one camera.

    Returns planes (G, P, 4) as n.x <= h, vertices (G, V, 3) (padded by repeating a valid one), valid (G,)
    (False when the clipped cone is empty), face axes (G, 5, 3) and edge directions (G, 6, 3).
    """
    T = np.asarray(cam.T_base_cam, np.float64)
    R, t = T[:3, :3], T[:3, 3]
    c = patch_corners(cam, patch)  # (G, 4, 2)
    G = len(c)
    rays = np.concatenate([c, np.ones((G, 4, 1))], -1)  # (G, 4, 3) camera frame, z = 1
    rays_b = rays @ R.T  # (G, 4, 3) base frame directions
    z = R[:, 2]  # camera optical axis in the base frame
    # Side planes through the camera centre: n = cross(r_k, r_k+1), oriented so the cone's inside is n.x <= 0.
    side = np.cross(rays_b, np.roll(rays_b, -1, axis=1))  # (G, 4, 3)
    inside = rays_b.mean(1, keepdims=True)  # (G, 1, 3)
    side = np.where((side * inside).sum(-1, keepdims=True) > 0, -side, side)
    planes = [np.concatenate([side, (side @ t)[..., None]], -1)]  # (G, 4, 4)
    zz = np.broadcast_to(z, (G, 3))
    planes.append(np.concatenate([-zz, (-near - z @ t) * np.ones((G, 1))], -1)[:, None])  # z_cam >= near
    planes.append(np.concatenate([zz, (far + z @ t) * np.ones((G, 1))], -1)[:, None])  # z_cam <= far
    face_axes = np.concatenate([side, zz[:, None]], 1)  # (G, 5, 3)
    edges = np.concatenate([rays_b, (rays_b[:, 1] - rays_b[:, 0])[:, None], (rays_b[:, 3] - rays_b[:, 0])[:, None]], 1)
    verts = t + np.concatenate([near * rays_b, far * rays_b], 1)  # (G, 8, 3): z of each ray is 1
    if box is None:
        return dict(planes=np.concatenate(planes, 1), verts=verts, valid=np.ones(G, bool), faces=face_axes, edges=edges)
    lo, hi = box
    eye = np.eye(3)
    box_planes = np.concatenate([np.concatenate([eye, hi[:, None]], 1), np.concatenate([-eye, -lo[:, None]], 1)], 0)
    planes.append(np.broadcast_to(box_planes, (G, 6, 4)))
    planes = np.concatenate(planes, 1)  # (G, 12, 4)
    verts, valid = _clip_vertices(planes)
    return dict(planes=planes, verts=verts, valid=valid, faces=face_axes, edges=edges)


def _clip_vertices(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of {x : n.x <= h for all planes}, (G, P, 4) -> (G, V, 3) padded, (G,) non-empty.

    Every triple of planes is intersected (Cramer's rule); a point is a vertex if it satisfies every plane
    within EPS (loose on purpose: a slightly larger cone keeps the mask conservative).
    """
    G, P, _ = planes.shape
    tri = np.array(list(combinations(range(P), 3)))  # (C, 3)
    A = planes[:, tri, :3]  # (G, C, 3, 3)
    b = planes[:, tri, 3]  # (G, C, 3)
    det = np.linalg.det(A)
    ok = np.abs(det) > 1e-12
    Asafe = np.where(ok[..., None, None], A, np.eye(3))
    x = np.linalg.solve(Asafe, b[..., None])[..., 0]  # (G, C, 3)
    viol = np.einsum("gpk,gck->gcp", planes[..., :3], x) - planes[:, None, :, 3]  # (G, C, P)
    ok &= viol.max(-1) <= EPS * (1 + np.abs(x).max(-1))
    count = ok.sum(1)
    V = max(int(count.max()), 1)
    order = np.argsort(~ok, axis=1, kind="stable")[:, :V]  # valid ones first
    verts = np.take_along_axis(x, order[..., None], 1)  # (G, V, 3)
    first = verts[:, :1]
    pad = np.arange(V)[None, :] >= count[:, None]
    verts = np.where(pad[..., None], first, verts)
    return verts, count > 0


def _separated(ca: dict, cb: dict, box) -> np.ndarray:
    """(Ga, Gb) bool: True where some tested axis proves the two cones disjoint."""
    Ga, Gb = len(ca["verts"]), len(cb["verts"])
    out = np.zeros((Ga, Gb), bool)
    extra = [] if box is None else [np.eye(3)]
    for i0 in range(0, Ga, 16):  # row chunks keep the (rows, Gb, axes, V) temporaries small
        sl = slice(i0, min(Ga, i0 + 16))
        r = sl.stop - sl.start
        ea, eb = ca["edges"][sl], cb["edges"]  # (r, 6, 3), (Gb, 6, 3)
        cross = np.cross(ea[:, None, :, None, :], eb[None, :, None, :, :]).reshape(r, Gb, 36, 3)
        axes = [np.broadcast_to(ca["faces"][sl][:, None], (r, Gb, 5, 3)), np.broadcast_to(cb["faces"][None], (r, Gb, 5, 3)), cross]
        axes += [np.broadcast_to(e, (r, Gb, 3, 3)) for e in extra]
        axes = np.concatenate(axes, 2)  # (r, Gb, X, 3)
        pa = np.einsum("ijxk,ivk->ijxv", axes, ca["verts"][sl])  # (r, Gb, X, Va)
        pb = np.einsum("ijxk,jvk->ijxv", axes, cb["verts"])  # (r, Gb, X, Vb)
        scale = 1 + np.linalg.norm(axes, axis=-1)  # (r, Gb, X): EPS in metres times the axis length
        gap = np.maximum(pb.min(-1) - pa.max(-1), pa.min(-1) - pb.max(-1))
        out[sl] = (gap > EPS * scale).any(-1)
    return out


# ---- public API (names are imported by the model: keep them stable) --------------------------------------


def num_tokens(cameras: Sequence[Camera], patch: int) -> int:
    return sum((c.height // patch) * (c.width // patch) for c in cameras)


def sightcone_token_mask(cameras: Sequence[Camera], patch: int, near: float, far: float, workspace=None) -> np.ndarray:
    """(N, N) bool token mask, numpy float64 reference. workspace: None or (min[3], max[3]) in the base frame."""
    box = _check_args(cameras, patch, near, far, workspace)
    cones = [_cones(c, patch, float(near), float(far), box) for c in cameras]
    sizes = [len(c["verts"]) for c in cones]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    N = int(offs[-1])
    mask = np.zeros((N, N), bool)
    for a in range(len(cones)):
        mask[offs[a]:offs[a + 1], offs[a]:offs[a + 1]] = True
        for b in range(a + 1, len(cones)):
            ca, cb = cones[a], cones[b]
            m = ~_separated(ca, cb, box) & ca["valid"][:, None] & cb["valid"][None, :]
            mask[offs[a]:offs[a + 1], offs[b]:offs[b + 1]] = m
            mask[offs[b]:offs[b + 1], offs[a]:offs[a + 1]] = m.T
    return mask


def block_mask(mask: np.ndarray, block: int) -> np.ndarray:
    """(ceil(N/b), ceil(N/b)) bool: True where any pair in the block is allowed."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"mask: must be square (N, N), got shape {mask.shape}")
    if int(block) != block or block <= 0:
        raise ValueError(f"block: must be a positive integer, got {block!r}")
    N = mask.shape[0]
    nb = -(-N // block)
    padded = np.zeros((nb * block, nb * block), bool)
    padded[:N, :N] = mask
    return padded.reshape(nb, block, nb, block).any(axis=(1, 3))


def density(mask: np.ndarray) -> float:
    """Fraction of allowed entries of a (token or block) mask."""
    mask = np.asarray(mask, bool)
    return float(mask.mean()) if mask.size else 0.0


def _pack_rig(cameras: Sequence[Camera]):
    """The arrays the C++ kernel takes: K (V,3,3), dist (V,5), T_base_cam (V,4,4), sizes (V,2) [height, width]."""
    K = np.ascontiguousarray(np.stack([np.asarray(c.K, np.float64) for c in cameras]))
    dist = np.ascontiguousarray(np.stack([np.asarray(c.dist, np.float64).reshape(5) for c in cameras]))
    T = np.ascontiguousarray(np.stack([np.asarray(c.T_base_cam, np.float64) for c in cameras]))
    hw = np.array([[c.height, c.width] for c in cameras], np.int64)
    return K, dist, T, hw


def sightcone_mask(cameras: Sequence[Camera], patch: int, near: float, far: float, workspace=None, use_ext: bool | None = None) -> np.ndarray:
    """(N, N) bool token mask: the C++ kernel when `wallwm_edge._C` is built, else the numpy reference.

    use_ext: None = auto, True = require the extension, False = force the reference.
    """
    from wallwm_edge.ops import ext

    if use_ext is False or (use_ext is None and not ext.has("sightcone_mask")):
        return sightcone_token_mask(cameras, patch, near, far, workspace)
    box = _check_args(cameras, patch, near, far, workspace)
    K, dist, T, hw = _pack_rig(cameras)
    ws = None if box is None else np.ascontiguousarray(np.stack(box))
    return ext.require("sightcone_mask")(K, dist, T, hw, int(patch), float(near), float(far), ws)
