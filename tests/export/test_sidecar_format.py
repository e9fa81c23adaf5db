"""The sidecar stays readable and diffable, and its caption table no longer outweighs the ONNX."""

import json

import numpy as np

from wallwm_edge.export.sidecar import read_sidecar, write_sidecar


def test_caption_rows_are_one_line_each_and_round_trip(tmp_path):
    onnx = tmp_path / "m.sample.onnx"
    onnx.write_bytes(b"not really onnx")
    rng = np.random.default_rng(0)
    captions = {f"caption {i}": np.round(rng.normal(0, 0.05, 384), 5).tolist() for i in range(50)}
    info = {"kind": "sample", "precision": "fp32", "inputs": [{"name": "images", "shape": ["batch", 3]}],
            "outputs": [{"name": "actions", "shape": ["batch", 8, 4]}], "preset": "tiny", "steps": 2, "views": ["a"],
            "image_size": [32, 32], "patch": 16, "L_max": 8, "action_dim": 4, "proprio_dim": 4, "text_dim": 384, "mode": "event",
            "normalizer": {"action": {"mean": [0.0] * 4, "std": [1.0] * 4}}, "captions": captions}
    path = write_sidecar(onnx, info)
    rec = read_sidecar(path)
    assert rec["captions"] == captions and rec["inputs"] == info["inputs"] and rec["steps"] == 2
    text = path.read_text()
    assert len([line for line in text.splitlines() if line.startswith('  "caption ')]) == 50  # one line per caption
    assert '\n "steps": 2,' in text  # the rest stays indented, one field per line
    assert len(text) < 0.75 * len(json.dumps(json.loads(text), indent=1))
