"""What the detector hands to the solver: per-camera board views, grouped in capture sessions.

A session is one capture run with one board, mounted one way:
- "free":    the board is moved by hand; its pose in each frame is unknown.
- "gripper": the board is held by the gripper; pose = T_base_flange(frame) @ T_flange_board (one unknown).
- "static":  the board lies still (e.g. on the table) while the arm moves a wrist camera; one unknown pose.
Frames are synchronous across cameras and share a key (the image file stem, or the video frame index).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wallwm_edge.calibration.board import Board

MOUNTS = ("free", "gripper", "static")


@dataclass
class View:
    camera: str
    frame: str
    ids: np.ndarray  # (n,) int64 board corner ids
    uv: np.ndarray  # (n, 2) float64 pixels
    source: str  # image path or "video.mp4#frame", for messages


@dataclass
class Session:
    name: str
    board: Board
    board_mount: str  # free | gripper | static
    sizes: dict[str, tuple[int, int]]  # camera -> (width, height)
    views: list[View]
    flange: dict[str, np.ndarray] | None = None  # frame -> T_base_flange (4, 4)
    wrist: tuple[str, ...] = ()  # cameras on the flange
    n_images: dict[str, int] = field(default_factory=dict)  # camera -> images looked at (for messages)

    def cameras(self) -> list[str]:
        return list(self.sizes)

    def views_of(self, camera: str) -> list[View]:
        return [v for v in self.views if v.camera == camera]
