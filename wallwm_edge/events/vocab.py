"""The event vocabulary and the task registry: which keys exist, what they say, which tasks are held out.

A key names a meaning once, across tasks: "grasp:puck" is the same event text in pick-place, push and
pick-place-wall. Keys are built from a verb and its arguments, so the vocabulary stays small and
every caption is generated from one template per verb (no per-task prose):

    task      "task:<meta-world task>"           "pick up the puck and place it at the target"
    subtask   "<verb>:<object>[@<destination>]"  "grasp the puck", "carry the cube to the bin"
    action    "action:<motion>"                   "close the gripper", "lower the gripper"
    segment   "segment:<direction>"               "move left", "stay still"

Every caption has training paraphrases and a disjoint set of held-out paraphrases (for evaluating
language generalisation); both come from per-verb templates below.

Task registry: SEEN_TASKS train the model; HELDOUT_TASKS are never seen whole, but every subtask,
action and segment key they produce also occurs in a seen task (tests/events check this on generated
episodes), so they test recombination of known events into new tasks. Only the task-track caption is
new for them, by definition.
"""

from __future__ import annotations

from dataclasses import dataclass

from wallwm_edge.errors import DataError

TRACKS = ("task", "subtask", "action", "segment")


@dataclass(frozen=True)
class TaskSpec:
    """What a Meta-World task is about. Only nouns and verbs: boundaries come from simulator state."""

    name: str  # Meta-World task, e.g. "pick-place-v3"
    obj: str  # the object the expert manipulates ("puck"); "" when it touches nothing (reach)
    family: str  # "pick" (reach, grasp, carry), "slide" (reach, grasp, push), "press", "pull", "reach"
    dest: str = ""  # where the object goes ("target", "bin", "shelf"); "" if nowhere in particular
    caption: str = ""  # the task-track caption
    heldout: bool = False


# The object-moving verb of each family, after the reach (and grasp, for those that grasp).
FAMILY_VERB = {"pick": "carry", "slide": "push", "press": "press", "pull": "pull", "reach": ""}
GRASPING = {"pick", "slide"}

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("pick-place-v3", "puck", "pick", "target", "pick up the puck and place it at the target"),
        TaskSpec("push-v3", "puck", "slide", "target", "push the puck to the target"),
        TaskSpec("bin-picking-v3", "cube", "pick", "bin", "move the cube from one bin to the other"),
        TaskSpec("shelf-place-v3", "block", "pick", "shelf", "put the block on the shelf"),
        TaskSpec("button-press-topdown-v3", "button", "press", "", "press the button from above"),
        TaskSpec("drawer-open-v3", "drawer", "pull", "", "open the drawer"),
        TaskSpec("reach-v3", "target", "reach", "", "reach the target"),
        # Held out: every subtask/action/segment key below also occurs in a seen task above.
        TaskSpec("pick-place-wall-v3", "puck", "pick", "target", "lift the puck over the wall to the target", heldout=True),
        TaskSpec("push-wall-v3", "puck", "slide", "target", "push the puck around the wall to the target", heldout=True),
    )
}
SEEN_TASKS = tuple(n for n, t in TASKS.items() if not t.heldout)
HELDOUT_TASKS = tuple(n for n, t in TASKS.items() if t.heldout)

