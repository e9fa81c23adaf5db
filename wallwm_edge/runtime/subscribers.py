"""Subscribers of the on-board loop: they watch the run and write what a person reads; none of them
steers it. The JSONL log is written as things happen (runtime/report.py, `JsonlLog`); these see every
control step and the end of the run:

    status line    tqdm bar: steps, the current event, the last chunk, the firmware's queue
    GIF            the views at each capture with the event's caption, and a last frame at the end
    latency plot   histograms of the stage latencies, beside the report

`rt` is the loop's Runtime (read only). `on_end` runs before report.json is written and may add the file it
wrote to the report.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from wallwm_edge.runtime.report import caption_frame, latency_histogram, write_gif


class Subscriber(Protocol):
    def on_step(self, rt, st) -> None:
        """After every pass of the loop (one or more control steps); `st` is the firmware's STATE or None."""

    def on_end(self, rt, reason: str, report: dict) -> None:
        """Once, after the arm holds and before report.json is written."""


class StatusLine:
    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total
        self.bar = None
        self.shown = 0

    def on_step(self, rt, st) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=self.total, unit="step", disable=not self.enabled, dynamic_ncols=True, mininterval=0.25)
        self.bar.update(rt.steps - self.shown)
        self.shown = rt.steps
        if self.enabled:
            self.bar.set_postfix_str(self.line(rt, st), refresh=False)

    @staticmethod
    def line(rt, st) -> str:
        arm = rt.env.arm
        buf = "link down" if not arm.connected or st is None else f"fw {st.mode_name} buf {rt.env.remaining(st)}"
        lc = rt.last_chunk
        inf = f"{lc['infer_ms']:.1f}ms" if lc else "-"
        return f"{rt.agent.event_label()[:48]} | chunk {lc.get('chunk', '-')} | infer {inf} | {buf}"

    def on_end(self, rt, reason: str, report: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class GifRecorder:
    def __init__(self, enabled: bool, path):
        self.enabled, self.path = enabled, path
        self.frames: list[np.ndarray] = []

    def on_capture(self, images: np.ndarray, lines: list[str]) -> None:
        if self.enabled:
            self.frames.append(caption_frame(images, lines))

    def on_step(self, rt, st) -> None:
        pass  # frames are taken at captures, not at every control step

    def on_end(self, rt, reason: str, report: dict) -> None:
        env = rt.env
        if env is not None and env.world is not None and self.enabled:
            try:
                frame = env.source.capture()
                tp = f"TP {env.world.progress:.0f}  success {env.world.success}"
                self.frames.append(caption_frame(frame.images, [f"end: {reason}", f"step {rt.steps}  {tp}"]))
            except Exception:  # noqa: BLE001 - a last frame is a nicety; the report is not
                pass
        if self.enabled and self.frames:
            write_gif(self.frames, self.path, fps=4.0)
            report["gif"] = self.path.name


class LatencyPlot:
    def __init__(self, path):
        self.path = path

    def on_step(self, rt, st) -> None:
        pass

    def on_end(self, rt, reason: str, report: dict) -> None:
        try:
            latency_histogram(rt.stages, self.path, f"{report['student']} @ {rt.cfg.rate_hz:g} Hz")
            report["latency_png"] = self.path.name
        except Exception as e:  # noqa: BLE001 - a plotting failure must not lose the report
            report["latency_png_error"] = str(e)
