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


def test_ctrl_c_saves_the_last_finished_step_and_resume_logs_each_step_once(synthetic_dataset, tmp_path, capsys):
    import pytest

    cfg = TrainConfig(steps=6, batch_size=4, warmup=2, log_every=1, ckpt_every=2, ae_frames=16)
    tr = Trainer(synthetic_dataset, tmp_path / "c", cfg, embed=hash_embedder(), progress=False)
    real, calls = tr.train_step, []

    def step():
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the 4th step: steps 1-3 are done, step 3 past the step-2 checkpoint
        calls.append(1)
        return real()

    tr.train_step = step
    with pytest.raises(KeyboardInterrupt):
        tr.run()
    err = capsys.readouterr().err
    assert "saved step 3" in err and "--resume" in err
    resumed = Trainer(synthetic_dataset, tmp_path / "c", None, embed=hash_embedder(), resume=True, progress=False)
    assert resumed.step == 3
    resumed.run()
    with open(tmp_path / "c" / "loss.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]


def test_resume_from_an_older_checkpoint_drops_the_log_rows_after_it(synthetic_dataset, tmp_path):
    import shutil

    cfg = TrainConfig(steps=6, batch_size=4, warmup=2, log_every=1, ckpt_every=100, ae_frames=16)
    Trainer(synthetic_dataset, tmp_path / "d", cfg, embed=hash_embedder(), progress=False).run(until=2)
    keep = {f: (tmp_path / "d" / f).read_bytes() for f in ("model.safetensors", "train_state.safetensors")}
    Trainer(synthetic_dataset, tmp_path / "d", None, embed=hash_embedder(), resume=True, progress=False).run(until=4)
    for f, b in keep.items():  # a crash after step 4's log rows but before its checkpoint: back to step 2
        (tmp_path / "d" / f).write_bytes(b)
    Trainer(synthetic_dataset, tmp_path / "d", None, embed=hash_embedder(), resume=True, progress=False).run()
    with open(tmp_path / "d" / "loss.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]
    shutil.rmtree(tmp_path / "d")
