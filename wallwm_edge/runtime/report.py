"""The run's record: a JSONL log written as it happens, and the report folder written at the end.

    out/log.jsonl       one JSON object per line, flushed and fsynced per chunk: nothing is lost on a crash
    out/report.json     latency per stage (capture, mask, inference, bridge) p50/p99, on-time share,
                        success, Task Progress, events, counters
    out/latency.png     histograms of the stage latencies
    out/episode.gif     the views side by side at each capture, the current event's caption drawn on
    out/fw.log          the simulated firmware's own event log (queued/start/done/hold...)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

STAGES = ("capture", "mask", "inference", "bridge")


class JsonlLog:
    """Append-only JSONL; every record gets a wall-clock and a monotonic timestamp."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.f = open(self.path, "a", buffering=1)
        self.t0 = time.monotonic()

    def write(self, kind: str, sync: bool = False, **fields) -> None:
        rec = {"t": round(time.monotonic() - self.t0, 4), "kind": kind, **fields}
        self.f.write(json.dumps(rec, default=_plain) + "\n")
        self.f.flush()
        if sync:
            os.fsync(self.f.fileno())

    def close(self) -> None:
        if not self.f.closed:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()


def _plain(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return str(x)


def read_log(path: Path) -> list[dict]:
    """Every complete record of a JSONL log (a line cut by a crash is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def percentiles(values_s: list[float]) -> dict:
    """{"n", "p50_ms", "p99_ms", "max_ms"} of a list of seconds (None entries when empty)."""
    v = np.asarray(values_s, np.float64) * 1e3
    if v.size == 0:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"n": int(v.size), "p50_ms": round(float(np.percentile(v, 50)), 3), "p99_ms": round(float(np.percentile(v, 99)), 3),
            "max_ms": round(float(v.max()), 3)}


def latency_histogram(stages: dict[str, list[float]], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(STAGES), figsize=(4 * len(STAGES), 3.2))
    for ax, name in zip(axes, STAGES):
        v = np.asarray(stages.get(name, []), np.float64) * 1e3
        if v.size:
            ax.hist(v, bins=min(30, max(5, v.size // 2)), color="#3b6ea8")
            ax.axvline(np.percentile(v, 50), color="k", lw=1, label=f"p50 {np.percentile(v, 50):.1f} ms")
            ax.axvline(np.percentile(v, 99), color="r", lw=1, label=f"p99 {np.percentile(v, 99):.1f} ms")
            ax.legend(fontsize=7)
        ax.set_title(f"{name} (n={v.size})")
        ax.set_xlabel("ms")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def caption_frame(images: np.ndarray, lines: list[str], scale: int = 2) -> np.ndarray:
    """(V, H, W, 3) views -> one (H*scale + band, V*W*scale, 3) frame with text lines drawn under the views."""
    import cv2

    V, H, W, _ = images.shape
    row = np.concatenate(list(images), axis=1)  # (H, V*W, 3)
    row = cv2.resize(row, (V * W * scale, H * scale), interpolation=cv2.INTER_NEAREST)
    band = np.full((16 * len(lines) + 6, row.shape[1], 3), 24, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text[:90], (6, 14 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([row, band], axis=0)


def write_gif(frames: list[np.ndarray], path: Path, fps: float = 4.0) -> Path | None:
    if not frames:
        return None
    import imageio.v3 as iio

    iio.imwrite(path, np.stack(frames), duration=int(1000 / fps), loop=0)  # pillow's GIF writer: ms per frame
    return path


def write_report(out: Path, report: dict) -> Path:
    path = Path(out) / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=_plain) + "\n")
    os.replace(tmp, path)
    return path
