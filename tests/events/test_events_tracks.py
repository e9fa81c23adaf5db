"""Events: four nested tracks from the expert's phases, shared keys, held-out tasks, paraphrases."""

import numpy as np
import pytest

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.errors import DataError
from wallwm_edge.events import vocab
from wallwm_edge.events.phases import derive_events
from wallwm_edge.events.vocab import HELDOUT_TASKS, SEEN_TASKS, TASKS, caption
from wallwm_edge.sim.generate import rollout
from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

ORDER = {t: i for i, t in enumerate(vocab.TRACKS)}


def check_tracks(events, T):
    for i, e in enumerate(events):
        assert 0 <= e.start < e.end <= T, (i, e)
        caption(e.key)  # in the vocabulary
        if e.track == "task":
            assert e.parent is None
        else:
            p = events[e.parent]
            assert ORDER[p.track] == ORDER[e.track] - 1, (i, e.track, p.track)
            assert p.start <= e.start and e.end <= p.end, (i, e, p)
    for track in vocab.TRACKS:
        spans = sorted((e.start, e.end) for e in events if e.track == track)
        assert spans, track
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"{track} events overlap"
        # the tracks tile the episode: every frame is in exactly one event per track
        assert spans[0][0] == 0 and spans[-1][1] == T and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_tracks_nest_and_do_not_overlap(tiny_metaworld_dataset):
    for ep in Dataset.open(tiny_metaworld_dataset):
        check_tracks(list(ep.events), ep.num_frames)


def test_keys_shared_across_tasks(tiny_metaworld_dataset):
    keys = {}
    for ep in Dataset.open(tiny_metaworld_dataset):
        keys.setdefault(ep.task, set()).update(e.key for e in ep.events if e.track == "subtask")
        for e in ep.events:
            assert e.caption == caption(e.key).text  # same key, same caption
    assert {"reach:puck", "grasp:puck"} <= keys["pick-place-v3"] & keys["push-v3"]
    assert "carry:puck@target" in keys["pick-place-v3"] and "push:puck@target" in keys["push-v3"]


@pytest.fixture(scope="module")
def expert_keys():
    """Event keys per task from one physics-only expert rollout of every registered task."""
    out = {}
    for task in TASKS:
        env = MetaWorldEnv(SimConfig(task=task, render=False, max_steps=400))
        keys = set()
        for seed in (0, 1):
            arrays, trace, success = rollout(env, seed)
            assert success, task
            events = derive_events(trace, task)
            check_tracks(events, len(trace))
            keys |= {e.key for e in events if e.track != "task"}
        out[task] = keys
        env.close()
    return out


def test_heldout_tasks_consist_of_seen_events(expert_keys):
    assert set(SEEN_TASKS).isdisjoint(HELDOUT_TASKS) and len(HELDOUT_TASKS) >= 1
    seen = set().union(*(expert_keys[t] for t in SEEN_TASKS))
    for t in HELDOUT_TASKS:
        assert expert_keys[t] <= seen, (t, expert_keys[t] - seen)
        assert set(vocab.subtask_keys(t)) <= expert_keys[t]  # the held-out task really was segmented


def test_subtasks_follow_the_registry(expert_keys):
    for task in TASKS:
        assert set(vocab.subtask_keys(task)) == {k for k in expert_keys[task] if not k.startswith(("action:", "segment:"))}, task


def test_paraphrase_sets_are_disjoint_and_nonempty():
    keys = [f"task:{t}" for t in TASKS] + vocab.action_keys() + vocab.segment_keys()
    keys += [k for t in TASKS for k in vocab.subtask_keys(t)]
    for k in keys:
        c = caption(k)
        assert len(c.paraphrases) >= 2 and len(c.heldout_paraphrases) >= 1, k
        assert not set(c.paraphrases) & set(c.heldout_paraphrases), k
        assert c.text not in c.heldout_paraphrases
    with pytest.raises(DataError, match="not in the event vocabulary"):
        caption("juggle:puck")


def test_boundaries_come_from_state_not_frame_counts():
    """Two seeds of one task put the grasp at different frames: boundaries follow the scene."""
    env = MetaWorldEnv(SimConfig(task="pick-place-v3", render=False))
    starts = []
    for seed in (3, 4):
        _, trace, _ = rollout(env, seed)
        ev = derive_events(trace, "pick-place-v3")
        g = [e for e in ev if e.key == "grasp:puck"][0]
        starts.append(g.start)
        # the grasp starts exactly when the expert commands the gripper shut
        assert trace.grip_cmd[g.start] > 0 and np.all(trace.grip_cmd[: g.start] <= 0)
    env.close()
    assert starts[0] != starts[1]