# --- captions ----------------------------------------------------------------------------------------
# verb -> (caption template, training paraphrase templates, held-out paraphrase templates)
_SUBTASK = {
    "reach": ("reach the {o}", ["move to the {o}", "go to the {o}", "approach the {o}"],
              ["bring the gripper next to the {o}", "head over to the {o}"]),
    "grasp": ("grasp the {o}", ["grab the {o}", "pick up the {o}", "take hold of the {o}"],
              ["close your fingers around the {o}", "seize the {o}"]),
    "carry": ("carry the {o} to the {d}", ["move the {o} to the {d}", "bring the {o} to the {d}", "transport the {o} to the {d}"],
              ["take the {o} over to the {d}", "deliver the {o} to the {d}"]),
    "push": ("push the {o} to the {d}", ["slide the {o} to the {d}", "shove the {o} toward the {d}", "move the {o} along the table to the {d}"],
             ["nudge the {o} over to the {d}", "drag the {o} across to the {d}"]),
    "press": ("press the {o}", ["push the {o} down", "press down on the {o}", "hit the {o}"],
              ["depress the {o}", "tap the {o} firmly"]),
    "pull": ("pull the {o} open", ["open the {o}", "pull the {o} out", "draw the {o} open"],
             ["slide the {o} open", "tug the {o} toward you"]),
}
_ACTION = {
    "close-gripper": ("close the gripper", ["shut the gripper", "close the fingers", "squeeze the gripper"], ["clamp the fingers together", "bring the fingers together"]),
    "open-gripper": ("open the gripper", ["release the gripper", "open the fingers", "spread the fingers"], ["let go with the fingers", "unclamp the gripper"]),
    "lower": ("lower the gripper", ["move the gripper down", "descend", "bring the hand down"], ["drop the hand lower", "go downward"]),
    "raise": ("raise the gripper", ["move the gripper up", "lift the hand", "ascend"], ["bring the hand up", "go upward"]),
    "move": ("move the gripper across", ["move the hand sideways", "translate the gripper horizontally", "shift the gripper over"],
             ["slide the hand along", "travel horizontally"]),
    "hold": ("hold the gripper still", ["keep the hand still", "pause", "stay in place"], ["wait without moving", "stop for a moment"]),
}
_SEGMENT = {
    "left": ("move left", ["go left", "shift to the left"], ["head leftward"]),
    "right": ("move right", ["go right", "shift to the right"], ["head rightward"]),
    "forward": ("move forward", ["go forward", "move away from the base"], ["head away from the robot"]),
    "back": ("move back", ["go back", "move toward the base"], ["head toward the robot"]),
    "up": ("move up", ["go up", "rise"], ["head upward"]),
    "down": ("move down", ["go down", "sink"], ["head downward"]),
    "still": ("stay still", ["do not move", "remain stationary"], ["hold position"]),
}


@dataclass(frozen=True)
class Caption:
    key: str
    track: str
    text: str
    paraphrases: tuple[str, ...]
    heldout_paraphrases: tuple[str, ...]


def caption(key: str) -> Caption:
    """The caption and paraphrases of an event key; DataError naming the key if it is not in the vocabulary."""
    head, _, rest = key.partition(":")
    if head == "task":
        spec = TASKS.get(rest)
        if spec is None:
            raise DataError(f"event key {key!r}: unknown task {rest!r}; known: {', '.join(TASKS)}")
        text = spec.caption
        return Caption(key, "task", text, (f"your task: {text}", f"please {text}", f"the goal is to {text}"),
                       (f"could you {text}?", f"I need you to {text}"))
    if head == "action" and rest in _ACTION:
        t, p, h = _ACTION[rest]
        return Caption(key, "action", t, tuple(p), tuple(h))
    if head == "segment" and rest in _SEGMENT:
        t, p, h = _SEGMENT[rest]
        return Caption(key, "segment", t, tuple(p), tuple(h))
    if head in _SUBTASK and rest:
        obj, _, dest = rest.partition("@")
        t, p, h = _SUBTASK[head]
        if ("{d}" in t) != bool(dest):
            raise DataError(f"event key {key!r}: verb {head!r} {'needs' if '{d}' in t else 'takes no'} a destination (@...)")
        fill = lambda s: s.format(o=obj, d=dest)  # noqa: E731
        return Caption(key, "subtask", fill(t), tuple(map(fill, p)), tuple(map(fill, h)))
    raise DataError(f"event key {key!r} is not in the event vocabulary (wallwm_edge/events/vocab.py)")


def subtask_key(verb: str, obj: str, dest: str = "") -> str:
    return f"{verb}:{obj}" + (f"@{dest}" if dest and "{d}" in _SUBTASK[verb][0] else "")


def action_keys() -> list[str]:
    return [f"action:{k}" for k in _ACTION]


def segment_keys() -> list[str]:
    return [f"segment:{k}" for k in _SEGMENT]


def task_spec(task: str) -> TaskSpec:
    spec = TASKS.get(task)
    if spec is None:
        raise DataError(f"task {task!r} has no entry in the event registry; known: {', '.join(TASKS)}")
    return spec


def subtask_keys(task: str) -> list[str]:
    """The subtask keys the expert of `task` goes through, in order (the grasp only for grasping families)."""
    s = task_spec(task)
    if s.family == "reach":
        return [subtask_key("reach", s.obj)]
    keys = [subtask_key("reach", s.obj)]
    if s.family in GRASPING:
        keys.append(subtask_key("grasp", s.obj))
    keys.append(subtask_key(FAMILY_VERB[s.family], s.obj, s.dest))
    return keys
