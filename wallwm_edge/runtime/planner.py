"""The event planner: a task becomes a sequence of next-event instructions for an event-mode policy.

Event mode (DESIGN.md, decision 3) never sees the whole task: it is told the *next event* ("grasp the
puck"), emits a variable-length chunk, and signals with its termination head when that event is over.
The planner owns the sequence: it hands out the current instruction, advances when the policy signals
the event's end, and advances anyway after a safety cap of steps per event, so a policy whose
termination head never fires cannot stall the robot on one instruction forever.

Plans come from three places:
- a plan file (JSON or YAML): `{"plans": {task: [entry, ...]}}` or just `{task: [entry, ...]}`, where an
  entry is an event key ("grasp:puck"), a free-text instruction ("grasp the puck"), or an object
  `{"key": ..., "caption": ..., "max_steps": ...}`;
- the event registry: every task's ordered event keys, derived automatically (`registry_plans`);
- an interactive prompt (`InteractivePlanner`): an operator types the next instruction.

`Planner` is the one interface both planners implement; the on-board loop and the evaluation loop
take either without asking which one they hold.

numpy/stdlib only: the on-board runtime imports this without torch (YAML needs PyYAML, imported lazily).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.events.vocab import TASKS, caption, subtask_keys

STYLES = ("caption", "paraphrase", "heldout", "independent")  # which text of an event the policy is given


@dataclass(frozen=True)
class EventText:
    """The texts of one canonical event: its caption, training paraphrases, held-out paraphrases and
    independent phrasings (written by others, evaluation only)."""

    key: str
    caption: str
    paraphrases: tuple[str, ...] = ()
    heldout_paraphrases: tuple[str, ...] = ()
    independent: tuple[str, ...] = ()

    def text(self, style: str, rng: random.Random) -> str:
        """The instruction in `style`: the caption, a training paraphrase, or a held-out paraphrase."""
        if style not in STYLES:
            raise ConfigError(f"instruction style must be one of {STYLES}, got {style!r}")
        if style == "caption":
            return self.caption
        pool = {"paraphrase": self.paraphrases, "heldout": self.heldout_paraphrases, "independent": self.independent}[style]
        if not pool:
            raise DataError(f"event {self.key!r} has no texts for instruction style {style!r}")
        return rng.choice(pool)


Catalog = Mapping[str, EventText]  # event key -> its texts


@dataclass(frozen=True)
class PlanStep:
    key: str  # canonical event key ("grasp:puck"); "" for a free-text instruction
    instruction: str  # the text handed to the policy
    max_steps: int | None = None  # per-event safety cap; None -> the planner's default


@dataclass(frozen=True)
class Plan:
    task: str
    steps: tuple[PlanStep, ...]

    def __post_init__(self):
        if not self.steps:
            raise DataError(f"plan for task {self.task!r} has no events")

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.steps]

    def restyled(self, catalog: Catalog, style: str, seed: int = 0) -> "Plan":
        """The same plan with every keyed instruction re-drawn in `style` (deterministic by seed)."""
        rng = random.Random(f"{self.task}/{style}/{seed}")
        steps = tuple(replace(s, instruction=catalog[s.key].text(style, rng)) if s.key in catalog else s for s in self.steps)
        return Plan(self.task, steps)


def plan_from_keys(task: str, keys: Sequence[str], catalog: Catalog, style: str = "caption", seed: int = 0) -> Plan:
    """A plan whose steps are the given event keys, texts taken from the catalog."""
    missing = [k for k in keys if k not in catalog]
    if missing:
        raise DataError(f"plan for task {task!r}: unknown event key(s) {missing}; known keys: {sorted(catalog)[:20]}")
    return Plan(task, tuple(PlanStep(k, catalog[k].caption) for k in keys)).restyled(catalog, style, seed)


def plans_from_tasks(task_events: Mapping[str, Sequence[str]], catalog: Catalog, style: str = "caption", seed: int = 0) -> dict[str, Plan]:
    """Plans for every task of a registry: task -> ordered event keys, derived automatically."""
    return {task: plan_from_keys(task, keys, catalog, style, seed) for task, keys in task_events.items()}


def registry_catalog(independent: Mapping[str, Sequence[str]] | None = None) -> dict[str, EventText]:
    """Every subtask event of the event registry as planner texts (caption, paraphrases, held-out).

    `independent`: event key -> phrasings written without the training templates; evaluation passes
    them (wallwm_edge.eval.closed_loop.task_catalog), the robot has no use for them.
    """
    extra = independent or {}
    out = {}
    for t in TASKS:
        for k in subtask_keys(t):
            c = caption(k)
            out[k] = EventText(k, c.text, c.paraphrases, c.heldout_paraphrases, tuple(extra.get(k, ())))
    return out


def registry_plans(style: str = "caption", seed: int = 0, catalog: Catalog | None = None) -> dict[str, Plan]:
    """A plan for every task of the event registry: its subtask events in order."""
    return plans_from_tasks({t: subtask_keys(t) for t in TASKS}, catalog if catalog is not None else registry_catalog(), style, seed)


def _parse_entry(entry, task: str, i: int, catalog: Catalog, where: str) -> PlanStep:
    w = f"{where}plan for task {task!r}, event {i}"
    if isinstance(entry, str):
        if entry in catalog:
            return PlanStep(entry, catalog[entry].caption)
        if any(ch.isspace() for ch in entry.strip()):
            return PlanStep("", entry.strip())  # a free-text instruction
        raise DataError(f"{w}: unknown event key {entry!r} (write free text with spaces, or a key from the registry)")
    if not isinstance(entry, dict):
        raise DataError(f"{w}: an entry must be a string or an object, got {type(entry).__name__}")
    unknown = set(entry) - {"key", "caption", "instruction", "max_steps"}
    if unknown:
        raise DataError(f"{w}: unknown field(s) {sorted(unknown)}")
    key = str(entry.get("key", ""))
    text = entry.get("instruction", entry.get("caption"))
    if key and key not in catalog and text is None:
        raise DataError(f"{w}: unknown event key {key!r} and no caption given")
    if text is None:
        if not key:
            raise DataError(f"{w}: needs a 'key' or a 'caption'")
        text = catalog[key].caption
    cap = entry.get("max_steps")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0):
        raise DataError(f"{w}: field 'max_steps' must be a positive integer, got {cap!r}")
    return PlanStep(key, str(text), cap)


def parse_plans(data, catalog: Catalog | None = None, where: str = "") -> dict[str, Plan]:
    """Plans from a parsed plan document (see the module docstring for the format)."""
    catalog = catalog or {}
    if isinstance(data, dict) and "plans" in data:
        data = data["plans"]
    if not isinstance(data, dict) or not data:
        raise DataError(f"{where}a plan file must map task names to lists of events")
    plans = {}
    for task, entries in data.items():
        if not isinstance(entries, list):
            raise DataError(f"{where}plan for task {task!r} must be a list of events, got {type(entries).__name__}")
        if not entries:
            raise DataError(f"{where}plan for task {task!r} has no events")
        plans[str(task)] = Plan(str(task), tuple(_parse_entry(e, task, i, catalog, where) for i, e in enumerate(entries)))
    return plans


def load_plans(path: str | Path, catalog: Catalog | None = None) -> dict[str, Plan]:
    """Read a JSON (.json) or YAML (.yaml/.yml) plan file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"{path}: plan file not found") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: reading YAML plans needs PyYAML (pip install pyyaml), or write the plan as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise DataError(f"{path}: not valid YAML ({e})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
    return parse_plans(data, catalog, where=f"{path}: ")


def save_plans(plans: Mapping[str, Plan], path: str | Path) -> Path:
    """Write plans as JSON: every step keeps its key, instruction and cap, so it reloads unchanged."""
    path = Path(path)
    doc = {"plans": {t: [{"key": s.key, "caption": s.instruction, **({"max_steps": s.max_steps} if s.max_steps else {})} for s in p.steps] for t, p in plans.items()}}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


@dataclass
class StepRecord:
    """What happened to one plan step: when it started/ended (env steps) and why it ended."""

    key: str
    instruction: str
    start: int
    end: int | None = None
    reason: str | None = None  # "signalled" (termination head) or "cap" (safety cap)


@runtime_checkable
class Planner(Protocol):
    """What a control loop needs from a planner: the current instruction, the per-event cap, the two
    reports of a chunk (executed steps, the end-of-event verdict) and what happened to each event."""

    history: list[StepRecord]

    @property
    def done(self) -> bool: ...

    @property
    def index(self) -> int:
        """The current event, 0-based (the number of events over)."""

    @property
    def instruction(self) -> str | None: ...

    @property
    def cap(self) -> int: ...

    @property
    def planned(self) -> tuple[str, ...] | None:
        """Every instruction when the plan is known in advance; None for a prompt."""

    def observe(self, event_done: bool) -> bool: ...

    def executed(self, n_steps: int) -> bool: ...

    def update(self, n_steps: int, event_end: bool) -> bool: ...


@dataclass
class EventPlanner:
    """Hands out the current instruction; advances when a fresh observation shows the event done, or at
    the per-event cap.

        planner = EventPlanner(plan, max_steps_per_event=60)
        while not planner.done:
            actions, p_end = policy(obs, planner.instruction)        # a chunk from a fresh observation
            if planner.observe(rule.is_done(p_end)):                  # the event is over: next one, same obs
                continue
            for a in actions[: rule.length(p_end)]: obs = env.step(a)
            planner.executed(n)                                       # the safety cap counts executed steps

    `rule` is the one end-of-event rule (wallwm_edge.events.end_rule.EndRule). How verdicts become an
    advance (defaults: advance on the first "done"):
    - `end_confirm` = k: k fresh observations in a row must say "done"; one that does not resets the count.
    - `min_event_steps` = m: verdicts before the event has run m env steps are ignored.
    The safety cap advances after max_steps_per_event executed steps, whatever the policy says.
    `update(n, done)` does both in one call (executed, then observe), for callers with one report per chunk.
    """

    plan: Plan
    max_steps_per_event: int = 60
    end_confirm: int = 1
    min_event_steps: int = 0
    index: int = 0
    steps_in_event: int = 0
    total_steps: int = 0
    end_streak: int = 0  # consecutive fresh observations of the current event that said "done"
    history: list[StepRecord] = field(default_factory=list)

    def __post_init__(self):
        if self.max_steps_per_event <= 0:
            raise ConfigError(f"max_steps_per_event must be positive, got {self.max_steps_per_event}")
        if self.end_confirm < 1:
            raise ConfigError(f"end_confirm must be >= 1 (observations that must say the event is done in a row), got {self.end_confirm}")
        if self.min_event_steps < 0:
            raise ConfigError(f"min_event_steps must be >= 0, got {self.min_event_steps}")
        self.history.append(StepRecord(self.plan.steps[0].key, self.plan.steps[0].instruction, 0))

    @property
    def done(self) -> bool:
        return self.index >= len(self.plan.steps)

    @property
    def planned(self) -> tuple[str, ...]:
        return tuple(s.instruction for s in self.plan.steps)

    @property
    def current(self) -> PlanStep | None:
        return None if self.done else self.plan.steps[self.index]

    @property
    def instruction(self) -> str | None:
        return None if self.done else self.plan.steps[self.index].instruction

    @property
    def cap(self) -> int:
        """Steps the current event may still take before the planner moves on regardless."""
        step = self.current
        limit = step.max_steps if step is not None and step.max_steps else self.max_steps_per_event
        return max(0, limit - self.steps_in_event)

    def observe(self, event_done: bool) -> bool:
        """A verdict on a fresh observation; returns True when the planner moved to the next event."""
        if self.done:
            return False
        self.end_streak = self.end_streak + 1 if event_done and self.steps_in_event >= self.min_event_steps else 0
        if self.end_streak >= self.end_confirm:
            return self._advance("signalled")
        return False

    def executed(self, n_steps: int) -> bool:
        """Account for `n_steps` executed env steps; returns True when the cap moved the planner on."""
        if self.done:
            return False
        self._count(n_steps)
        return self._advance("cap") if self.cap == 0 else False

    def update(self, n_steps: int, event_end: bool) -> bool:
        """Both reports of one chunk: its executed steps, then the verdict (the cap is checked last)."""
        if self.done:
            return False
        self._count(n_steps)
        return self.observe(event_end) or self.executed(0)

    def _count(self, n_steps: int) -> None:
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        self.steps_in_event += n_steps
        self.total_steps += n_steps

    def _advance(self, reason: str) -> bool:
        rec = self.history[-1]
        rec.end, rec.reason = self.total_steps, reason
        self.index += 1
        self.steps_in_event = self.end_streak = 0
        if not self.done:
            s = self.plan.steps[self.index]
            self.history.append(StepRecord(s.key, s.instruction, self.total_steps))
        return True


class InteractivePlanner:
    """An operator types the next instruction; an empty line, 'done' or end of input ends the task.

    A `Planner` like EventPlanner, so the runtime and eval loops take either.
    `ask` defaults to input(); tests and GUIs pass their own callable.
    """

    def __init__(self, ask: Callable[[str], str] | None = None, max_steps_per_event: int = 60, catalog: Catalog | None = None):
        self._ask = ask or input
        self.catalog = catalog or {}
        self.max_steps_per_event = max_steps_per_event
        self.history: list[StepRecord] = []
        self.total_steps = 0
        self.steps_in_event = 0
        self._current: PlanStep | None = None
        self._finished = False
        self._next()

    def _next(self) -> None:
        try:
            line = self._ask("next event> ").strip()
        except EOFError:
            line = ""
        if line.lower() in ("", "done", "quit", "exit"):
            self._current, self._finished = None, True
            return
        # A typed event key is replaced by its caption, so an operator can say "grasp:puck".
        self._current = PlanStep(line, self.catalog[line].caption) if line in self.catalog else PlanStep("", line)
        self.steps_in_event = 0
        self.history.append(StepRecord(self._current.key, self._current.instruction, self.total_steps))

    @property
    def done(self) -> bool:
        return self._finished

    @property
    def index(self) -> int:
        return len(self.history) - (0 if self._finished else 1)

    @property
    def planned(self) -> None:
        return None  # the operator decides as the task goes

    @property
    def current(self) -> PlanStep | None:
        return self._current

    @property
    def instruction(self) -> str | None:
        return None if self._current is None else self._current.instruction

    @property
    def cap(self) -> int:
        return max(0, self.max_steps_per_event - self.steps_in_event)

    def observe(self, event_done: bool) -> bool:
        if self.done or not event_done:
            return False
        return self._end("signalled")

    def executed(self, n_steps: int) -> bool:
        if self.done:
            return False
        self.steps_in_event += n_steps
        self.total_steps += n_steps
        return self._end("cap") if self.cap == 0 else False

    def update(self, n_steps: int, event_end: bool) -> bool:
        if self.done:
            return False
        self.steps_in_event += n_steps
        self.total_steps += n_steps
        return self.observe(event_end) or self.executed(0)

    def _end(self, reason: str) -> bool:
        rec = self.history[-1]
        rec.end, rec.reason = self.total_steps, reason
        self._next()
        return True


def catalog_from_events(events: Iterable) -> dict[str, EventText]:
    """A catalog from any objects with key/caption/paraphrases/heldout_paraphrases (e.g. episode Events)."""
    out: dict[str, EventText] = {}
    for e in events:
        if e.key and e.key not in out:
            out[e.key] = EventText(e.key, e.caption, tuple(e.paraphrases), tuple(e.heldout_paraphrases))
    return out
