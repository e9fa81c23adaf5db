"""The evaluation splits: which tasks, which scenes (seeds, camera jitter) and which instruction texts.

    seen                seen tasks in training scenes: the seeds of the first training episodes
                        (the generator's own seeds, so the scene is one the policy trained on), captions.
    novel_scene         seen tasks, unseen seeds (new object and goal positions) and the fixed cameras
                        jittered (position and rotation noise drawn from the seed), captions.
    heldout_paraphrase  the seen split's scenes, instructions drawn from the held-out paraphrases that
                        training never shows: only the language changes.
    heldout_task        held-out tasks (never seen whole; every one of their events occurs in a seen task),
                        unseen seeds, captions.
    independent_phrasing  the seen split's scenes, instructions from independent_phrasings.json: wordings
                        written by people who never saw the training templates (evaluation only; event mode).
                        Not in the default SPLITS; paired with "seen" it measures robustness to new words.

Seeds are deterministic: training scenes use the generator's `episode_seed(train_seed, task, i, 0)`;
unseen scenes use a seed sequence salted with "eval" so they never coincide with a training seed for
any index (checked against the dataset's seeds when one is given).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from wallwm_edge.errors import ConfigError

SPLITS = ("seen", "novel_scene", "heldout_paraphrase", "heldout_task")
EXTRA_SPLITS = ("independent_phrasing",)
EVAL_SALT = zlib.crc32(b"wallwm-eval")


@dataclass(frozen=True)
class Split:
    name: str
    tasks: tuple[str, ...]
    style: str  # instruction style for the planner / task caption: "caption" or "heldout"
    training_scenes: bool  # True: the training seeds; False: unseen seeds
    jitter: bool  # fixed-camera pose jitter


def make_splits(names=SPLITS, tasks: tuple[str, ...] | None = None) -> list[Split]:
    """The named splits; `tasks` restricts every split to these tasks (a split left empty is dropped:
    `dropped_splits` says which and why, for the caller to tell the user)."""
    return plan_splits(names, tasks)[0]


def dropped_splits(names=SPLITS, tasks: tuple[str, ...] | None = None) -> dict[str, str]:
    """{split: why it has no task} for the requested splits that `tasks` leaves empty."""
    return plan_splits(names, tasks)[1]


def plan_splits(names=SPLITS, tasks: tuple[str, ...] | None = None) -> tuple[list[Split], dict[str, str]]:
    """(the splits kept, {split dropped: reason}). A --tasks list of seen tasks empties heldout_task, and
    the reverse empties the others: that must be said, never a quietly smaller evaluation."""
    from wallwm_edge.events.vocab import HELDOUT_TASKS, SEEN_TASKS, TASKS

    if tasks is not None:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"task(s) {unknown} are not in the event registry; known: {', '.join(TASKS)}")
    defs = {
        "seen": (SEEN_TASKS, "caption", True, False),
        "novel_scene": (SEEN_TASKS, "caption", False, True),
        "heldout_paraphrase": (SEEN_TASKS, "heldout", True, False),
        "heldout_task": (HELDOUT_TASKS, "caption", False, False),
        "independent_phrasing": (SEEN_TASKS, "independent", True, False),
    }
    out, dropped = [], {}
    for n in names:
        if n not in defs:
            raise ConfigError(f"unknown split {n!r}; splits: {', '.join(SPLITS + EXTRA_SPLITS)}")
        all_ts, style, train_scenes, jitter = defs[n]
        ts = tuple(t for t in all_ts if tasks is None or t in tasks)
        if ts:
            out.append(Split(n, ts, style, train_scenes, jitter))
        else:
            kind = "held-out" if all_ts == HELDOUT_TASKS else "seen"
            dropped[n] = f"--tasks names none of its {kind} tasks ({', '.join(all_ts)})"
    if not out:
        raise ConfigError(f"--tasks {','.join(tasks or [])} leaves every requested split ({', '.join(names)}) empty: "
                          f"seen tasks: {', '.join(SEEN_TASKS)}; held-out tasks: {', '.join(HELDOUT_TASKS)}")
    return out, dropped


def scene_seed(split: Split, task: str, index: int, train_seed: int = 0) -> int:
    """The env seed of episode `index` of `task` in `split` (deterministic)."""
    if split.training_scenes:
        from wallwm_edge.sim.generate import episode_seed

        return episode_seed(train_seed, task, index, 0)
    ss = np.random.SeedSequence([EVAL_SALT, zlib.crc32(task.encode()), int(index), int(train_seed)])
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)
