"""Camera sources: where the runtime's multi-view frames come from, behind one small ABC.

    source = make_source("sim", views=("corner", "topview", "gripperPOV"))   # or "opencv:0,2,4", "folder:PATH"
    frame = source.capture()          # Frame: images (V, H, W, 3) uint8, per-view ok flags, poses if known

- `SimSource`: the simulated Meta-World rig (wallwm_edge.sim). It is also the simulated *world*: the
  runtime steps it with the arm's state (see actuation.py), so it owns the env.
- `OpenCVSource`: capture devices (`cv2.VideoCapture`), one per view, resized to the model's size.
- `FolderSource`: image folders, one per view (`PATH/<view>/*.png|jpg`, sorted), replayed in order:
  a recorded robot session or a dry run without cameras.

A view that yields no image this time (a USB hiccup, a missing file) is reported with `ok[v] = False`
and a black image, never an exception: the runtime decides (it reuses that view's last good image and
logs the drop). Sources import cv2 / mujoco lazily, so importing this module is cheap and torch-free.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError, DataError


@dataclass
class Frame:
    """One multi-view capture."""

    images: np.ndarray  # (V, H, W, 3) uint8
    ok: np.ndarray  # (V,) bool: False where this view delivered nothing this time
    t: float = field(default_factory=time.monotonic)
    cam_poses: np.ndarray | None = None  # (V, 4, 4) camera -> base, when the source knows them (simulator)


class CameraSource(ABC):
    views: tuple[str, ...] = ()
    image_size: tuple[int, int] = (96, 96)  # (H, W)

    @abstractmethod
    def capture(self) -> Frame: ...

    def close(self) -> None:
        pass

    def _blank(self) -> np.ndarray:
        H, W = self.image_size
        return np.zeros((H, W, 3), np.uint8)


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) RGB uint8 resized to (H, W) with area averaging (what a downscaling camera pipeline does)."""
    H, W = size
    if img.shape[:2] == (H, W):
        return img
    import cv2

    return cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)


class SimSource(CameraSource):
    """Renders the views of a MetaWorldEnv at its current state. `drop` injects dropped frames (tests)."""

    def __init__(self, env):
        self.env = env
        self.views = tuple(env.config.views)
        self.image_size = tuple(env.config.image_size)
        self.drop_next: set[int] = set()  # view indices whose next capture is dropped (fault injection)

    def capture(self) -> Frame:
        images = self.env.render()  # (V, H, W, 3)
        ok = np.ones(len(self.views), bool)
        for v in self.drop_next:
            images[v] = 0
            ok[v] = False
        self.drop_next = set()
        return Frame(images, ok, cam_poses=self.env.cam_poses())


class OpenCVSource(CameraSource):
    """One cv2.VideoCapture per view: `devices` are indices ("0") or URLs/paths (GStreamer, RTSP, files)."""

    def __init__(self, devices: list[str], views: tuple[str, ...], image_size: tuple[int, int]):
        import cv2

        if len(devices) != len(views):
            raise ConfigError(f"opencv source: {len(devices)} device(s) {devices} for {len(views)} views {list(views)}; give one per view")
        self.views, self.image_size = tuple(views), tuple(image_size)
        self.caps = []
        for d, v in zip(devices, views):
            cap = cv2.VideoCapture(int(d) if d.isdigit() else d)
            if not cap.isOpened():
                self.close()
                raise ConfigError(f"opencv source: cannot open capture device {d!r} for view {v!r}")
            self.caps.append(cap)

    def capture(self) -> Frame:
        import cv2

        images, ok = [], []
        for cap in self.caps:
            good, bgr = cap.read()
            ok.append(bool(good))
            images.append(_fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.image_size) if good else self._blank())
        return Frame(np.stack(images), np.array(ok))

    def close(self) -> None:
        for cap in getattr(self, "caps", []):
            cap.release()


class FolderSource(CameraSource):
    """Replays `root/<view>/*` images in name order, all views in step; loops at the end."""

    EXTS = (".png", ".jpg", ".jpeg", ".bmp")

    def __init__(self, root: str | Path, views: tuple[str, ...], image_size: tuple[int, int]):
        self.root, self.views, self.image_size = Path(root), tuple(views), tuple(image_size)
        self.files = []
        for v in views:
            d = self.root / v
            if not d.is_dir():
                raise DataError(f"folder source {self.root}: no folder for view {v!r} (expected {d})")
            files = sorted(p for p in d.iterdir() if p.suffix.lower() in self.EXTS)
            if not files:
                raise DataError(f"folder source {d}: no images ({', '.join(self.EXTS)})")
            self.files.append(files)
        self.i = 0

    def capture(self) -> Frame:
        import cv2

        images, ok = [], []
        for files in self.files:
            bgr = cv2.imread(str(files[self.i % len(files)]), cv2.IMREAD_COLOR)
            ok.append(bgr is not None)
            images.append(_fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.image_size) if bgr is not None else self._blank())
        self.i += 1
        return Frame(np.stack(images), np.array(ok))


def make_source(spec: str, views: tuple[str, ...], image_size: tuple[int, int], env=None) -> CameraSource:
    """'sim' (needs the env), 'opencv:DEV,DEV,...' (one device per view) or 'folder:PATH'."""
    kind, _, rest = spec.partition(":")
    if kind == "sim":
        if env is None:
            raise ConfigError("camera source 'sim' needs the simulated world (use --world sim)")
        return SimSource(env)
    if kind == "opencv":
        return OpenCVSource([d.strip() for d in rest.split(",") if d.strip()], views, image_size)
    if kind == "folder":
        return FolderSource(rest, views, image_size)
    raise ConfigError(f"unknown camera source {spec!r}: use sim, opencv:DEV[,DEV...] or folder:PATH")
