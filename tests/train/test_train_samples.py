import shutil

import numpy as np
import pytest

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.model.presets import resolve
from wallwm_edge.train.optim import make_optimizers, split_params
from wallwm_edge.train.samples import SampleSource, hash_embedder
from wallwm_edge.train.trainer import TrainConfig, Trainer


def source(root, mode="event", **kw):
    ds = Dataset.open(root)
    cfg = resolve("tiny", views=ds.views, image_size=ds.image_size, action_dim=4, proprio_dim=4, mode=mode, **kw)
    return SampleSource(ds, cfg, hash_embedder())


def test_event_samples_run_to_the_event_end_with_termination_target(synthetic_dataset):
    src = source(synthetic_dataset, horizon=16)
    rng = np.random.default_rng(0)
    for j, t, k in src.plan(rng, 64):
        it = src.items[j]
        assert it.start <= t < it.end
        s = src.sample(j, t, k)
        n = min(16, it.end - t)
        assert s["action_valid"].sum() == n and s["action_valid"][:n].all()
        ep = src.episodes[it.episode]
        np.testing.assert_array_equal(s["actions"][:n], ep.actions[t : t + n])
        if it.end - t <= 16:  # the event ends inside the chunk: p_end target turns on at its last step
            assert s["end_target"][n - 1] == 1 and s["end_target"][: n - 1].sum() == 0
        else:
            assert s["end_target"].sum() == 0
        assert np.array_equal(s["instruction"], src.embedding[it.texts[k]])
        assert s["view_mask"].shape == (src.cfg.view_tokens,) * 2


def test_instructions_are_captions_or_training_paraphrases_never_heldout(synthetic_dataset):
    src = source(synthetic_dataset)
    heldout = {p for ep in src.episodes for e in ep.events for p in e.heldout_paraphrases}
    assert heldout and not (heldout & set(src.embedding))
    used = {src.items[j].texts[k] for j, _, k in src.plan(np.random.default_rng(1), 200)}
    assert len(used) > len(src.keys)  # paraphrases are used, not only captions


def test_cluster_balanced_draws_rare_tasks_as_often_as_frequent_ones(tmp_path, dataset_maker):
    # 3 pick-place episodes for 1 push episode: uniform item draws would give 75% / 25%
    root = dataset_maker(tmp_path / "skewed", episodes=4, tasks=("pick-place-v3", "pick-place-v3", "push-v3", "pick-place-v3"))
    src = source(root, mode="unified")
    assert sorted(np.bincount(src.labels).tolist()) == [1, 3]
    keys = [src.items[j].key for j, _, _ in src.plan(np.random.default_rng(2), 4000)]
    assert 0.45 < keys.count("push-v3") / len(keys) < 0.55
    # the sequence is a pure function of the position: the same rows again from the same place
    assert src.plan(np.random.default_rng(5), 8, position=40) == src.plan(np.random.default_rng(5), 8, position=40)


def test_unified_mode_uses_fixed_chunks_and_the_task_instruction(synthetic_dataset):
    src = source(synthetic_dataset, mode="unified")
    assert src.keys == ["pick-place-v3", "push-v3"]  # balanced over tasks
    for j, t, k in src.plan(np.random.default_rng(3), 32):
        s = src.sample(j, t, k)
        T = src.episodes[src.items[j].episode].num_frames
        assert s["action_valid"].sum() == min(src.cfg.horizon, T - t)
        assert src.items[j].texts[0].startswith("do the")  # the synthetic task caption


def test_muon_gets_exactly_the_hidden_matrices():
    from wallwm_edge.model.denoiser import WallWM

    m = WallWM(resolve("tiny", views=("a", "b"), image_size=(32, 32), mode="unified"))
    muon, adamw = split_params(m)
    names = [n for n, _ in muon]
    assert all(p.ndim == 2 for _, p in muon)
    assert "layers.0.video.qkv.weight" in names and "layers.1.action.fc2.weight" in names and "reasoner.blocks.0.fc1.weight" in names
    rest = [n for n, _ in adamw]
    for n in ("action_in.weight", "video_pos", "action_out.weight", "end_head.weight", "layers.0.video.qkv.bias", "reasoner.blocks.0.norm1.weight"):
        assert n in rest
    opts = make_optimizers(m, "muon", 1e-3, 0.01)
    assert [type(o).__name__ for o in opts] == ["Muon", "AdamW"]


def test_bad_data_is_refused_before_training(synthetic_dataset, tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        Trainer(tmp_path / "nothing", tmp_path / "run", TrainConfig(steps=1), embed=hash_embedder(), progress=False)
    bad = tmp_path / "bad"
    shutil.copytree(synthetic_dataset, bad)
    victim = sorted((bad / "episodes").iterdir())[1] / "actions.npy"
    victim.write_bytes(victim.read_bytes()[:-40])  # a truncated file must stop training before it starts
    with pytest.raises(DataError, match="actions"):
        Trainer(bad, tmp_path / "run", TrainConfig(steps=1), embed=hash_embedder(), progress=False)
    assert not (tmp_path / "run").exists()
    src = source(synthetic_dataset)
    with pytest.raises(ConfigError, match="checkpoint expects action dim 6, dataset .* has action dim 4"):
        SampleSource(Dataset.open(synthetic_dataset), resolve(src.cfg, action_dim=6), hash_embedder())
    with pytest.raises(ConfigError, match="text embedder returned shape"):
        SampleSource(Dataset.open(synthetic_dataset), src.cfg, lambda texts: np.zeros((len(texts), 100)))


def test_done_samples_come_after_the_event_end_with_end_from_step_zero_and_no_action_loss(synthetic_dataset):
    ds = Dataset.open(synthetic_dataset)
    cfg = resolve("tiny", views=ds.views, image_size=ds.image_size, action_dim=4, proprio_dim=4, horizon=16)
    src = SampleSource(ds, cfg, hash_embedder(), done_fraction=0.5)
    rng = np.random.default_rng(0)
    done = within = 0
    for j, t, k in src.plan(rng, 400):
        it = src.items[j]
        s = src.sample(j, t, k)
        if t >= it.end:  # a done sample: inside the next event's span, the finished event's instruction
            done += 1
            assert it.done_end > it.end and t < it.done_end
            assert s["end_target"].all() and not s["action_valid"].any()
        else:
            within += 1
            assert it.start <= t and s["action_valid"].any()
    assert done > 50 and within > 50
    last = [it for it in src.items if it.done_end == 0]  # an episode's last event has nothing after it
    assert last and len(last) < len(src.items)


def test_done_fraction_out_of_range_is_refused(synthetic_dataset):
    ds = Dataset.open(synthetic_dataset)
    cfg = resolve("tiny", views=ds.views, image_size=ds.image_size, action_dim=4, proprio_dim=4)
    with pytest.raises(ConfigError, match="done_fraction"):
        SampleSource(ds, cfg, hash_embedder(), done_fraction=1.0)
