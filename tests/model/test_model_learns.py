import torch

from wallwm_edge.model.denoiser import WallWM


def test_tiny_loss_falls_well_below_start_on_a_fixed_batch(tiny_cfg, batch_maker):
    torch.manual_seed(0)
    m = WallWM(tiny_cfg)
    b = batch_maker(tiny_cfg, B=4)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        out = m.loss(b, torch.Generator().manual_seed(0))  # same t and noise every step: a fixed problem
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])
