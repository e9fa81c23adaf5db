import pytest
import torch

from wallwm_edge.model.presets import resolve



@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Every test here runs with one torch thread (the fixture lives in tests/conftest.py)."""


VIEWS = ("corner", "top", "gripper")  # names of wallwm_edge.data.synthetic.synthetic_rig


def make_batch(cfg, B=4, seed=0, valid_len=None):
    g = torch.Generator().manual_seed(seed)
    V, (H, W), L, A, P = cfg.num_views, cfg.image_size, cfg.horizon, cfg.action_dim, cfg.proprio_dim
    valid_len = valid_len or [L - i % 3 for i in range(B)]
    valid = torch.zeros(B, L, dtype=torch.bool)
    end = torch.zeros(B, L)
    for b, n in enumerate(valid_len):
        valid[b, :n] = True
        end[b, n - 1 :] = 1.0
    return {
        "images": torch.randint(0, 256, (B, V, H, W, 3), generator=g, dtype=torch.uint8),
        "future_images": torch.randint(0, 256, (B, cfg.n_future, V, H, W, 3), generator=g, dtype=torch.uint8),
        "proprio": torch.randn(B, P, generator=g),
        "actions": torch.randn(B, L, A, generator=g),
        "action_valid": valid,
        "end_target": end,
        "instruction": torch.randn(B, 384, generator=g),
        "view_mask": torch.rand(B, cfg.view_tokens, cfg.view_tokens, generator=g) < 0.5,
    }


@pytest.fixture
def tiny_cfg():
    return resolve("tiny", views=VIEWS, image_size=(32, 32), action_dim=4, proprio_dim=4)


@pytest.fixture
def tiny_unified_cfg():
    return resolve("tiny", views=VIEWS, image_size=(32, 32), action_dim=4, proprio_dim=4, mode="unified")


@pytest.fixture
def batch_maker():
    return make_batch
