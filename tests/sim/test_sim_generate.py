"""Dataset generation: deterministic by seed whatever the worker count, only successful episodes."""

import numpy as np
import pytest

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.errors import ConfigError
from wallwm_edge.sim.generate import episode_seed, generate_dataset


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.arrays().values(), b.arrays().values())) and a.events == b.events


def test_tiny_dataset_layout(tiny_metaworld_dataset):
    ds = Dataset.open(tiny_metaworld_dataset)
    assert len(ds) == 4 and ds.views == ["corner", "topview", "gripperPOV"]
    for ep in ds:
        T = ep.num_frames
        assert ep.success and ep.frames.shape == (T, 3, 64, 64, 3) and ep.actions.shape == (T, 4)
        assert np.all(np.diff(ep.timestamps) > 0)
        assert ep.rig.camera("gripperPOV").mount == "wrist"
        # fixed cameras do not move, the wrist camera does
        assert np.allclose(ep.cam_poses[:, 0], ep.cam_poses[0, 0])
        assert np.abs(ep.cam_poses[:, 2, :3, 3] - ep.cam_poses[0, 2, :3, 3]).max() > 0.02
        assert ep.frames[:, 0].std() > 5  # real images, not blank


def test_same_seed_same_arrays_across_worker_counts(tiny_metaworld_dataset, tmp_path):
    # one of the fixture's two tasks again, now over 2 spawned workers: job seeds do not depend on workers
    summary = generate_dataset(tmp_path / "w2", tasks=["push-v3"], episodes_per_task=2,
                               image_size=(64, 64), seed=0, workers=2, progress=False)
    assert summary["episodes"] == 2
    a, b = Dataset.open(tiny_metaworld_dataset), Dataset.open(tmp_path / "w2")
    assert b.episode_ids == ["push-v3_s00000", "push-v3_s00001"]
    for eid in b.episode_ids:
        assert _same(a.episode(eid), b.episode(eid)), eid


def test_seed_changes_episodes():
    assert episode_seed(0, "push-v3", 0, 0) != episode_seed(1, "push-v3", 0, 0)
    assert episode_seed(0, "push-v3", 0, 0) != episode_seed(0, "push-v3", 1, 0)
    assert episode_seed(0, "push-v3", 0, 0) == episode_seed(0, "push-v3", 0, 0)


def test_unknown_task_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no entry in the event registry"):
        generate_dataset(tmp_path / "x", tasks=["assembly-v3"], episodes_per_task=1, progress=False)


def test_failed_expert_episodes_are_discarded_and_counted(tmp_path):
    # 5 steps is too short for any expert: nothing is written, every attempt is counted
    s = generate_dataset(tmp_path / "short", tasks=["reach-v3"], episodes_per_task=1, image_size=(32, 32),
                         max_steps=5, max_attempts=2, progress=False)
    assert s["episodes"] == 0 and s["discarded_attempts"] == 2 and s["failed_episodes"] == ["reach-v3#0"]
    assert Dataset.open(tmp_path / "short").episode_ids == []
