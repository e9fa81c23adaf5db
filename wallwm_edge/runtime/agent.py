"""The agent of the on-board loop: the exported student, its sentence encoder, and the planner that
hands it the next event (or, unified mode, the task's one instruction).

    agent = Agent(cfg, Student.load(path, ...), path)   # checks modes, the plan and its captions
    agent.instruction                    # what the next chunk is asked for (None: nothing left to do)
    agent.student.act(images, proprio, agent.instruction, view_mask)

Everything is checked here, before the environment starts anything that moves. The end-of-event rule
is the student's (`ChunkOut.done`, wallwm_edge.events.end_rule); the planner turns verdicts and executed
steps into advances (runtime/planner.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.events.vocab import caption
from wallwm_edge.runtime.engine import Student
from wallwm_edge.runtime.planner import EventPlanner, InteractivePlanner, Planner, load_plans, registry_catalog, registry_plans


class Agent:
    """The student and its planner: what to ask for next, and what a finished chunk means for the plan."""

    def __init__(self, cfg, student: Student, student_path: Path):
        self.cfg = cfg  # a loop.RunConfig
        self.student = st = student
        self.student_path = Path(student_path)
        if cfg.unified and st.mode != "unified":
            raise ConfigError(f"unified mode needs a student exported in unified mode; {st.name} was trained in "
                              f"{st.mode!r} mode (variable-length chunks from next-event instructions). Run without --unified, "
                              "or distill and export a unified student (preset with mode=unified)")
        if cfg.rtc not in ("auto", "inpaint", "align"):
            raise ConfigError(f"--rtc must be auto, inpaint or align, got {cfg.rtc!r}")
        if cfg.rtc == "inpaint" and not st.can_inpaint:
            raise ConfigError(f"--rtc inpaint needs the student's step graph beside it ({self.student_path}: no *.step.onnx "
                              "with the same config); export with --graphs sample,step, or use --rtc align")
        self.inpaint = st.can_inpaint and cfg.rtc != "align"
        if not cfg.unified and st.mode == "unified":
            raise ConfigError(f"{st.name} is a unified-mode student: run it with --unified (it takes the task instruction)")
        self.planner: Planner | None = self._planner()  # plan and captions are checked before anything moves
        self.instruction_fixed: str | None = None  # unified mode: the task's instruction for the whole run
        if cfg.unified:
            self.instruction_fixed = caption(f"task:{cfg.task}").text
            st.embed(self.instruction_fixed)

    def _planner(self) -> Planner | None:
        cfg = self.cfg
        if cfg.unified:
            return None
        catalog = registry_catalog()
        if cfg.interactive:
            def ask(prompt: str) -> str:
                while True:
                    line = input(prompt).strip()
                    text = catalog[line].caption if line in catalog else line
                    if line.lower() in ("", "done", "quit", "exit") or text in self.student.captions:
                        return line
                    print(f"  {self.student.unknown_instruction(text)}")  # names the rejected text and the remedy

            return InteractivePlanner(ask, cfg.event_cap, catalog)
        if cfg.plan:
            plans = load_plans(cfg.plan, catalog)
            if cfg.task not in plans:
                raise ConfigError(f"{cfg.plan}: no plan for task {cfg.task!r}; it has {sorted(plans)}")
        else:
            plans = registry_plans(catalog=catalog)
            if cfg.task not in plans:
                raise ConfigError(f"task {cfg.task!r} has no events in the registry; known: {', '.join(sorted(plans))}")
        plan = plans[cfg.task]
        for i, s in enumerate(plan.steps):  # fail before the arm moves, naming the event
            try:
                self.student.embed(s.instruction)
            except DataError as e:
                raise DataError(f"plan for {cfg.task!r}, event {i}: {e}") from None
        return EventPlanner(plan, cfg.event_cap)

    # ---- what the planner says -------------------------------------------------------------------------
    @property
    def instruction(self) -> str | None:
        return self.instruction_fixed if self.planner is None else self.planner.instruction

    @property
    def event_index(self) -> int:
        return self.planner.index if self.planner is not None else 0

    @property
    def plan_done(self) -> bool:
        return self.planner is not None and self.planner.done

    def event_label(self) -> str:
        if self.planner is None:
            return f"task: {self.instruction_fixed}"
        if self.planner.done:
            return "plan done"
        i = len(self.planner.history)  # the current event is the last one begun (plan or prompt alike)
        planned = self.planner.planned
        n = len(planned) if planned is not None else "?"  # a prompt has no known length
        return f"event {i}/{n}: {self.planner.instruction}"

    def ends_event(self, instruction: str, done: bool) -> bool:
        """A chunk's verdict on a fresh observation: True when it ended the event it was asked for."""
        return self.planner is not None and instruction == self.planner.instruction and self.planner.observe(done)

    def step_cap(self, limit: int) -> int:
        """`limit` steps, or fewer when the current event's safety cap comes first."""
        return limit if self.planner is None else min(limit, self.planner.cap)

    def executed(self, n: int) -> bool:
        """Report `n` executed steps; True when the safety cap moved the planner on."""
        return self.planner.executed(n) if self.planner is not None else False

    # ---- inference -------------------------------------------------------------------------------------
    def warm_up(self, view_mask) -> float:
        """One inference (and, with the step graph, one inpainting call) before the clock starts: onnxruntime's
        first run allocates and optimises (~10x a normal call), which would otherwise inflate the first chunk's
        latency and the lead. `view_mask()` computes the mask (timed with it). Returns milliseconds."""
        st = self.student
        H, W = st.image_size
        t0 = time.perf_counter()
        vm = view_mask()
        text = self.instruction if self.instruction is not None else next(iter(st.captions))
        blank = np.zeros((len(st.views), H, W, 3), np.uint8)
        st.act(blank, np.zeros(4, np.float32), text, vm)
        if self.inpaint:  # the step graph's session warms up separately
            st.act(blank, np.zeros(4, np.float32), text, vm, prefix=np.zeros((1, st.action_dim), np.float32))
        return round((time.perf_counter() - t0) * 1e3, 2)
