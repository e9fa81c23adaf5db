"""Find the board in every image (or video frame) of a capture folder and return a `Session`.

Capture folder (formats and frames in full: wallwm_edge/calibration/README.md):
    capture/
      capture.json       optional: {"board": "charuco_a4" | {board fields, "name" optional}, "board_mount": "free"|"gripper"|"static",
                                    "wrist": ["gripperPOV"]}
      arm_poses.json     optional, needed for gripper/static boards and wrist cameras. T_base_flange per frame: the
                         flange's pose in the robot base frame (p_base = T_base_flange @ p_flange, metres), as the
                         arm's forward kinematics report it. Either {"<frame>": 4x4, ...}, or a list
                         [{"frame": "<frame>", "T_base_flange": 4x4}, ...], or a list of 4x4 in frame order
                         (entry i: the i-th frame key in sorted order; for videos, video frame i)
      <camera>/*.png|jpg one folder per camera; the file stem is the frame key shared across cameras
      <camera>.mp4|avi   or one video per camera; frame key = frame index (every `every`-th frame)

Everything that can be wrong with the folder (board, mount, wrist cameras, arm poses and their frames) is
checked by `open_capture` before any image is read, so a bad file costs no detection time.

Detection: cv2.aruco.CharucoDetector.detectBoard (OpenCV 5 API) for ChArUco boards;
cv2.findChessboardCornersSB for checkerboards (all corners must be visible; keep the board's long side
along the same image axis in all cameras, since a checkerboard's 180-degree turn is ambiguous).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wallwm_edge.calibration.board import Board
from wallwm_edge.calibration.observations import MOUNTS, Session, View
from wallwm_edge.errors import DataError

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv")
MIN_CORNERS = 6


class Detector:
    def __init__(self, board: Board):
        import cv2

        self.board, self.cv2 = board, cv2
        if board.type == "charuco":
            self.charuco = cv2.aruco.CharucoDetector(board.cv_board())  # a corner needs both neighbouring markers
        self.X = board.corners()

    def __call__(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, list[int]]:
        """-> ids (n,), uv (n, 2), number of ArUco markers seen, their ids."""
        cv2 = self.cv2
        if self.board.type == "charuco":
            cc, ci, mc, mi = self.charuco.detectBoard(gray)
            marker_ids = [] if mi is None else [int(i) for i in np.ravel(mi)]
            if ci is None or len(ci) == 0:
                return np.zeros(0, np.int64), np.zeros((0, 2)), len(marker_ids), marker_ids
            uv = self.refine(gray, cc.reshape(-1, 2).astype(np.float64))
            return np.ravel(ci).astype(np.int64), uv, len(marker_ids), marker_ids
        ok, corners = cv2.findChessboardCornersSB(gray, self.board.inner, flags=cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY)
        if not ok:
            return np.zeros(0, np.int64), np.zeros((0, 2)), 0, []
        uv = corners.reshape(-1, 2).astype(np.float64)
        # OpenCV may return the grid turned by 180 degrees; our boards have one odd and one even side, so the
        # square diagonal from corner 0 into the grid must be black (as printed): sample it and its white neighbour
        H, _ = cv2.findHomography(self.X[:, :2], uv, 0)
        s = self.board.square_m
        probe = np.array([[1.5 * s, 1.5 * s, 1.0], [2.5 * s, 1.5 * s, 1.0]]) @ H.T
        px = np.round(probe[:, :2] / probe[:, 2:]).astype(int)
        h, w = gray.shape
        if np.all((px >= 0) & (px < [w, h])):
            black, white = (float(gray[y, x]) for x, y in px)
            if black > white:
                uv = uv[::-1].copy()
        return np.arange(self.board.n_corners), uv, 0, []

    def refine(self, gray: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """Sub-pixel ChArUco corners with a window that stays clear of the ArUco markers.

        OpenCV refines with an 11x11 window, but a marker's corner lies only (square - marker) / 2 from the
        chessboard corner on each axis (5 mm on charuco_a3: 3.3 px when a square spans 25 px, fewer across a
        tilted board), so the window takes in the marker and pulls the corner off the saddle. The half-window
        here is 0.6 of that margin, measured along the shortest distance to another detected corner (2-10 px).
        Rendered views with a known truth (benchmark rigs, k1 -0.30..-0.12): board tilted 20-55 deg, RMS error
        0.174 -> 0.055 px (99th percentile 0.68 -> 0.12); tilted 50-70 deg, 0.336 -> 0.213 px (1.5 -> 0.84)."""
        cv2 = self.cv2
        if len(uv) < 2:
            return uv
        d = np.linalg.norm(uv[:, None] - uv[None], axis=2)
        np.fill_diagonal(d, np.inf)
        margin = (self.board.square_m - self.board.marker_m) / (2 * self.board.square_m) * d.min(1)
        half = np.clip(np.floor(0.6 * margin), 2, 10).astype(int)
        out = uv.copy()
        crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 100, 1e-4)
        for w in np.unique(half):
            m = half == w
            out[m] = cv2.cornerSubPix(gray, uv[m].astype(np.float32).reshape(-1, 1, 2), (int(w), int(w)), (-1, -1), crit).reshape(-1, 2)
        return out

    def fits_board(self, ids: np.ndarray, uv: np.ndarray) -> float:
        """Median distance (px) of the corners from the best homography of the board plane: a board file whose
        geometry differs from the printed board gives corners that no plane-to-image map explains."""
        cv2 = self.cv2
        H, _ = cv2.findHomography(self.X[ids, :2], uv, 0)
        if H is None:
            return float("inf")
        p = np.concatenate([self.X[ids, :2], np.ones((len(ids), 1))], 1) @ H.T
        return float(np.median(np.linalg.norm(p[:, :2] / p[:, 2:] - uv, axis=1)))


def _frames(cam_path: Path, every: int):
    """Yield (frame key, grey image, source) for an image folder or a video file."""
    import cv2

    if cam_path.is_dir():
        files = sorted(p for p in cam_path.iterdir() if p.suffix.lower() in IMAGE_EXT)
        for p in files:
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise DataError(f"{p}: cannot read image")
            yield p.stem, img, str(p)
    else:
        cap = cv2.VideoCapture(str(cam_path))
        if not cap.isOpened():
            raise DataError(f"{cam_path}: cannot open video")
        k = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if k % every == 0:
                yield f"{k:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), f"{cam_path}#{k}"
            k += 1
        cap.release()


def _dictionary_hint(gray: np.ndarray, board: Board) -> str:
    """Which predefined ArUco dictionary's markers are in this image (for a 'board does not match' message)."""
    import cv2

    for name in ("DICT_4X4_50", "DICT_5X5_100", "DICT_6X6_250", "DICT_7X7_1000", "DICT_ARUCO_ORIGINAL", "DICT_APRILTAG_36h11"):
        if name == board.dictionary:
            continue
        det = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name)))
        corners, ids, _ = det.detectMarkers(gray)
        if ids is not None and len(ids) >= 3:
            return name
    return ""


