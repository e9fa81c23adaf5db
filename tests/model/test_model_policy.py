import numpy as np
import pytest
import torch

from wallwm_edge.calibration.rig import Rig
from wallwm_edge.data.synthetic import synthetic_rig
from wallwm_edge.errors import ConfigError
from wallwm_edge.model.autoencoder import PatchAutoencoder, patchify, unpatchify
from wallwm_edge.model.checkpoint import load_model, read_header, save_model
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.model.policy import Policy
from wallwm_edge.model.presets import resolve
from wallwm_edge.model.sightcone import SightCone


@pytest.fixture
def rig():
    return synthetic_rig(image_size=(32, 32))


@pytest.fixture
def ckpt(tmp_path, tiny_cfg, rig):
    m = WallWM(tiny_cfg)
    m.action_norm.fit(np.random.default_rng(0).normal(3.0, 2.0, (100, 4)))
    return save_model(tmp_path / "model.safetensors", m, {"step": 7, "rig": rig.to_json(), "dataset": {"fingerprint": "abc"}})


def obs_for(cfg, seed=0):
    r = np.random.default_rng(seed)
    return {
        "images": r.integers(0, 256, (cfg.num_views, *cfg.image_size, 3), dtype=np.uint8),
        "proprio": r.normal(size=cfg.proprio_dim).astype(np.float32),
        "instruction": r.normal(size=384).astype(np.float32),
    }


def test_checkpoint_roundtrip_is_exact(ckpt, tiny_cfg):
    m, header = load_model(ckpt.parent)  # the run folder works too
    assert header["step"] == 7 and header["config"]["views"] == list(tiny_cfg.views)
    assert header["normalizer"]["action"]["mean"][0] == pytest.approx(m.action_norm.mean[0].item())
    ref = WallWM(tiny_cfg)
    ref.load_state_dict(m.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), m.state_dict().values()))


def test_policy_act_shapes_and_length(ckpt, tiny_cfg, rig):
    pol = Policy.from_checkpoint(ckpt)
    obs = obs_for(tiny_cfg)
    obs["cam_poses"] = np.stack([c.T_base_cam for c in rig.cameras])
    out = pol.act(obs)
    L, A = tiny_cfg.horizon, tiny_cfg.action_dim
    assert out["actions"].shape == (L, A) and out["actions"].dtype == np.float32
    assert out["end_prob"].shape == (L,)
    assert 1 <= out["length"] <= L and out["chunk"].shape == (out["length"], A)
    # the same policy seed gives the same actions (noise comes from the policy's generator)
    assert np.array_equal(Policy.from_checkpoint(ckpt).act(obs)["actions"], out["actions"])


def test_end_rule_decides_done_and_length(ckpt, tiny_cfg):
    from wallwm_edge.events.end_rule import EndRule

    obs = obs_for(tiny_cfg)
    p = Policy.from_checkpoint(ckpt).act(obs)["end_prob"]  # same seed -> same noise -> same p_end below
    lo = Policy.from_checkpoint(ckpt, end_rule=EndRule(float(p[0]) * 0.5, float(p[0]) * 0.5)).act(obs)
    hi = Policy.from_checkpoint(ckpt, end_rule=EndRule(float(np.nextafter(p.max(), 1.0)), float(np.nextafter(p.max(), 1.0)),
                                                        max_exec=tiny_cfg.horizon)).act(obs)
    assert np.array_equal(lo["end_prob"], p) and np.array_equal(hi["end_prob"], p)
    assert lo["done"] and lo["length"] == 1 and len(lo["chunk"]) == 1  # p_end[0] already exceeds it: over
    assert not hi["done"] and hi["length"] == tiny_cfg.horizon  # never exceeded: the whole horizon runs
    capped = Policy.from_checkpoint(ckpt, end_rule=EndRule(0.99, 0.99, max_exec=3)).act(obs)
    assert capped["length"] == 3  # at most max_exec steps before the next observation
    pol = Policy.from_checkpoint(ckpt)
    pol.reseed(5)
    a = pol.act(obs)["actions"]
    pol.reseed(5)
    assert np.array_equal(pol.act(obs)["actions"], a)  # reseeding restarts the noise: paired evaluation


def test_policy_errors_name_both_values(ckpt, tiny_cfg, rig):
    pol = Policy.from_checkpoint(ckpt)
    obs = obs_for(tiny_cfg)
    with pytest.raises(ConfigError, match="instruction embedding has size 100, the checkpoint expects 384"):
        pol.act({**obs, "instruction": np.zeros(100)})
    with pytest.raises(ConfigError, match="expects 3 views .* obs images have 2 views"):
        pol.act({**obs, "images": obs["images"][:2]})
    with pytest.raises(ConfigError, match="proprio dim 4, obs proprio has 7"):
        pol.act({**obs, "proprio": np.zeros(7)})
    two = Rig(rig.cameras[:2])
    with pytest.raises(ConfigError, match=r"missing camera\(s\) \['gripper'\].*rig has \['corner', 'top'\]"):
        Policy.from_checkpoint(ckpt, rig=two)
    with pytest.raises(ConfigError, match="action dim 4, dataset has action dim 6"):
        read_cfg = load_model(ckpt)[0].cfg
        read_cfg.check_data(action_dim=6, where="dataset")
    with pytest.raises(ConfigError, match="expects 3 views .*dataset has 2 views"):
        read_cfg.check_data(views=["corner", "top"], where="dataset")


def test_sightcone_cache_static_and_wrist(rig, tiny_cfg):
    cone = SightCone(rig, tiny_cfg.views, tiny_cfg.patch, tiny_cfg.near, tiny_cfg.far, tiny_cfg.image_size)
    poses = np.stack([c.T_base_cam for c in rig.cameras])
    m0 = cone.view_mask(poses)
    assert m0.shape == (tiny_cfg.view_tokens, tiny_cfg.view_tokens) and m0.dtype == bool
    assert np.array_equal(cone.view_mask(poses), m0) and cone.computed == 1
    moved = poses.copy()
    moved[2, :3, 3] += [0.0, 0.0, 0.2]  # the wrist camera moved
    cone.view_mask(moved)
    assert cone.computed == 2
    np.testing.assert_array_equal(m0[:4, :4], np.ones((4, 4), bool))  # same-view pairs always allowed


def test_autoencoder_fit_reconstructs_and_patch_order_is_view_major():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (2, 3, 32, 32, 3), generator=g, dtype=torch.uint8)
    p = patchify(imgs, 16)
    assert p.shape == (2, 12, 768)
    assert torch.allclose(p[0, 4 + 1].reshape(16, 16, 3), imgs[0, 1, :16, 16:].float() / 255)  # view 1, row 0, col 1
    assert torch.allclose(unpatchify(p, 3, (32, 32), 16), imgs.float() / 255)
    # low-rank images: a PCA with enough components reconstructs them
    base = torch.rand(5, 768, generator=g)
    coef = torch.rand(400, 5, generator=g)
    ae = PatchAutoencoder(16, 8)
    ev = ae.fit((coef @ base / 5).numpy())
    assert ev > 0.999
    x = (coef[:12] @ base / 5).reshape(1, 12, 768)
    z = ((x - ae.mean) @ ae.components.T) / ae.scale
    rec = (z * ae.scale) @ ae.components + ae.mean
    assert torch.allclose(rec, x, atol=1e-4)
