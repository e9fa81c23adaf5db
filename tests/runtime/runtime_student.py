"""A small student ONNX + sidecar for the runtime tests, written by the export package's own code.

The runtime tests need *a* real exported student with the shipped student's interface (the `sample`
graph and its JSON sidecar) whether or not the distilled student is in checkpoints/student. This builds
one from the `tiny` preset (random weights, a normalizer with the spread of Meta-World actions), exports
it with `wallwm_edge.export.student.export_graph` and writes the sidecar from `sidecar_info`. Caption
embeddings are random unit vectors (loading the sentence encoder takes ~17 s; the weights are untrained,
so any fixed embedding serves). Needs torch: call it from the test process, never from the runtime
under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VIEWS = ("corner", "topview", "gripperPOV")
ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("wallwm_edge/model", "wallwm_edge/export", "tests/runtime/runtime_student.py")


def cache_dir() -> Path:
    """~/.cache/wallwm-edge/test-students/<hash of the model, exporter and this file>."""
    import hashlib
    import os

    h = hashlib.sha256()
    for src in SOURCES:
        p = ROOT / src
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(ROOT).as_posix().encode() + f.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wallwm-edge" / "test-students"
    return base / h.hexdigest()[:16]


def export_tiny_student(out_dir: Path, mode: str = "event", image_size=(96, 96), seed: int = 0, end_bias: float = -4.0) -> Path:
    """Write out_dir/student.{sample,step}.onnx + .json; returns the sample .onnx path (reused if there).

    end_bias sets the termination head's bias: -4 makes the untrained policy rarely signal an event's
    end, so runs last as many chunks as a test asks for (the planner's cap moves events along).
    """
    import torch

    from wallwm_edge.events.vocab import TASKS, caption
    from wallwm_edge.export.sidecar import write_sidecar
    from wallwm_edge.export.student import export_graph, sidecar_info
    from wallwm_edge.model.denoiser import WallWM
    from wallwm_edge.model.presets import resolve
    from wallwm_edge.runtime.planner import registry_catalog

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "student.sample.onnx"
    if onnx_path.is_file() and onnx_path.with_suffix(".json").is_file():
        return onnx_path
    torch.manual_seed(seed)
    cfg = resolve("tiny", views=VIEWS, image_size=tuple(image_size), action_dim=4, proprio_dim=4, mode=mode)
    model = WallWM(cfg).eval()
    with torch.no_grad():
        model.action_norm.std.copy_(torch.tensor([0.3, 0.3, 0.3, 0.8]))
        model.end_head.bias.fill_(end_bias)
        for layer in model.layers:  # adaLN-zero makes a fresh model the identity; open the gates a little so
            for tower in (layer.video, layer.action):  # tokens interact (inpainting must change the other rows)
                torch.nn.init.normal_(tower.ada.weight, std=0.05)
                torch.nn.init.normal_(tower.ada.bias, std=0.5)
    export_graph(model, "sample", onnx_path, cfg.flow_steps, exporter="torchscript")  # 10-20x faster here
    rng = np.random.default_rng(seed)
    texts = sorted({e.caption for e in registry_catalog().values()} | {caption(f"task:{t}").text for t in TASKS})
    table = {t: v / np.linalg.norm(v) for t, v in zip(texts, rng.standard_normal((len(texts), 384)))}
    step_path = out_dir / "student.step.onnx"  # the step graph: real-time chunking inpaints with it
    export_graph(model, "step", step_path, cfg.flow_steps, exporter="torchscript")
    step_info = sidecar_info(model, {}, "step", cfg.flow_steps, "fp32", table, [])
    write_sidecar(step_path, step_info)
    info = sidecar_info(model, {}, "sample", cfg.flow_steps, "fp32", table, [])
    info["text_encoder"] = "random (runtime tests)"
    write_sidecar(onnx_path, info)  # last: a sample sidecar exists only beside a complete export
    return onnx_path


def cached_tiny_student(mode: str = "event") -> Path:
    """The tiny export in cache_dir(), built in a private folder and renamed into place (atomic: a
    concurrent test run never sees half an export)."""
    import os
    import shutil
    import tempfile

    final = cache_dir() if mode == "event" else cache_dir().with_name(cache_dir().name + f"-{mode}")
    if (final / "student.sample.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    export_tiny_student(tmp, mode=mode)
    try:
        os.rename(tmp, final)
    except OSError:  # another run got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return final


if __name__ == "__main__":
    import sys

    print(export_tiny_student(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/wallwm-tiny-student")))
