"""ChunkStreamer: what happens at the boundary when a new chunk arrives while the last one still plays.

  blend="append"    queue it after the previous chunk (start mode "after")
  blend="replace"   drop the previous chunk's not-yet-played points, play the new one now ("replace")
  blend="ensemble"  temporal ensembling: where the new chunk overlaps the old one's unplayed points,
                    send their weighted average, the weight moving linearly from the old prediction to
                    the new one over the overlap, then replace (no jump at either end of the overlap)

The unplayed part is taken from the firmware's STATE (chunk id being played, row it is heading to),
advanced by the time since that STATE at the chunk's point rate.
"""

from __future__ import annotations

import time

import numpy as np

from wallwm_edge.bridge.link import ArmLink, ChunkTicket

BLENDS = ("append", "replace", "ensemble")


class ChunkStreamer:
    def __init__(self, link: ArmLink, blend: str = "ensemble", rate_hz: float = 50.0, max_overlap: int = 20):
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
        self.link, self.blend, self.rate_hz, self.max_overlap = link, blend, rate_hz, max_overlap
        self.sent: dict[int, ChunkTicket] = {}

    def unplayed(self) -> np.ndarray | None:
        """(R, D) float32 rows of the playing chunk the arm has not reached yet, or None."""
        s = self.link.state()
        if s is None or s.playing not in self.sent:
            return None
        t = self.sent[s.playing]
        ahead = int((time.monotonic() - s.received_at) * t.rate_hz)
        return t.decoded[min(len(t.decoded), s.index + ahead):]

    def push(self, points, event_id: int = 0, **kw) -> ChunkTicket:
        """Send one chunk (L, D) with the configured boundary blending; returns its ticket (queued)."""
        p = np.asarray(points, dtype=np.float64)
        start = {"append": "after", "replace": "replace", "ensemble": "replace"}[self.blend]
        if self.blend == "ensemble":
            old = self.unplayed()
            if old is not None and len(old):
                k = min(len(old), len(p), self.max_overlap)
                w = (np.arange(1, k + 1) / (k + 1))[:, None]  # weight of the new prediction
                p = p.copy()
                p[:k] = (1 - w) * old[:k] + w * p[:k]
        t = self.link.send_chunk(p, event_id=event_id, rate_hz=kw.pop("rate_hz", self.rate_hz), start=start, **kw)
        self.sent[t.chunk_id] = t
        if len(self.sent) > 64:
            self.sent.pop(next(iter(self.sent)))
        return t
