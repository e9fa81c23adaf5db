import csv
import json

import numpy as np
import pytest

from wallwm_edge.cli import main
from wallwm_edge.model.policy import Policy


def test_train_cli_end_to_end_then_policy_acts(synthetic_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", str(synthetic_dataset), "--out", str(run), "--steps", "4", "--batch-size", "4", "--log-every", "1",
               "--text-encoder", "hash", "--threads", "1"])
    assert rc == 0
    *_, last_json, hint = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(last_json)
    assert summary["step"] == 4 and summary["params"] > 0
    assert hint == f"next: wallwm-edge eval {run} --data {synthetic_dataset}    then: wallwm-edge distill --teacher {run} --data {synthetic_dataset} --out {tmp_path / 'student'}"
    with open(run / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and all(np.isfinite(float(r["loss"])) for r in rows)
    pol = Policy.from_checkpoint(run)  # the rig comes with the checkpoint
    assert pol.header["dataset"]["fingerprint"] and pol.header["step"] == 4
    c = pol.cfg
    out = pol.act({"images": np.zeros((c.num_views, *c.image_size, 3), np.uint8), "proprio": np.zeros(c.proprio_dim),
                   "instruction": np.ones(384, np.float32) / 20})
    assert out["actions"].shape == (c.horizon, c.action_dim) and 1 <= out["length"] <= c.horizon
    # extend the run: --resume keeps the recipe and continues from step 4
    assert main(["train", str(synthetic_dataset), "--out", str(run), "--resume", "--steps", "6", "--text-encoder", "hash"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-2])["step"] == 6
    # stopped before the planned steps: the hint is the resume command
    assert main(["train", str(synthetic_dataset), "--out", str(tmp_path / "early"), "--steps", "4", "--stop-at", "2",
                 "--text-encoder", "hash", "--threads", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        f"next: wallwm-edge train {synthetic_dataset} --out {tmp_path / 'early'} --resume    (step 2 of 4)")


def test_resume_on_other_data_is_a_clear_error(synthetic_dataset, tmp_path, capsys, dataset_maker):
    run = tmp_path / "run"
    assert main(["train", str(synthetic_dataset), "--out", str(run), "--steps", "1", "--text-encoder", "hash"]) == 0
    other = dataset_maker(tmp_path / "other", episodes=2)
    assert main(["train", str(other), "--out", str(run), "--resume", "--text-encoder", "hash"]) == 2
    err = capsys.readouterr().err
    assert "resume on the same data" in err and "fingerprint" in err


def test_device_choice_is_checked_and_auto_is_the_cpu_without_a_gpu():
    import pytest
    import torch

    from wallwm_edge.errors import ConfigError
    from wallwm_edge.train.trainer import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu:0")
