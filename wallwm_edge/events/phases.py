"""Events of an expert episode, derived from the simulator state and the expert's commands.

No frame counts are written per task. The four tracks come from signals recorded during the rollout:

    hand (T, 3)     hand position, base frame (m)
    grip (T,)       gripper opening (Meta-World's normalised finger distance, 1 = open)
    grip_cmd (T,)   the expert's gripper effort for the step after frame t (+ closes)
    obj (T, 3)      the manipulated object's position (Meta-World obs[4:7]: puck, button, handle...)

subtask  reach until the expert commands the gripper shut (grasping tasks) or, for the others, until
         the object starts to move (> OBJ_MOVE_M from where it was): the hand has reached it.
         grasp from the close command until the object starts to move with the hand.
         then the family's verb (carry / push / press / pull) until the end.
action   per-frame motion primitive of the hand (gripper closing/opening, lower, raise, move across,
         hold still), run-length merged (runs under MIN_ACTION frames join a neighbour), cut at subtask
         boundaries so actions nest.
segment  per-frame dominant direction of motion (left/right/forward/back/up/down/still), merged the
         same way, cut at action boundaries.
The task track is one event over the whole episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wallwm_edge.data.episode import Event
from wallwm_edge.events.vocab import FAMILY_VERB, GRASPING, caption, subtask_key, task_spec

OBJ_MOVE_M = 0.005  # the object has been moved by the hand (5 mm; physics jitter is < 1 mm)
GRIP_RATE = 0.01  # gripper opening change per step that counts as closing/opening (full stroke ~0.6)
STILL_M = 0.0015  # hand displacement per step below which the hand is still (1.5 mm at 80 Hz ~ 12 cm/s)
VERTICAL_RATIO = 1.0  # |dz| above this times |dxy| -> a vertical motion
MIN_ACTION = 3  # frames
MIN_SEGMENT = 3


@dataclass
class Trace:
    """Per-frame signals of one rollout, (T, ...) each; see the module docstring."""

    hand: np.ndarray
    grip: np.ndarray
    grip_cmd: np.ndarray
    obj: np.ndarray

    def __len__(self) -> int:
        return len(self.hand)


def _step_delta(x: np.ndarray) -> np.ndarray:
    """Forward difference x[t+1] - x[t] smoothed over 3 frames, same length (last repeats)."""
    d = np.diff(x, axis=0, append=x[-1:])
    if len(d) > 1:
        d[-1] = d[-2]
    k = np.ones(3) / 3
    if d.ndim == 1:
        return np.convolve(np.pad(d, 1, mode="edge"), k, mode="valid")
    return np.stack([np.convolve(np.pad(d[:, i], 1, mode="edge"), k, mode="valid") for i in range(d.shape[1])], 1)


def subtask_bounds(trace: Trace, task: str) -> list[tuple[int, int, str]]:
    """[(start, end, key)] covering [0, T): the expert's phases from state and commands."""
    spec = task_spec(task)
    T = len(trace)
    keys = [subtask_key("reach", spec.obj)]
    if spec.family == "reach":
        return [(0, T, keys[0])]

    def first_move(t0: int) -> int:
        """First frame >= t0 where the object is OBJ_MOVE_M away from where it was at t0 (T if never)."""
        moved = np.linalg.norm(trace.obj[t0:] - trace.obj[min(t0, T - 1)], axis=1) > OBJ_MOVE_M
        return t0 + int(np.argmax(moved)) if moved.any() else T

    if spec.family in GRASPING:
        # The grasp starts when the expert commands the gripper shut, and ends when the object moves
        # with the hand. Fingers may nudge the object while lowering (bin-picking), so the motion
        # that ends the grasp is measured from where the object was when the close began.
        closing = (trace.grip_cmd > 0) & np.concatenate([[True], trace.grip_cmd[:-1] <= 0])
        t_close = int(np.argmax(closing)) if closing.any() else first_move(0)
        cuts = [t_close, first_move(t_close)]
        keys.append(subtask_key("grasp", spec.obj))
    else:
        cuts = [first_move(0)]
    keys.append(subtask_key(FAMILY_VERB[spec.family], spec.obj, spec.dest))
    edges = [0] + cuts + [T]
    spans = [(edges[i], edges[i + 1], keys[i]) for i in range(len(keys))]
    return [s for s in spans if s[1] > s[0]]  # a phase the expert skipped (e.g. already touching) is dropped