def load_capture_meta(folder: Path) -> dict:
    from wallwm_edge.validate import array, describe, load_json, obj, require, string

    p = folder / "capture.json"
    if not p.exists():
        return {}
    d = load_json(p)  # a folder, a FIFO or bad JSON: one line naming the file
    if not isinstance(d, dict):
        raise DataError(f"{p}: must hold a JSON object, got {describe(d)}")
    board = d.get("board")
    if board is not None and not isinstance(board, (str, dict)):
        raise DataError(f"{p}: field 'board' must be a board name or a board object, got {describe(board)}")
    require(d, obj({"board_mount": string(max_len=50), "wrist": array(string(nonempty=True, max_len=200))}), f"{p}: ")
    return d


def load_arm_poses(folder: Path, frame_keys: list[str] | None = None) -> dict[str, np.ndarray] | None:
    """T_base_flange per frame key from arm_poses.json (any of its three layouts), or None when absent."""
    from wallwm_edge.calibration.rig import check_pose

    from wallwm_edge.validate import array, describe, load_json, matrix, obj, require, string

    p = folder / "arm_poses.json"
    if not p.exists():
        return None
    d = load_json(p)
    layouts = ('{"<frame>": 4x4 T_base_flange, ...}, [{"frame": "<frame>", "T_base_flange": 4x4}, ...] '
               "or a list of 4x4 T_base_flange in frame order")
    if isinstance(d, list) and d and isinstance(d[0], dict):
        require(d, array(obj({"frame": string(nonempty=True, max_len=200), "T_base_flange": matrix(4, 4)}, required=("frame", "T_base_flange"))),
                f"{p}: ")
        d = {str(e["frame"]): e["T_base_flange"] for e in d}
    elif isinstance(d, list):
        require(d, array(matrix(4, 4)), f"{p}: ")
        keys = frame_keys or []
        if len(d) != len(keys):
            raise DataError(f"{p}: a list of {len(d)} arm poses, but the capture has {len(keys)} frames; one pose per frame, "
                            f"in sorted frame order (or map frames to poses: {layouts})")
        d = dict(zip(keys, d))
    elif not isinstance(d, dict):
        raise DataError(f"{p}: must be one of {layouts}; got {describe(d)}")
    require(d, obj(values=matrix(4, 4)), f"{p}: ")  # types and finiteness before check_pose does arithmetic
    return {str(k): check_pose(v, f"{p}: frame {k!r}") for k, v in d.items()}


@dataclass
class Capture:
    """A capture folder with everything checked and nothing detected yet."""

    folder: Path
    board: Board
    mount: str
    wrist: tuple[str, ...]
    cam_paths: list[Path]
    flange: dict[str, np.ndarray] | None


def _image_stems(cam_path: Path) -> list[str]:
    return sorted(p.stem for p in cam_path.iterdir() if p.suffix.lower() in IMAGE_EXT) if cam_path.is_dir() else []


