"""DAgger takeovers on a real (tiny) Meta-World dataset, and fine-tuning from a checkpoint on them."""

import json

import numpy as np
import pytest
import torch

from wallwm_edge.data.check import validate_or_raise
from wallwm_edge.data.dataset import Dataset
from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.eval.dagger import DaggerConfig, collect, takeover_step
from wallwm_edge.model.checkpoint import load_model
from wallwm_edge.train.trainer import TrainConfig, Trainer

CFG = DaggerConfig(rollouts_per_scene=1, min_takeover=6, max_takeover=14, seed=3)


@pytest.fixture(scope="module")
def tiny_policy(tiny_metaworld_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("dagger") / "policy"
    torch.set_num_threads(1)
    Trainer(tiny_metaworld_dataset, run, TrainConfig(steps=2, batch_size=4, warmup=1, ae_frames=32), progress=False).run()
    return run


@pytest.fixture(scope="module")
def dagger_dataset(tiny_policy, tiny_metaworld_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("dagger") / "dg"
    summary = collect(tiny_policy, tiny_metaworld_dataset, out, CFG, workers=1, progress=False)
    return out, summary


def test_takeovers_are_new_episodes_from_policy_states(dagger_dataset, tiny_metaworld_dataset):
    out, summary = dagger_dataset
    src, ds = Dataset.open(tiny_metaworld_dataset), validate_or_raise(out)  # the whole folder passes `data check`
    assert summary["rollouts"] == len(src) and summary["source_episodes"] == len(src)
    assert summary["recorded"] + summary["policy_succeeded"] + summary["expert_failed"] + summary["too_short"] == len(src)
    assert summary["recorded"] >= 1  # a 2-step policy does not finish a task: the expert takes over
    assert len(ds) == len(src) + summary["recorded"]
    assert ds.info["generator"]["seed"] == src.info["generator"]["seed"]  # `eval --data` still finds the seen scenes
    by_id = {ep.episode_id: ep for ep in src}
    takeovers = [ep for ep in ds if "dagger" in ep.split_tags]
    assert len(takeovers) == summary["recorded"]
    for ep in takeovers:
        assert ep.extra["source"] == "dagger" and CFG.min_takeover <= ep.extra["takeover_step"] <= CFG.max_takeover
        scene = [e for e in by_id.values() if e.task == ep.task and e.seed == ep.seed]
        assert len(scene) == 1  # a training scene, never an evaluation-only one
        # the first recorded frame is where the policy left the arm, not the scene's reset frame
        assert not np.array_equal(np.asarray(ep.proprio[0]), np.asarray(scene[0].proprio[0]))
        sub = ep.events_on("subtask")
        assert sub[0].start == 0 and sub[-1].end == ep.num_frames and ep.success
    for eid in by_id:  # source episodes are there, unchanged (hard links or copies)
        assert (out / "episodes" / eid / "meta.json").read_bytes() == (tiny_metaworld_dataset / "episodes" / eid / "meta.json").read_bytes()


def test_takeover_step_is_seeded_and_in_range():
    ks = {takeover_step(CFG, "push-v3", s, r) for s in range(20) for r in range(3)}
    assert min(ks) >= CFG.min_takeover and max(ks) <= CFG.max_takeover and len(ks) > 3
    assert takeover_step(CFG, "push-v3", 5, 1) == takeover_step(CFG, "push-v3", 5, 1)


def test_bad_requests_are_refused_before_any_rollout(tiny_policy, tiny_metaworld_dataset, tmp_path):
    with pytest.raises(ConfigError, match="takeover"):
        collect(tiny_policy, tiny_metaworld_dataset, tmp_path / "a", DaggerConfig(min_takeover=20, max_takeover=10), progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(DataError, match="not an empty folder"):
        collect(tiny_policy, tiny_metaworld_dataset, tmp_path / "full", CFG, progress=False)
    (tmp_path / "file").write_text("x")  # a file where the dataset should go: one line, no traceback
    with pytest.raises(DataError, match="not an empty folder"):
        collect(tiny_policy, tiny_metaworld_dataset, tmp_path / "file", CFG, progress=False)
    with pytest.raises(ConfigError, match="checkpoint not found"):
        collect(tmp_path / "nope", tiny_metaworld_dataset, tmp_path / "b", CFG, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_fine_tune_starts_from_the_checkpoint(dagger_dataset, tiny_policy, tmp_path):
    out, _ = dagger_dataset
    base, base_header = load_model(tiny_policy)
    tr = Trainer(out, tmp_path / "ft", TrainConfig(steps=1, batch_size=4, warmup=1, init=str(tiny_policy)), progress=False)
    for k, v in base.state_dict().items():  # weights, autoencoder and normalizers all come from the checkpoint
        assert torch.equal(v, tr.model.state_dict()[k]), k
    tr.run()
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["train"]["init"] == str(tiny_policy) and cfg["model"] == base_header["config"]
    assert cfg["train"]["preset"] == base.cfg.name  # the checkpoint's preset is recorded, not the CLI default
    with pytest.raises(ConfigError, match="event-mode model"):
        Trainer(out, tmp_path / "ft2", TrainConfig(steps=1, mode="unified", init=str(tiny_policy)), progress=False)
