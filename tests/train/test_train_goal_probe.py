"""The auxiliary goal probe: goals recomputed from each episode's scene, a probe on the action tower's
instruction token that learns them, and nothing of it in the checkpoint."""

import dataclasses

import numpy as np
import pytest

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.model.checkpoint import MODEL_FILE, load_model, read_header
from wallwm_edge.sim.metaworld_env import WORKSPACE_MAX, WORKSPACE_MIN, MetaWorldEnv, SimConfig, scene_goals
from wallwm_edge.train.trainer import TrainConfig, Trainer


def test_scene_goals_are_the_reset_goals_scaled_to_the_workspace(tiny_metaworld_dataset):
    eps = list(Dataset.open(tiny_metaworld_dataset))
    g = scene_goals(eps)
    assert g.shape == (len(eps), 3) and g.dtype == np.float32 and np.all(np.abs(g) <= 1)
    ep = eps[-1]
    with MetaWorldEnv(SimConfig(task=ep.task, render=False)) as env:
        raw = env.reset(int(ep.seed))["state"][36:39]
    np.testing.assert_allclose((g[-1] + 1) / 2 * (WORKSPACE_MAX - WORKSPACE_MIN) + WORKSPACE_MIN, raw, atol=1e-6)
    assert len({tuple(np.round(x, 5)) for x in g}) == len(eps)  # different scenes, different goals


def test_an_episode_from_no_simulated_task_is_refused_in_one_line(tiny_metaworld_dataset):
    ep = dataclasses.replace(Dataset.open(tiny_metaworld_dataset)[0], task="stack-the-plates")
    with pytest.raises(DataError, match="no simulated scene"):
        scene_goals([ep])


def test_goal_probe_learns_and_stays_out_of_the_checkpoint(tiny_metaworld_dataset, tmp_path):
    cfg = TrainConfig(steps=40, batch_size=4, warmup=1, ae_frames=32, goal_loss=2.0, lr=3e-3, log_every=1)
    tr = Trainer(tiny_metaworld_dataset, tmp_path / "run", cfg, progress=False)
    first = tr.train_step()["goal"]
    for _ in range(39):
        last = tr.train_step()
    assert np.isfinite(last["loss"]) and last["goal"] < first, (first, last["goal"])
    tr.save()
    model, header = load_model(tmp_path / "run" / MODEL_FILE)
    assert not any("probe" in k for k in model.state_dict())
    assert read_header(tmp_path / "run" / MODEL_FILE)["train_config"]["goal_loss"] == 2.0


def test_without_the_probe_no_goal_is_computed(tiny_metaworld_dataset, tmp_path):
    tr = Trainer(tiny_metaworld_dataset, tmp_path / "run", TrainConfig(steps=1, batch_size=2, warmup=1, ae_frames=32), progress=False)
    assert tr.goal_probe is None and tr.source.goals is None
    assert tr.train_step()["goal"] == 0.0


@pytest.mark.parametrize("w", [-1.0, float("nan")])
def test_bad_goal_loss_is_refused(tiny_metaworld_dataset, tmp_path, w):
    with pytest.raises(ConfigError, match="goal_loss"):
        Trainer(tiny_metaworld_dataset, tmp_path / "run", TrainConfig(steps=1, goal_loss=w), progress=False)
