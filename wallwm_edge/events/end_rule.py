"""The end-of-event rule: ONE place that turns the termination head's p_end into two decisions.

Event mode's head outputs p_end (L,) per chunk: p_end[l] = p(the current event is over by step l).
Training (wallwm_edge.train.samples) shows it two kinds of frames: frames inside an event, where p_end
turns on at the event's last step (a FORECAST of where this chunk ends), and "done" frames after the
event's end, where p_end is 1 from step 0 (the event is already OVER). The rule keeps the two apart:

    is_done(p_end)   p_end[0] > done_threshold, read from a chunk computed on a FRESH observation:
                     the event is over now. The caller advances to the next event and executes nothing
                     of this chunk (it was made for the finished event).
    length(p_end)    steps of the chunk to execute: up to the forecast end (first p_end > cut_threshold,
                     + 1), and at most `max_exec`, so the next decision comes from a new observation
                     soon. Reaching the forecast end never advances the plan by itself.

The old rule advanced the plan as soon as a chunk's forecast crossed 0.5: in closed loop 94 % of those
advances came before the event was done (issue 11). Executing at most 8 steps per chunk and advancing
only on a fresh observation's verdict lifted seen Task Progress from 22.1 to 37.6 in that measurement.

numpy/stdlib only: the on-board runtime (no torch), the torch Policy and the evaluation all use this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wallwm_edge.errors import ConfigError


@dataclass(frozen=True)
class EndRule:
    done_threshold: float = 0.5  # p_end[0] on a fresh observation above this: the event is over
    cut_threshold: float = 0.5  # the chunk is cut after the first step whose p_end exceeds this
    max_exec: int = 8  # at most this many steps of a chunk run before the policy looks again

    def __post_init__(self):
        for name in ("done_threshold", "cut_threshold"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= float(v) < 1.0):
                raise ConfigError(f"end rule: {name} must be in [0, 1), got {v!r}")
        if not (isinstance(self.max_exec, int) and not isinstance(self.max_exec, bool) and self.max_exec >= 1):
            raise ConfigError(f"end rule: max_exec must be an integer >= 1, got {self.max_exec!r}")

    def is_done(self, end_prob) -> bool:
        """The event is over, judged on the observation this chunk was computed from."""
        p = np.asarray(end_prob, np.float64).reshape(-1)
        return bool(len(p) and p[0] > self.done_threshold)

    def forecast_length(self, end_prob) -> int:
        """Steps up to the forecast end of the event: first p_end > cut_threshold, + 1 (else all L)."""
        p = np.asarray(end_prob, np.float64).reshape(-1)
        hit = np.nonzero(p > self.cut_threshold)[0]
        return int(hit[0]) + 1 if len(hit) else len(p)

    def length(self, end_prob) -> int:
        """Steps of this chunk to execute (>= 1): the forecast end, capped at max_exec."""
        return max(1, min(self.forecast_length(end_prob), self.max_exec))


# The rule every component uses unless told otherwise (eval --done-threshold/--max-exec, run --max-exec).
DEFAULT_END_RULE = EndRule()
