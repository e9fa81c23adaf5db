"""Initial values for the bundle adjustment: intrinsics (cv2.calibrateCamera), board poses (PnP), hand-eye,
then every camera and board pose by walking the graph of shared observations.

Unknowns ("nodes"), stored as 4x4 poses:
- ("cam", name):        T_base_cam for a fixed camera, T_flange_cam for a wrist camera
- ("board", s, frame):  T_base_board of a hand-held board in one frame (session s, mount "free")
- ("board", s, None):   T_flange_board (mount "gripper") or T_base_board (mount "static") for the session
Each view ties its camera node to its board node: T_base_cam(view) @ T_cam_board(view) = T_base_board(view),
with the arm pose F = T_base_flange(frame) in between for wrist cameras and gripper-held boards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wallwm_edge.calibration import se3
from wallwm_edge.calibration.observations import Session, View
from wallwm_edge.errors import DataError


@dataclass
class ViewRef:
    """One view with everything the solver needs to place it."""

    view: View
    session: int
    cam_node: tuple
    board_node: tuple
    F: np.ndarray  # (4, 4) T_base_flange at this frame, identity when not needed
    wrist: bool
    gripper: bool
    T_cam_board: np.ndarray | None = None  # (4, 4) from PnP
    trusted: bool = True  # False: T_cam_board fits its corners badly (see flag_poor_poses); used only where nothing else links


def board_node(sessions: list[Session], s: int, frame: str) -> tuple:
    return ("board", s, frame) if sessions[s].board_mount == "free" else ("board", s, None)


def usable(view: View, board) -> bool:
    """At least 6 corners, not all on one line (a single row of corners does not fix a plane's pose)."""
    X = board.corners()[view.ids, :2]
    return len(view.ids) >= 6 and np.linalg.svd(X - X.mean(0), compute_uv=False)[1] >= 0.5 * board.square_m


def view_refs(sessions: list[Session]) -> list[ViewRef]:
    """Every usable view, with its unknowns named (views with collinear corners are left out)."""
    refs = []
    for s, sess in enumerate(sessions):
        for v in sess.views:
            if not usable(v, sess.board):
                continue
            wrist, gripper = v.camera in sess.wrist, sess.board_mount == "gripper"
            F = np.eye(4)
            if wrist or gripper:
                if sess.flange is None or v.frame not in sess.flange:
                    why = "its camera is on the wrist" if wrist else "the board is held by the gripper"
                    raise DataError(f"session {sess.name!r}, camera {v.camera!r}, image {v.source}: no arm pose for frame {v.frame!r} ({why}); "
                                    "add it to arm_poses.json")
                F = np.asarray(sess.flange[v.frame], np.float64)
            refs.append(ViewRef(v, s, ("cam", v.camera), board_node(sessions, s, v.frame), F, wrist, gripper))
    return refs


def check_counts(sessions: list[Session], cameras: list[str], min_views: int) -> None:
    """Clear errors for a camera the board was never found in, or found in too few images."""
    for cam in cameras:
        views = [v for s in sessions for v in s.views_of(cam) if usable(v, s.board)]
        n_img = sum(s.n_images.get(cam, 0) for s in sessions)
        if not views:
            looked = f" in any of its {n_img} images" if n_img else ""
            raise DataError(f"camera {cam!r}: the board was not detected{looked}; check that this camera sees the board and that the board file matches it")
        if len(views) < min_views:
            names = ", ".join(v.source for v in views)
            raise DataError(f"camera {cam!r}: the board was found in only {len(views)} image(s) (need >= {min_views}): {names}; "
                            "capture more views with the board at different distances and tilts")


def intrinsics(sessions: list[Session], cam: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, dict]:
    """cv2.calibrateCamera over all of the camera's views: K (3, 3), dist (5,), {id(view): T_cam_board}."""
    import cv2

    views, obj, img = [], [], []
    for s in sessions:
        X = s.board.corners()
        for v in s.views_of(cam):
            if not usable(v, s.board):  # OpenCV's homography start asserts on corners along one line
                continue
            views.append(v)
            obj.append(X[v.ids].astype(np.float32))
            img.append(v.uv.astype(np.float32))
    if len(views) < 3:
        raise DataError(f"camera {cam!r}: only {len(views)} view(s) show the board over more than one row of corners; need >= 3 to start")
    w, h = size
    K0 = np.array([[0.8 * w, 0, w / 2], [0, 0.8 * w, h / 2], [0, 0, 1.0]])
    try:
        _, K, dist, rvecs, tvecs = cv2.calibrateCamera(obj, img, size, None, None, flags=cv2.CALIB_FIX_K3)
    except cv2.error:
        try:  # a near-degenerate view can break the homography start; start from a plausible lens instead
            _, K, dist, rvecs, tvecs = cv2.calibrateCamera(obj, img, size, K0, np.zeros(5), flags=cv2.CALIB_FIX_K3 | cv2.CALIB_USE_INTRINSIC_GUESS)
        except cv2.error as e:
            raise DataError(f"camera {cam!r}: OpenCV could not initialise the intrinsics from {len(views)} views "
                            f"({str(e).strip().splitlines()[-1]})") from None
    poses = {id(v): se3.make_T(cv2.Rodrigues(r)[0], t.ravel()) for v, r, t in zip(views, rvecs, tvecs)}
    return K, np.asarray(dist, np.float64).ravel()[:5], poses


def view_rms(ref: ViewRef, X: np.ndarray, K: np.ndarray, dist: np.ndarray) -> float:
    """Reprojection RMS (px) of a view's corners at its initial pose ref.T_cam_board; X: the board's corners."""
    import cv2

    T = ref.T_cam_board
    uv, _ = cv2.projectPoints(X[ref.view.ids].astype(np.float64), cv2.Rodrigues(T[:3, :3])[0], T[:3, 3], K, dist)
    return float(np.sqrt(np.mean(np.sum((uv.reshape(-1, 2) - ref.view.uv) ** 2, axis=1))))


def flag_poor_poses(refs: list[ViewRef], rms: list[float]) -> None:
    """Mark views whose initial pose fits their corners far worse than the camera's other views (> 3x its median
    and > 2 px). cv2.calibrateCamera can leave a strongly distorted view in a flipped pose that the camera's other
    views outvote (2 of 20 views 97-130 degrees off, 12-27 px RMS, on issue 15's field rig); one such pose in
    the hand-eye seed put every camera 2-4 degrees and 30-50 mm off and cost the adjustment 30 extra iterations."""
    by_cam: dict[str, list[float]] = {}
    for r, e in zip(refs, rms):
        by_cam.setdefault(r.view.camera, []).append(e)
    limit = {c: max(3 * float(np.median(v)), 2.0) for c, v in by_cam.items()}
    for r, e in zip(refs, rms):
        r.trusted = bool(e <= limit[r.view.camera])


def pnp(view: View, X: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """T_cam_board of one view with known intrinsics (IPPE for a plane, then Levenberg-Marquardt)."""
    import cv2

    obj, img = X[view.ids].astype(np.float64), view.uv.astype(np.float64)
    ok, r, t = cv2.solvePnP(obj, img, K, dist, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise DataError(f"camera {view.camera!r}, image {view.source}: PnP failed for the detected corners")
    r, t = cv2.solvePnPRefineLM(obj, img, K, dist, r, t)
    return se3.make_T(cv2.Rodrigues(r)[0], t.ravel())


def _board_from_cam(ref: ViewRef, X_cam: np.ndarray) -> np.ndarray:
    T_base_cam = ref.F @ X_cam if ref.wrist else X_cam
    T_base_board = T_base_cam @ ref.T_cam_board
    return se3.inv(ref.F) @ T_base_board if ref.gripper else T_base_board


def _cam_from_board(ref: ViewRef, N: np.ndarray) -> np.ndarray:
    T_base_board = ref.F @ N if ref.gripper else N
    T_base_cam = T_base_board @ se3.inv(ref.T_cam_board)
    return se3.inv(ref.F) @ T_base_cam if ref.wrist else T_base_cam


def hand_eye_groups(refs: list[ViewRef]) -> list[list[ViewRef]]:
    """Views that tie a camera to the base through the arm's poses, one group per (session, camera): a fixed
    camera seeing a gripper-held board, or a wrist camera seeing a board lying still. Largest first."""
    groups: dict[tuple, list[ViewRef]] = {}
    for r in refs:
        # a wrist camera on a gripper-held board sees it still (no arm motion to use), and a hand-held board has a
        # new pose in every frame: only one board node per capture makes the arm's poses an AX = XB problem
        if r.gripper != r.wrist and r.board_node[2] is None and r.trusted:
            groups.setdefault((r.session, r.view.camera), []).append(r)
    return sorted((g for g in groups.values() if len(g) >= 3), key=len, reverse=True)


def solve_hand_eye(sessions: list[Session], group: list[ViewRef]) -> dict:
    """AX = XB for one group: the camera node and the board node in the robot base frame."""
    Fs = [se3.inv(r.F) if r.gripper else r.F for r in group]
    try:
        X, C = se3.hand_eye(Fs, [r.T_cam_board for r in group])
    except ValueError as e:
        raise DataError(f"camera {group[0].view.camera!r}, session {sessions[group[0].session].name!r}: hand-eye is undetermined ({e}); "
                        "move the arm through rotations about at least two different axes") from None
    return {group[0].cam_node: X, group[0].board_node: C}


def seed(sessions: list[Session], refs: list[ViewRef], reference: str) -> tuple[dict, bool]:
    """The first known nodes. With arm poses that tie a camera to the base (fixed camera + gripper board, or
    wrist camera + static board) we solve hand-eye and the base frame is the robot's (absolute=True);
    otherwise the reference camera defines the frame (T_base_cam = identity)."""
    groups = hand_eye_groups(refs)
    if not groups:
        return {("cam", reference): np.eye(4)}, False
    return solve_hand_eye(sessions, groups[0]), True


def reseed_hand_eye(sessions: list[Session], refs: list[ViewRef]):
    """For `propagate`: where the walk over shared views stops (a part of the rig that shares no view with
    what is known, e.g. a wrist camera seen only over the table board of a second capture), solve that
    part's own hand-eye; the arm's poses put it in the same base frame. So any number of captures and
    board mounts end up in one joint adjustment."""
    groups = hand_eye_groups(refs)

    def reseed(known: dict) -> dict:
        for g in groups:  # largest first; when the walk is stuck, a group's two nodes are both unknown
            if g[0].cam_node not in known and g[0].board_node not in known:
                return solve_hand_eye(sessions, g)
        return {}

    return reseed


def propagate(refs: list[ViewRef], known: dict, reseed=None) -> dict:
    """Fill every node from its known neighbours (the node with the most links first); averages all links.
    `reseed(known)` may add nodes (from hand-eye) when no known node links to the rest."""
    nodes = {r.cam_node for r in refs} | {r.board_node for r in refs}
    while len(known) < len(nodes):
        links: dict[tuple, list[np.ndarray]] = {}
        poor: dict[tuple, list[np.ndarray]] = {}  # links through badly fitting views: only for nodes nothing else reaches
        for r in refs:
            to = links if r.trusted else poor
            if r.cam_node in known and r.board_node not in known:
                to.setdefault(r.board_node, []).append(_board_from_cam(r, known[r.cam_node]))
            elif r.board_node in known and r.cam_node not in known:
                to.setdefault(r.cam_node, []).append(_cam_from_board(r, known[r.board_node]))
        links.update({n: v for n, v in poor.items() if n not in links})
        if not links and reseed is not None and (new := reseed(known)):
            known.update(new)
            continue
        if not links:
            lost = sorted({n[1] for n in nodes - set(known) if n[0] == "cam"})
            raise DataError(f"cameras {lost} share no board view with the others and no arm pose links them to the base: "
                            "capture frames where they see the board together with a calibrated camera, hold the board in the gripper "
                            "(fixed cameras), or lay it still on the table and move the arm (wrist cameras), with arm_poses.json")
        node = max(links, key=lambda n: len(links[n]))
        known[node] = se3.average(links[node])
    return known
