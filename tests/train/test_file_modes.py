"""Every .safetensors the project writes (checkpoint, train state, teacher targets) gets the same permissions
as its other files (0644 under the usual umask), not safetensors' own 0600."""

import os
import stat

import numpy as np
import pytest
import torch

from wallwm_edge.model.checkpoint import save_model
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.model.presets import resolve
from wallwm_edge.train.distill import save_targets
from wallwm_edge.train.state import save_train_state


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_safetensors_files_are_0644_like_the_rest(tmp_path, umask_022):
    model = WallWM(resolve("tiny", views=("a", "b"), image_size=(32, 32), action_dim=4, proprio_dim=4))
    ckpt = save_model(tmp_path / "model.safetensors", model, {"step": 0})
    opt = torch.optim.AdamW(model.parameters())
    state = save_train_state(tmp_path / "train_state.safetensors", 0, [opt], np.random.default_rng(0), torch.Generator(), {})
    targets = tmp_path / "train_teacher_targets.safetensors"
    save_targets(targets, {"x": torch.zeros(2)}, {"k": 1})
    (tmp_path / "loss.csv").write_text("step,loss\n")
    for p in (ckpt, state, targets, tmp_path / "loss.csv"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.csv", "model.safetensors", "train_state.safetensors",
                                                          "train_teacher_targets.safetensors"]  # no temp file left