def action_labels(trace: Trace) -> np.ndarray:
    """(T,) action name per frame from hand velocity and gripper motion."""
    v = _step_delta(trace.hand)  # (T, 3)
    dg = _step_delta(trace.grip)  # (T,)
    horiz = np.linalg.norm(v[:, :2], axis=1)
    speed = np.linalg.norm(v, axis=1)
    lab = np.where(speed < STILL_M, "hold", "move").astype(object)
    vertical = np.abs(v[:, 2]) > VERTICAL_RATIO * horiz
    lab[(speed >= STILL_M) & vertical & (v[:, 2] < 0)] = "lower"
    lab[(speed >= STILL_M) & vertical & (v[:, 2] > 0)] = "raise"
    # The gripper closes/opens when commanded and it actually moves: the opening also drifts when the
    # fingers settle on an object, which is not an "open the gripper".
    lab[(dg < -GRIP_RATE) & (trace.grip_cmd > 0)] = "close-gripper"
    lab[(dg > GRIP_RATE) & (trace.grip_cmd <= 0)] = "open-gripper"
    return lab


def segment_labels(trace: Trace) -> np.ndarray:
    """(T,) dominant direction per frame: Meta-World base x is right, y forward (away from the base), z up."""
    v = _step_delta(trace.hand)
    axis = np.argmax(np.abs(v), axis=1)
    sign = np.sign(v[np.arange(len(v)), axis])
    names = np.array([["left", "right"], ["back", "forward"], ["down", "up"]], dtype=object)
    lab = names[axis, (sign > 0).astype(int)]
    lab[np.linalg.norm(v, axis=1) < STILL_M] = "still"
    return lab


def _runs(labels: np.ndarray, start: int, end: int, min_len: int) -> list[tuple[int, int, str]]:
    """Run-length spans of labels[start:end]; runs shorter than min_len join their longer neighbour."""
    runs = []
    for t in range(start, end):
        if runs and runs[-1][2] == labels[t]:
            runs[-1][1] = t + 1
        else:
            runs.append([t, t + 1, labels[t]])
    while len(runs) > 1:
        i = min(range(len(runs)), key=lambda j: runs[j][1] - runs[j][0])
        if runs[i][1] - runs[i][0] >= min_len:
            break
        # join the shorter run to its longer neighbour (label of the neighbour wins)
        left = runs[i - 1] if i > 0 else None
        right = runs[i + 1] if i + 1 < len(runs) else None
        if right is None or (left is not None and left[1] - left[0] >= right[1] - right[0]):
            left[1] = runs[i][1]
        else:
            right[0] = runs[i][0]
        del runs[i]
        # neighbours that now carry the same label become one
        merged = [runs[0]]
        for r in runs[1:]:
            if r[2] == merged[-1][2]:
                merged[-1][1] = r[1]
            else:
                merged.append(r)
        runs = merged
    return [(a, b, str(k)) for a, b, k in runs]


def _event(track: str, start: int, end: int, key: str, parent: int | None) -> Event:
    c = caption(key)
    return Event(track, int(start), int(end), key, c.text, c.paraphrases, c.heldout_paraphrases, parent)


def derive_events(trace: Trace, task: str) -> list[Event]:
    """All four tracks of one expert episode, parents first (parent indices point into the list)."""
    T = len(trace)
    events = [_event("task", 0, T, f"task:{task}", None)]
    act, seg = action_labels(trace), segment_labels(trace)
    for s0, s1, skey in subtask_bounds(trace, task):
        events.append(_event("subtask", s0, s1, skey, 0))
        i_sub = len(events) - 1
        for a0, a1, akey in _runs(act, s0, s1, MIN_ACTION):
            events.append(_event("action", a0, a1, f"action:{akey}", i_sub))
            i_act = len(events) - 1
            for g0, g1, gkey in _runs(seg, a0, a1, MIN_SEGMENT):
                events.append(_event("segment", g0, g1, f"segment:{gkey}", i_act))
    return events
