"""The chunk scheduler: the next chunk is computed while the current one plays.

Timeline at the control rate R (one chunk point per control step):

    firmware plays:   ... chunk k ............................|chunk k+1 ...
    host:             capture ─► [worker: mask + inference] ─► send chunk k+1 (start "after")
                      ◄── r points of chunk k still queued ──►

- Trigger: when the firmware has at most `lead` points left of what it holds, the loop captures an
  observation and hands it to the worker thread (onnxruntime releases the GIL, so the control loop
  keeps stepping). `lead` covers the p99 of capture + mask + inference + bridge, measured online.
- Real-time chunking, committed prefix frozen: the r points still queued at capture are committed;
  they are never replaced (the new chunk starts "after" them). The new chunk is predicted from the
  capture, so its first r actions cover the time the committed prefix plays. With the export's step
  graph (rtc "inpaint", the default when it is there) the flow is integrated on board with those r rows
  held at the committed actions after every step (Black et al.'s real-time chunking, hard-masked), so
  the rest of the chunk is denoised to continue them; without it ("align") the sample graph runs
  and the r rows are simply dropped. Either way the first r actions are not sent again and the rest is
  anchored at the committed prefix's last target (actuation.ee_targets): the path stays continuous.
- Overrun: a chunk not ready in time leaves the firmware without points: it plays what it has, then
  holds at the last point (underrun). A result older than `stale_s` is discarded and a fresh capture taken.
- Synchronous baseline (`sync=True`): capture only when the firmware is idle and wait for the result,
  the loop every naive integration starts from; the benchmark measures both.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Job:
    chunk_id: int
    instruction: str
    event_index: int
    images: np.ndarray  # (V, H, W, 3) uint8
    proprio: np.ndarray  # (P,)
    cam_poses: np.ndarray | None  # (V, 4, 4) when the source knows them
    T_base_flange: np.ndarray | None  # (4, 4) from the arm's reported pose otherwise
    committed: int  # firmware points still to play at capture: the frozen prefix
    t_capture: float
    capture_s: float
    delay_s: float = 0.0  # fault injection: extra inference time (an overrun)
    prefix: np.ndarray | None = None  # (committed, A) raw actions still to play: inpainted around (step graph)


@dataclass
class Result:
    job: Job
    out: object = None  # engine.ChunkOut
    mask_s: float = 0.0
    infer_s: float = 0.0
    t_done: float = 0.0
    error: BaseException | None = None


class InferenceWorker:
    """One background thread: Job in, Result out (mask + student inference)."""

    def __init__(self, student, masks):
        self.student, self.masks = student, masks
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._results: queue.Queue = queue.Queue()
        self.busy = False
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self.busy = True
        self._jobs.put(job)

    def poll(self, timeout: float | None = None) -> Result | None:
        try:
            r = self._results.get(timeout=timeout) if timeout else self._results.get_nowait()
        except queue.Empty:
            return None
        self.busy = False
        return r

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            r = Result(job)
            try:
                t0 = time.perf_counter()
                vm = self.masks.view_mask(job.cam_poses, job.T_base_flange) if self.masks is not None else None
                t1 = time.perf_counter()
                r.out = self.student.act(job.images, job.proprio, job.instruction, vm, prefix=job.prefix)
                if job.delay_s:
                    time.sleep(job.delay_s)
                t2 = time.perf_counter()
                r.mask_s, r.infer_s = t1 - t0, t2 - t1
            except BaseException as e:  # noqa: BLE001 - handed to the control loop, which reports it
                r.error = e
            r.t_done = time.monotonic()
            self._results.put(r)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5.0)


@dataclass
class LeadEstimate:
    """Points of lead the trigger needs: p99 of the pipeline's latency so far, in control steps, + margin."""

    rate_hz: float
    cap: int  # at most this many points: half the horizon, so every chunk keeps fresh actions to execute
    # +2 points: the point in progress may be almost played, and the loop looks only once per step (and at a
    # STATE up to one feedback period old), so "r points left" can mean r - 2 points of time.
    margin: int = 2
    floor: int = 2
    samples: list = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        del self.samples[:-30]  # recent history: the machine's load changes

    @property
    def points(self) -> int:
        """A pipeline slower than `cap` points is not hidden by triggering earlier (that would skip whole
        chunks as committed): it shows as underruns, which the report counts."""
        if not self.samples:
            return min(self.cap, self.floor + 2)
        p99 = float(np.percentile(self.samples, 99))
        return max(1, min(self.cap, max(self.floor, int(np.ceil(p99 * self.rate_hz)) + self.margin)))


def align(n_actions: int, committed: int) -> int:
    """Index of the first action of a fresh chunk still to be executed: actions [0, committed) cover the
    time the committed prefix plays, so they are dropped (if the prefix ran dry before the chunk arrived,
    the arm held still meanwhile: nothing more is skipped)."""
    return int(min(max(committed, 0), n_actions))
