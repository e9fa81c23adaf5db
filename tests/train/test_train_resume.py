import csv

import torch

from wallwm_edge.model.checkpoint import load_model
from wallwm_edge.train.samples import hash_embedder
from wallwm_edge.train.trainer import TrainConfig, Trainer

CFG = TrainConfig(steps=6, batch_size=4, warmup=2, log_every=1, ckpt_every=100, ae_frames=16)


def weights(run):
    return load_model(run)[0].state_dict()


def test_n_steps_equal_half_resume_half_bit_for_bit(synthetic_dataset, tmp_path):
    straight = Trainer(synthetic_dataset, tmp_path / "a", CFG, embed=hash_embedder(), progress=False)
    straight.run()
    first = Trainer(synthetic_dataset, tmp_path / "b", CFG, embed=hash_embedder(), progress=False)
    assert first.run(until=3)["step"] == 3
    resumed = Trainer(synthetic_dataset, tmp_path / "b", None, embed=hash_embedder(), resume=True, progress=False)
    assert resumed.step == 3
    assert resumed.run()["step"] == 6
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6, worst
    # the loss log continues where it stopped: one row per step, steps 1..6
    with open(tmp_path / "b" / "loss.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]
    # optimizer state came back too (the exact weights above depend on it), and Muon was used
    assert type(resumed.optimizers[0]).__name__ == "Muon"
