"""Export of the real model (tiny preset) to ONNX, run in real onnxruntime, held to the parity gates."""

import copy

import numpy as np
import onnx
import pytest
import torch

from wallwm_edge.errors import DataError
from wallwm_edge.export import onnx_export, parity
from wallwm_edge.export.sidecar import caption_embedding, read_sidecar, write_sidecar
from wallwm_edge.export.student import check_parity, eager, gate_or_remove, random_feeds, sidecar_info
from wallwm_edge.model.attention import masked_attention
from wallwm_edge.model.boundary import ACTION_BOUNDARY


def feeds(model, kind, n=2, batch=3, seed=100):
    return [random_feeds(model.cfg, batch, seed + i, kind) for i in range(n)]


def test_sample_graph_is_opset_18_with_dynamic_batch(exported_tiny):
    model, sample, _ = exported_tiny
    assert onnx_export.opset_of(onnx.load(str(sample))) >= 18
    sess = onnx_export.session(sample)
    for B in (1, 5):  # exported with batch 2
        out = onnx_export.run(sess, random_feeds(model.cfg, B, 7, "sample"))
        assert out["actions"].shape == (B, model.cfg.horizon, 4) and out["end_prob"].shape == (B, model.cfg.horizon)


def test_fp32_sample_and_step_graphs_pass_their_gates(exported_tiny):
    model, sample, step = exported_tiny
    rep = parity.enforce(check_parity(model, "sample", sample, feeds(model, "sample"), 2, "fp32"))
    assert rep.cosine > 0.9999 and rep.l1 < 1e-4
    rep = parity.enforce(check_parity(model, "step", step, feeds(model, "step"), 2, "fp32"))
    assert rep.cosine > 0.9999


def test_masked_rows_give_no_nan_in_onnxruntime(exported_tiny):
    model, sample, _ = exported_tiny
    f = random_feeds(model.cfg, 2, 3, "sample")
    f["view_mask"][:] = False  # no view token may attend to any view token
    out = onnx_export.run(onnx_export.session(sample), f)
    ref = eager(model, "sample", f, 2)
    assert all(np.isfinite(v).all() for v in out.values())
    np.testing.assert_allclose(out["actions"], ref["actions"], atol=1e-4)


def test_masked_attention_op_exports_with_zero_rows(tmp_path):
    class Attn(torch.nn.Module):
        def forward(self, q, k, v, mask):
            return masked_attention(q, k, v, mask)

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 6, 8, generator=g) for _ in range(3))
    mask = torch.rand(2, 6, 6, generator=g) < 0.5
    mask[:, 1] = False  # query 1 may attend nothing
    mask[1] = False  # the whole second sample is masked
    path = onnx_export.export_module(Attn(), (q, k, v, mask), tmp_path / "attn.onnx", ["q", "k", "v", "mask"], ["out"])
    out = onnx_export.run(onnx_export.session(path), {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "mask": mask.numpy()})["out"]
    assert np.isfinite(out).all()
    assert np.abs(out[:, :, 1]).max() == 0 and np.abs(out[1]).max() == 0
    np.testing.assert_allclose(out, Attn()(q, k, v, mask).numpy(), atol=1e-5)


def test_gate_must_fail_on_a_deliberately_perturbed_model(exported_tiny, tmp_path):
    """The ONNX of the original model, gated against a perturbed eager model: the gate must fail, raise,
    and remove the file it refused."""
    model, sample, _ = exported_tiny
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.action_out.weight.add_(torch.randn_like(bad.action_out.weight) * 0.5)
    rep = check_parity(bad, "sample", sample, feeds(model, "sample"), 2, "fp32")
    assert not rep.passed and "cosine" in rep.why
    victim = tmp_path / "refused.onnx"
    victim.write_bytes(sample.read_bytes())
    with pytest.raises(parity.ParityError, match="parity gate failed"):
        gate_or_remove(rep, victim)
    assert not victim.exists()


def test_gate_fails_on_nan_in_a_non_action_output(exported_tiny, tmp_path):
    """A NaN in end_prob alone (actions fine) must still fail: build an ONNX that poisons end_prob."""
    model, sample, _ = exported_tiny
    g = onnx.load(str(sample))
    out = g.graph.output[1].name
    nan = onnx.helper.make_tensor("nan_c", onnx.TensorProto.FLOAT, [], [float("nan")])
    g.graph.initializer.append(nan)
    for node in g.graph.node:  # rename the producer's output, then add NaN to it
        node.output[:] = [o if o != out else out + "_ok" for o in node.output]
    g.graph.node.append(onnx.helper.make_node("Add", [out + "_ok", "nan_c"], [out]))
    p = tmp_path / "poisoned.onnx"
    onnx.save(g, str(p))
    rep = check_parity(model, "sample", p, feeds(model, "sample", n=1), 2, "fp32")
    assert not rep.passed and "NaN" in rep.why


def test_sidecar_roundtrip_and_refuses_a_changed_onnx(exported_tiny, tmp_path):
    model, sample, _ = exported_tiny
    p = tmp_path / "s.onnx"
    p.write_bytes(sample.read_bytes())
    table = {"grasp the puck": np.ones(384, np.float32) / np.sqrt(384)}
    write_sidecar(p, sidecar_info(model, {"rig": None}, "sample", 2, "fp32", table, []) | {"text_encoder": "hash"})
    rec = read_sidecar(p)
    assert rec["steps"] == 2 and rec["views"] == list(model.cfg.views) and rec["L_max"] == model.cfg.horizon
    assert rec["patch"] == model.cfg.patch and rec["image_size"] == list(model.cfg.image_size) and rec["action_dim"] == 4
    assert rec["normalizer"]["action"]["std"] == pytest.approx([0.3, 0.3, 0.3, 0.8])
    assert [i["name"] for i in rec["inputs"]] == [i.name for i in onnx_export.session(p).get_inputs()]
    np.testing.assert_allclose(caption_embedding(rec, "grasp the puck"), table["grasp the puck"], atol=1e-5)  # stored at 5 decimals
    with pytest.raises(DataError, match="not in the sidecar's table"):
        caption_embedding(rec, "juggle")
    p.write_bytes(p.read_bytes() + b"\0")
    with pytest.raises(DataError, match="sha256"):
        read_sidecar(p)


def test_action_boundary_is_found_in_the_dynamo_onnx_metadata(exported_tiny):
    _, _, step = exported_tiny
    g = onnx.load(str(step))
    names = onnx_export.nodes_under(g, ACTION_BOUNDARY)
    paths = {onnx_export.module_path_of(n) for n in g.graph.node if n.name in set(names)}
    for module in ACTION_BOUNDARY:
        assert any(module in p.split(".") or p.endswith(module) for p in paths), module
    assert not any(p.startswith("layers") for p in paths)


def test_torchscript_exporter_graph_names_its_modules(exported_tiny):
    """The sample graph is exported with the legacy exporter: the boundary is found from node names."""
    model, sample, _ = exported_tiny
    g = onnx.load(str(sample))
    assert onnx_export.opset_of(g) >= 18
    kept = onnx_export.nodes_under(g, ACTION_BOUNDARY)
    assert any("action_out" in n for n in kept) and any("end_head" in n for n in kept) and any("time_mlp" in n for n in kept)
    assert not any("/qkv/" in n for n in kept)
    assert [i.name for i in g.graph.input] == ["images", "proprio", "instruction", "view_mask", "noise_video", "noise_action"]
