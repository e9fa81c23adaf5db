"""Calibration targets: a board described in a small JSON file, its 3D corners and its printable sheet.

A board file (see calibration/boards/*.json; "name" is optional, default the file's stem; the same fields
may stand inline as capture.json's "board"):
    {"name": "charuco_a4", "type": "charuco", "squares_x": 7, "squares_y": 5,
     "square_m": 0.035, "marker_m": 0.026, "dictionary": "DICT_5X5_100"}
    {"name": "checker_a4", "type": "checkerboard", "squares_x": 10, "squares_y": 7, "square_m": 0.025}

Board frame (OpenCV's): origin at the outer top-left corner of the square grid, x along squares_x, y along
squares_y (down the printed sheet), z = x cross y points into the board, away from anyone looking at the print.
Corner ids are OpenCV's: inner chessboard corners row-major, id = row * (squares_x - 1) + col.

We draw the sheet ourselves (squares + cv2.aruco.generateImageMarker) instead of calling
CharucoBoard.generateImage because OpenCV 5.0.0's generateImage asserts on many sizes (e.g. marginSize=0);
a test checks that our drawing is detected with OpenCV's own board definition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wallwm_edge.errors import DataError

TYPES = ("charuco", "checkerboard")
BOARDS_DIR = Path(__file__).resolve().parents[2] / "calibration" / "boards"
ISO_A = {0: (841, 1189), 1: (594, 841), 2: (420, 594), 3: (297, 420), 4: (210, 297)}  # ISO 216 sheets, mm (short, long)


@dataclass(frozen=True)
class Board:
    name: str
    type: str  # "charuco" or "checkerboard"
    squares_x: int  # squares along x (columns)
    squares_y: int  # squares along y (rows)
    square_m: float  # square side, metres
    marker_m: float = 0.0  # ArUco marker side, metres (charuco only)
    dictionary: str = "DICT_5X5_100"  # cv2.aruco predefined dictionary (charuco only)

    def validate(self, where: str = "") -> "Board":
        w = f"{where}board {self.name!r}"
        if self.type not in TYPES:
            raise DataError(f"{w}: field 'type' must be one of {TYPES}, got {self.type!r}")
        if self.squares_x < 3 or self.squares_y < 3:
            raise DataError(f"{w}: fields 'squares_x'/'squares_y' must be >= 3, got {self.squares_x}x{self.squares_y}")
        if not self.square_m > 0:
            raise DataError(f"{w}: field 'square_m' must be positive (metres), got {self.square_m}")
        if self.type == "checkerboard" and (self.squares_x + self.squares_y) % 2 == 0:
            raise DataError(f"{w}: a checkerboard needs one odd and one even side (e.g. 10x7 squares), got {self.squares_x}x{self.squares_y}: "
                            "otherwise it looks the same turned by 180 degrees and cameras disagree on its corner order")
        if self.type == "charuco":
            if not 0 < self.marker_m < self.square_m:
                raise DataError(f"{w}: field 'marker_m' must be in (0, square_m={self.square_m}), got {self.marker_m}")
            import cv2

            if not hasattr(cv2.aruco, self.dictionary):
                raise DataError(f"{w}: field 'dictionary' {self.dictionary!r} is not a cv2.aruco predefined dictionary")
            n_markers = (self.squares_x * self.squares_y) // 2
            size = int(self.dictionary.rsplit("_", 1)[-1]) if self.dictionary.rsplit("_", 1)[-1].isdigit() else 10**9
            if n_markers > size:
                raise DataError(f"{w}: needs {n_markers} markers but dictionary {self.dictionary} has only {size}")
        return self

    # ---- geometry -------------------------------------------------------------------------------------
    @property
    def inner(self) -> tuple[int, int]:
        """Inner corners (cols, rows)."""
        return self.squares_x - 1, self.squares_y - 1

    @property
    def n_corners(self) -> int:
        return (self.squares_x - 1) * (self.squares_y - 1)

    @property
    def size_m(self) -> tuple[float, float]:
        return self.squares_x * self.square_m, self.squares_y * self.square_m

    def corners(self) -> np.ndarray:
        """(n_corners, 3) corner positions in the board frame, metres, indexed by corner id."""
        cols, rows = self.inner
        c, r = np.meshgrid(np.arange(cols), np.arange(rows))
        xy = np.stack([(c.ravel() + 1) * self.square_m, (r.ravel() + 1) * self.square_m], axis=1)
        return np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)

    # ---- OpenCV objects ---------------------------------------------------------------------------------
    def cv_dictionary(self):
        import cv2

        return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))

    def cv_board(self):
        import cv2

        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_m, self.marker_m, self.cv_dictionary())

    # ---- printable sheet --------------------------------------------------------------------------------
    def image(self, px_per_square: int = 100, margin_px: int = 0) -> np.ndarray:
        """The board drawn as a uint8 grey image (H, W); top-left square is black (OpenCV >= 4.6 layout)."""
        import cv2

        s = int(px_per_square)
        H, W = self.squares_y * s, self.squares_x * s
        img = np.full((H + 2 * margin_px, W + 2 * margin_px), 255, np.uint8)
        m_px = int(round(s * self.marker_m / self.square_m)) if self.type == "charuco" else 0
        off = (s - m_px) // 2
        marker_id = 0
        d = self.cv_dictionary() if self.type == "charuco" else None
        for y in range(self.squares_y):
            for x in range(self.squares_x):
                y0, x0 = margin_px + y * s, margin_px + x * s
                if (x + y) % 2 == 0:
                    img[y0 : y0 + s, x0 : x0 + s] = 0
                elif d is not None:
                    img[y0 + off : y0 + off + m_px, x0 + off : x0 + off + m_px] = cv2.aruco.generateImageMarker(d, marker_id, m_px, borderBits=1)
                    marker_id += 1
        return img

    def page_mm(self, margin_mm: float = 10.0, caption_mm: float = 8.0) -> tuple[str, float, float]:
        """The smallest ISO A page (A4, A3, A2, ...) holding the board with margins and a caption line, in the
        board's orientation: (name, width_mm, height_mm). charuco_a4 -> ("A4", 297, 210), landscape."""
        w, h = (1000 * v for v in self.size_m)
        need_w, need_h = w + 2 * margin_mm, h + 2 * margin_mm + caption_mm
        for k in range(4, -1, -1):
            short, long_ = ISO_A[k]
            page = (long_, short) if w >= h else (short, long_)
            if need_w <= page[0] and need_h <= page[1]:
                return f"A{k}", float(page[0]), float(page[1])
        raise DataError(f"board {self.name!r} ({w:.0f} x {h:.0f} mm) is larger than an A0 sheet")

    def write_sheet(self, out_dir: str | Path, dpi: int = 300) -> list[Path]:
        """Write NAME.png (at `dpi`) and NAME.pdf, both a whole ISO A page (`page_mm`) with the board at true
        size in its middle and a caption with the sizes to check after printing; returns the paths."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        px_per_m = dpi / 0.0254
        s = max(int(round(self.square_m * px_per_m)), 8)
        img = self.image(px_per_square=s)
        page, W, H = self.page_mm()
        w, h = (1000 * v for v in self.size_m)
        caption_mm = 8.0
        x0, y0 = (W - w) / 2, caption_mm + (H - caption_mm - h) / 2  # board's lower-left corner, mm from the page's
        fig = plt.figure(figsize=(W / 25.4, H / 25.4), dpi=dpi)
        ax = fig.add_axes([x0 / W, y0 / H, w / W, h / H])
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        extra = f", marker {self.marker_m * 1000:.1f} mm, {self.dictionary}" if self.type == "charuco" else ""
        fig.text(
            x0 / W, (y0 - 6.0) / H,
            f"{self.name}: {self.type} {self.squares_x}x{self.squares_y} squares, square {self.square_m * 1000:.1f} mm{extra}, "
            f"{page} page. Print at 100% (no scaling); measure a square and put the measured size in the board file.",
            fontsize=7,
        )
        paths = []
        for ext in ("png", "pdf"):
            p = out_dir / f"{self.name}.{ext}"
            fig.savefig(p, dpi=dpi)
            paths.append(p)
        plt.close(fig)
        return paths

    # ---- file -------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        d = asdict(self)
        if self.type == "checkerboard":
            d.pop("marker_m")
            d.pop("dictionary")
        return d

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @staticmethod
    def from_json(d: dict, where: str = "", name: str = "board") -> "Board":
        """A validated board; `name` is used when the JSON has none (a board file: its file stem)."""
        if not isinstance(d, dict):
            raise DataError(f"{where}board file must hold a JSON object")
        d = {"name": name, **d}
        for key in ("type", "squares_x", "squares_y", "square_m"):
            if key not in d:
                raise DataError(f"{where}board file is missing field {key!r}")
        unknown = set(d) - set(Board.__dataclass_fields__)
        if unknown:
            raise DataError(f"{where}board file has unknown fields {sorted(unknown)}")
        from wallwm_edge.validate import integer, number, obj, require, string

        require(d, obj({"name": string(nonempty=True, max_len=200), "type": string(max_len=50), "squares_x": integer(2, 1000),
                        "squares_y": integer(2, 1000), "square_m": number(positive=True, hi=10.0), "marker_m": number(lo=0.0, hi=10.0),
                        "dictionary": string(max_len=50)}), where)
        try:
            b = Board(
                name=str(d["name"]), type=str(d["type"]), squares_x=int(d["squares_x"]), squares_y=int(d["squares_y"]),
                square_m=float(d["square_m"]), marker_m=float(d.get("marker_m", 0.0)), dictionary=str(d.get("dictionary", "DICT_5X5_100")),
            )
        except (TypeError, ValueError, OverflowError) as e:
            raise DataError(f"{where}board file has a malformed field ({e})") from None
        return b.validate(where)

    @staticmethod
    def load(path_or_name: str | Path) -> "Board":
        """Load a board file; a bare name (e.g. 'charuco_a4') looks in the shipped calibration/boards/."""
        path = Path(path_or_name)
        if not path.exists() and not path.suffix and (BOARDS_DIR / f"{path}.json").exists():
            path = BOARDS_DIR / f"{path}.json"
        from wallwm_edge.validate import load_json  # a folder, a FIFO or bad JSON: one line naming the file

        shipped = sorted(p.stem for p in BOARDS_DIR.glob("*.json")) if BOARDS_DIR.is_dir() else []
        d = load_json(path, DataError, f"board file not found (shipped boards: {', '.join(shipped) or 'none'})")
        return Board.from_json(d, where=f"{path}: ", name=path.stem)
