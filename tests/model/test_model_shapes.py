import pytest
import torch

from wallwm_edge.errors import ConfigError
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.model.presets import PRESETS, resolve


@pytest.mark.parametrize("mode", ["event", "unified"])
def test_loss_and_sample_shapes(tiny_cfg, batch_maker, mode):
    cfg = resolve(tiny_cfg, mode=mode)
    m = WallWM(cfg)
    b = batch_maker(cfg, B=3)
    out = m.loss(b, torch.Generator().manual_seed(0))
    assert set(out) == ({"loss", "video", "action", "end"} if mode == "event" else {"loss", "video", "action"})
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    mask = m.full_mask(b["view_mask"])
    assert mask.shape == (3, m.seq_len(), m.seq_len())
    nv = torch.randn(3, cfg.n_future * cfg.view_tokens, cfg.latent_dim)
    na = torch.randn(3, cfg.horizon, cfg.action_dim)
    acts, p_end, video = m.sample(b["images"], b["proprio"], b["instruction"], mask, nv, na, steps=3)
    assert acts.shape == (3, cfg.horizon, cfg.action_dim)
    assert p_end.shape == (3, cfg.horizon) and ((p_end >= 0) & (p_end <= 1)).all()
    assert video.shape == nv.shape


def test_sample_is_deterministic_given_noise(tiny_cfg, batch_maker):
    m = WallWM(tiny_cfg).eval()
    b = batch_maker(tiny_cfg, B=2)
    mask = m.full_mask(b["view_mask"])
    nv = torch.randn(2, tiny_cfg.view_tokens, tiny_cfg.latent_dim)
    na = torch.randn(2, tiny_cfg.horizon, 4)
    a1 = m.sample(b["images"], b["proprio"], b["instruction"], mask, nv, na, 2)[0]
    a2 = m.sample(b["images"], b["proprio"], b["instruction"], mask, nv, na, 2)[0]
    assert torch.equal(a1, a2)


def test_presets_registry_and_bad_configs():
    assert {"tiny", "student", "teacher"} <= set(PRESETS)
    assert PRESETS["student"].flow_steps <= 2 and PRESETS["teacher"].flow_steps >= 8
    assert PRESETS["student"].width < PRESETS["teacher"].width
    with pytest.raises(ConfigError, match="unknown model preset 'huge'"):
        resolve("huge")
    with pytest.raises(ConfigError, match="not divisible by patch 16"):
        resolve("tiny", views=("a",), image_size=(40, 40))


@pytest.mark.parametrize("mode", ["event", "unified"])
def test_teacher_checkpoint_fits_the_20mb_limit_at_96px_3_views(mode):
    cfg = resolve("teacher", views=("corner", "topview", "gripperPOV"), image_size=(96, 96), mode=mode)
    n = sum(t.numel() for t in WallWM(cfg).state_dict().values())
    assert n * 4 < 20e6, n
