"""Task Progress: which of a task's events a closed-loop rollout has completed, from simulator state.

The paper scores Task Progress with a partial-credit rubric: the share of a task's events that were
completed, normalised to 0-100. Here a task's events are its subtask-track events (the same keys and
order the generator labels, `wallwm_edge.events.vocab.subtask_keys`: reach, [grasp,] then the family's
verb), and an event counts as completed when the simulator state shows its outcome. The rules follow
the generator's phase detectors (wallwm_edge/events/phases.py), restated so they work online and on
any policy, not only on the scripted expert whose commands the generator also reads:

    reach:<obj>   the hand comes within REACH_M of the object (3-D); for fixed mechanisms (press, pull
                  families: buttons, drawers) also when the object has moved more than OBJ_MOVE_M from
                  where it started (the hand touched it before it was that close to the reported
                  position). Loose objects are not judged by motion: a cube settles ~7 mm after reset.
                  For the "reach" family the reach *is* the task, so it completes with task success.
    grasp:<obj>   the object is held and moves with the hand: both finger pads touch it (Meta-World's
                  touching_main_object), or the hand is within REACH_M and the fingers have closed
                  (opening < GRIP_CLOSED; bin-picking's cube is not Meta-World's "main object"), while the
                  object has moved more than GRASP_MOVE_M from where it started.
    last event    (carry / push / press / pull) the simulator reports task success.

Events complete in order: an event counts only once every earlier event has counted (a latch per
event, checked every step), and task success completes every event, since a finished task has done
all of its parts. TP = 100 * completed / number of events. This is the whole rubric; there are no
per-task constants. Measured on the scripted expert and a do-nothing policy in tests/eval.

It lives with the runtime because the simulated cell (runtime/actuation.py, SimWorld) reports Task
Progress in every run; closed-loop evaluation (wallwm_edge.eval, above the runtime) scores with the same
tracker.
"""

from __future__ import annotations

import numpy as np

from wallwm_edge.events.phases import OBJ_MOVE_M
from wallwm_edge.events.vocab import subtask_keys, task_spec

REACH_M = 0.06  # every expert's hand comes within 3-6 cm of the object's reported position (measured)
GRIP_CLOSED = 0.8  # normalised finger opening: 1.0 open, ~0.45 closed on a puck or cube (measured)
GRASP_MOVE_M = 0.01  # twice OBJ_MOVE_M: above the settling of a loose object after reset


class ProgressTracker:
    """Feed it every observation of a rollout (from reset on); it latches completed events in order.

        tracker = ProgressTracker("pick-place-v3")
        tracker.update(obs)          # obs from MetaWorldEnv (uses "state", "grab_contact", "success")
        tracker.completed, tracker.progress, tracker.completed_at
    """

    def __init__(self, task: str):
        self.task = task
        self.spec = task_spec(task)
        self.keys = subtask_keys(task)
        self.completed_at: list[int | None] = [None] * len(self.keys)  # env step at which each event latched
        self._obj0: np.ndarray | None = None
        self.success = False

    @property
    def total(self) -> int:
        return len(self.keys)

    @property
    def completed(self) -> int:
        return sum(t is not None for t in self.completed_at)

    @property
    def progress(self) -> float:
        return 100.0 * self.completed / self.total

    def _done(self, key: str, state: np.ndarray, grab_contact: bool, success: bool) -> bool:
        verb = key.partition(":")[0]
        hand, obj = state[:3], state[4:7]
        moved = float(np.linalg.norm(obj - self._obj0))
        near = float(np.linalg.norm(hand - obj)) < REACH_M
        if key == self.keys[-1]:
            return success
        if verb == "reach":
            return near or (self.spec.family in ("press", "pull") and moved > OBJ_MOVE_M)
        if verb == "grasp":
            held = bool(grab_contact) or (near and float(state[3]) < GRIP_CLOSED)
            return held and moved > GRASP_MOVE_M
        raise AssertionError(f"no completion rule for event {key!r}")  # vocab.subtask_keys makes no others

    def update(self, obs: dict) -> int:
        """Latch the events this observation completes; returns the number completed so far."""
        state = np.asarray(obs["state"], np.float64)
        step = int(obs.get("step", 0))
        if self._obj0 is None:
            self._obj0 = state[4:7].copy()
        success = bool(obs["success"])
        self.success = self.success or success
        for i, key in enumerate(self.keys):
            if self.completed_at[i] is not None:
                continue
            if success or self._done(key, state, bool(obs.get("grab_contact", False)), success):
                self.completed_at[i] = step
            else:
                break  # in order: a later event cannot count before this one
        return self.completed
