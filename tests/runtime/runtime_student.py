"""A small student ONNX + sidecar for the runtime tests, exported through the export package's own code.

The runtime tests must not depend on the shipped student being present or trained: they need *a*
real ONNX with the student's interface (the `sample` graph of WallWM and its JSON sidecar). This builds
one from the `tiny` preset (random weights, a normalizer with the Meta-World action scale), exports it
with `wallwm_edge.export.onnx_export.export_module` and writes the sidecar with `write_sidecar`.
Caption embeddings are random unit vectors (the encoder takes ~17 s to load; the weights are untrained
anyway, so any fixed embedding serves). Needs torch: call it from the test process, never from the
runtime under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VIEWS = ("corner", "topview", "gripperPOV")


def export_tiny_student(out_dir: Path, mode: str = "event", image_size=(96, 96), seed: int = 0) -> Path:
    """Write out_dir/student.sample.onnx + .json; returns the .onnx path (cached if already there)."""
    import torch

    from wallwm_edge.eval.closed_loop import task_catalog
    from wallwm_edge.events.vocab import TASKS, caption
    from wallwm_edge.export.onnx_export import export_module
    from wallwm_edge.export.sidecar import write_sidecar
    from wallwm_edge.model.denoiser import WallWM
    from wallwm_edge.model.presets import resolve

    out_dir = Path(out_dir)
    onnx_path = out_dir / "student.sample.onnx"
    if onnx_path.is_file() and onnx_path.with_suffix(".json").is_file():
        return onnx_path
    torch.manual_seed(seed)
    cfg = resolve("tiny", views=VIEWS, image_size=tuple(image_size), action_dim=4, proprio_dim=4, mode=mode)
    model = WallWM(cfg).eval()
    with torch.no_grad():
        model.action_norm.mean.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0]))
        model.action_norm.std.copy_(torch.tensor([0.3, 0.3, 0.3, 0.8]))
        model.end_head.bias.fill_(-0.5)  # some chunks end early, some do not: both paths get exercised

    class Sample(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, images, proprio, instruction, mask, noise_video, noise_action):
            actions, end_prob, _ = self.m.sample(images, proprio, instruction, mask, noise_video, noise_action, steps=cfg.flow_steps)
            return actions, end_prob

    V, (H, W), S = cfg.num_views, cfg.image_size, model.seq_len()
    args = (torch.zeros(1, V, H, W, 3, dtype=torch.uint8), torch.zeros(1, 4), torch.zeros(1, 384),
            torch.ones(1, S, S, dtype=torch.bool), torch.zeros(1, cfg.n_future * cfg.view_tokens, cfg.latent_dim),
            torch.zeros(1, cfg.horizon, 4))
    names = ["images", "proprio", "instruction", "mask", "noise_video", "noise_action"]
    export_module(Sample(model), args, onnx_path, names, ["actions", "end_prob"])
    rng = np.random.default_rng(seed)
    texts = {e.caption for e in task_catalog().values()} | {caption(f"task:{t}").text for t in TASKS}
    table = {}
    for t in sorted(texts):
        v = rng.standard_normal(384)
        table[t] = (v / np.linalg.norm(v)).astype(np.float32).tolist()
    shapes = {n: list(a.shape) for n, a in zip(names, args)}
    dtypes = {n: str(a.dtype).replace("torch.", "") for n, a in zip(names, args)}
    write_sidecar(onnx_path, {
        "kind": "sample", "precision": "fp32", "preset": "tiny", "config": cfg.to_json(), "steps": cfg.flow_steps,
        "inputs": [{"name": n, "shape": shapes[n], "dtype": dtypes[n]} for n in names],
        "outputs": [{"name": "actions", "shape": [1, cfg.horizon, 4], "dtype": "float32"},
                    {"name": "end_prob", "shape": [1, cfg.horizon], "dtype": "float32"}],
        "views": list(VIEWS), "image_size": list(cfg.image_size), "patch": cfg.patch, "L_max": cfg.horizon,
        "action_dim": 4, "proprio_dim": 4, "text_dim": 384, "mode": mode,
        "normalizer": {"action": model.action_norm.stats(), "proprio": model.proprio_norm.stats()},
        "captions": table, "parity": [],
    })
    return onnx_path


if __name__ == "__main__":
    import sys

    print(export_tiny_student(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/wallwm-tiny-student")))