def _video_frames(cam_path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(cam_path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return max(n, 0)


def open_capture(folder: str | Path, board: Board | None = None, board_mount: str | None = None, wrist: list[str] | None = None,
                 cameras: list[str] | None = None) -> Capture:
    """Check a capture folder (capture.json, board, mount, wrist cameras, arm_poses.json and that every image
    that needs an arm pose has one) without reading any image. Options override capture.json."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: capture folder not found")
    meta = load_capture_meta(folder)
    if board is None:
        spec = meta.get("board")
        if spec is None:
            raise DataError(f"{folder}: no board given (use --board, or put \"board\" in capture.json)")
        board = Board.from_json(spec, where=f"{folder}/capture.json: ", name=f"{folder.name}_board") if isinstance(spec, dict) else Board.load(spec)
    mount = board_mount or meta.get("board_mount", "free")
    if mount not in MOUNTS:
        raise DataError(f"{folder}: board_mount must be one of {MOUNTS}, got {mount!r}")
    wrist = tuple(wrist if wrist is not None else meta.get("wrist", []))
    cam_paths = sorted([p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")] +
                       [p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXT])
    if cameras:
        missing = [c for c in cameras if c not in {p.stem for p in cam_paths}]
        if missing:
            raise DataError(f"{folder}: no images or video for camera(s) {missing}")
        cam_paths = [p for p in cam_paths if p.stem in cameras]
    if not cam_paths:
        raise DataError(f"{folder}: no camera folders (<camera>/*.png) or videos (<camera>.mp4) found")
    for w in wrist:
        if w not in {p.stem for p in cam_paths}:
            raise DataError(f"{folder}: wrist camera {w!r} has no images in this capture")
    videos = [p for p in cam_paths if not p.is_dir()]
    keys = sorted({k for c in cam_paths for k in _image_stems(c)} |
                  {f"{k:06d}" for v in videos for k in range(_video_frames(v))})
    flange = load_arm_poses(folder, keys)
    need = [c for c in cam_paths if mount != "free" or c.stem in wrist]
    if need and flange is None:
        raise DataError(f"{folder}: board_mount {mount!r}{' and wrist cameras ' + str(list(wrist)) if wrist else ''} need arm poses: "
                        "add arm_poses.json mapping each frame to T_base_flange")
    for c in need:
        lost = [k for k in _image_stems(c) if k not in flange]
        if lost:
            raise DataError(f"{folder / 'arm_poses.json'}: no arm pose for frame {lost[0]!r} (image {c / lost[0]}.*"
                            f"{f' and {len(lost) - 1} more' if len(lost) > 1 else ''}); every image of camera {c.stem!r} needs one")
    return Capture(folder, board, mount, wrist, cam_paths, flange)


def load_session(folder: str | Path, board: Board | None = None, board_mount: str | None = None, wrist: list[str] | None = None,
                 cameras: list[str] | None = None, every: int = 10, progress: bool = False) -> Session:
    """Detect the board in a capture folder. Options override capture.json."""
    return detect(open_capture(folder, board, board_mount, wrist, cameras), every, progress)


def detect(cap: Capture, every: int = 10, progress: bool = False) -> Session:
    """Find the board in every image of a checked capture."""
    folder, board, mount, wrist, cam_paths = cap.folder, cap.board, cap.mount, cap.wrist, cap.cam_paths
    det = Detector(board)
    n_markers = (board.squares_x * board.squares_y) // 2
    views, sizes, n_images = [], {}, {}
    from tqdm import tqdm

    for cam_path in cam_paths:
        cam = cam_path.stem
        n_images[cam] = 0
        mismatch = []
        for frame, gray, source in tqdm(_frames(cam_path, every), desc=f"detect {cam}", disable=not progress, leave=False):
            n_images[cam] += 1
            h, w = gray.shape
            if cam in sizes and sizes[cam] != (w, h):
                raise DataError(f"camera {cam!r}, image {source}: size {w}x{h} differs from {sizes[cam][0]}x{sizes[cam][1]} of its other images")
            sizes[cam] = (w, h)
            ids, uv, _, marker_ids = det(gray)
            foreign = sorted({i for i in marker_ids if i >= n_markers})
            if foreign:
                mismatch.append(f"image {source}: ArUco marker ids {foreign[:8]} are not on board {board.name!r} "
                                f"(ids 0..{n_markers - 1}); the board file does not match the printed board")
                continue
            if len(ids) < MIN_CORNERS:
                continue
            err = det.fits_board(ids, uv)
            if err > 5.0:
                mismatch.append(f"image {source}: the detected corners do not fit board {board.name!r}'s geometry (median {err:.1f} px off a plane); "
                                "check squares_x/squares_y in the board file")
                continue
            views.append(View(cam, frame, ids, uv, source))
        got = [v for v in views if v.camera == cam]
        if not got and mismatch:
            raise DataError(f"camera {cam!r}: " + mismatch[0])
        if not got and n_images[cam] and board.type == "charuco":
            first = next(iter(_frames(cam_path, every)))
            hint = _dictionary_hint(first[1], board)
            if hint:
                raise DataError(f"camera {cam!r}, image {first[2]}: markers of {hint} found but board {board.name!r} uses {board.dictionary}; "
                                "the board file does not match the printed board")
    return Session(folder.name, board, mount, sizes, views, cap.flange, wrist, n_images)
