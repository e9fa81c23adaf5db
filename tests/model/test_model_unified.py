import torch

from wallwm_edge.model.denoiser import WallWM


def test_gradient_reaches_the_reasoners_first_layer_through_every_state(tiny_unified_cfg, batch_maker):
    m = WallWM(tiny_unified_cfg)
    # adaLN-zero makes the denoiser's blocks identity at init; open them so the test sees real coupling
    for layer in m.layers:
        for tower in (layer.video, layer.action):
            torch.nn.init.normal_(tower.ada.weight, std=0.02)
    b = batch_maker(tiny_unified_cfg)
    m.loss(b, torch.Generator().manual_seed(0))["loss"].backward()
    r = m.reasoner
    for p in (r.obs_in.weight, r.instr_in.weight, r.blocks[0].qkv.weight, r.state_in.weight, r.query):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_states_are_continuous_and_later_states_depend_on_earlier_ones(tiny_unified_cfg, batch_maker):
    m = WallWM(tiny_unified_cfg)
    b = batch_maker(tiny_unified_cfg, B=2)
    obs = m.ae.encode(b["images"])
    states = m.reasoner(obs, b["instruction"])
    assert states.shape == (2, tiny_unified_cfg.reasoning_states, tiny_unified_cfg.reasoner_width)
    assert states.dtype == torch.float32 and states.requires_grad
    # d(state 2) / d(state 1) is non-zero: the staircase feeds each state back in
    grads = torch.autograd.grad(states[:, 1].sum(), m.reasoner.state_in.weight)
    assert grads[0].abs().sum() > 0
