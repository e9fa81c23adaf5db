"""Quantization of the real model (tiny preset): int8 QDQ calibrated on dataset batches and float16, both
run in real onnxruntime, both gated; the action boundary stays float; a perturbed model fails its gate."""

import copy

import numpy as np
import onnx
import pytest
import torch

from wallwm_edge.cli import main
from wallwm_edge.errors import ConfigError
from wallwm_edge.export import onnx_export, parity
from wallwm_edge.export import student as st
from wallwm_edge.export.sidecar import read_sidecar
from wallwm_edge.model.boundary import ACTION_BOUNDARY
from wallwm_edge.model.checkpoint import save_model
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.model.presets import resolve
from wallwm_edge.export.quantize import quantize_variants, variant_path
from wallwm_edge.train.samples import SampleSource, hash_embedder

VIEWS = ("corner", "top", "gripper")


@pytest.fixture(scope="module")
def exported(synthetic_dataset, tmp_path_factory):
    """A tiny checkpoint on the synthetic dataset (non-zero weights, fitted normalizers), exported and
    quantized with `wallwm-edge export ... --precisions fp32,fp16,int8`."""
    from wallwm_edge.data.dataset import Dataset

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = resolve("tiny", views=VIEWS, image_size=(32, 32), action_dim=4, proprio_dim=4)
    model = WallWM(cfg)
    source = SampleSource(Dataset.open(synthetic_dataset), cfg, hash_embedder(), "subtask", None, False)
    acts, prop = source.action_proprio_arrays()
    model.action_norm.fit(acts)
    model.proprio_norm.fit(prop)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
    d = tmp_path_factory.mktemp("quant")
    save_model(d / "model.safetensors", model, {"step": 0, "rig": source.episodes[0].rig.to_json()})
    rc = main(["export", str(d), "--out", str(d / "onnx"), "--data", str(synthetic_dataset), "--graphs", "sample",
               "--precisions", "fp32,fp16,int8", "--exporter", "torchscript", "--text-encoder", "hash",
               "--gate-samples", "8", "--calib-samples", "16"])
    assert rc == 0
    return model.eval(), d, d / "onnx" / "student.sample.onnx", source


def test_every_variant_written_gated_and_smaller(exported):
    model, _, fp32, _ = exported
    sizes = {}
    for precision in ("fp32", "fp16", "int8"):
        path = variant_path(fp32, precision)
        rec = read_sidecar(path)
        assert rec["precision"] == precision and rec["kind"] == "sample" and rec["text_encoder"] == "hash"
        assert all(r["passed"] for r in rec["parity"])
        assert rec["captions"] and len(next(iter(rec["captions"].values()))) == 384
        sizes[precision] = path.stat().st_size
    assert sizes["int8"] < sizes["fp32"] and sizes["fp16"] < sizes["fp32"]


def test_int8_runs_in_onnxruntime_within_its_gate_on_fresh_dataset_inputs(exported):
    model, _, fp32, source = exported
    int8 = variant_path(fp32, "int8")
    feeds = st.dataset_feeds(model.cfg, source, 8, 4, seed=999, kind="sample")  # not the calibration seed
    rep = parity.enforce(st.check_parity(model, "sample", int8, feeds, 2, "int8"))
    assert rep.cosine >= 0.98 and rep.nonfinite == 0
    out = onnx_export.run(onnx_export.session(int8), feeds[0])
    assert out["actions"].shape == (4, model.cfg.horizon, 4) and np.isfinite(out["end_prob"]).all()


def test_action_boundary_stays_float_in_int8(exported):
    _, _, fp32, _ = exported
    g = onnx.load(str(variant_path(fp32, "int8")))
    produced_by = {o: n for n in g.graph.node for o in n.output}
    quantized_inputs = lambda n: [i for i in n.input if i in produced_by and produced_by[i].op_type == "DequantizeLinear"]  # noqa: E731
    boundary = set(onnx_export.nodes_under(g, ACTION_BOUNDARY))
    matmuls = [n for n in g.graph.node if n.op_type in ("MatMul", "Gemm")]
    assert any(quantized_inputs(n) for n in matmuls if n.name not in boundary)  # the trunk is int8
    for n in matmuls:
        if n.name in boundary:
            assert not quantized_inputs(n), f"{n.name} at the action boundary was quantized"


def test_quantize_cli_reports_size_and_accuracy(exported, synthetic_dataset, capsys):
    _, d, fp32, _ = exported
    rc = main(["quantize", str(d), "--onnx", str(fp32), "--data", str(synthetic_dataset), "--precisions", "int8",
               "--calib-samples", "8", "--gate-samples", "8"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "int8" in out and "size MB" in out and "student.sample.int8.onnx" in out
    rc = main(["quantize", str(d), "--onnx", str(fp32), "--data", str(synthetic_dataset), "--keep", "no_such_module"])
    assert rc == 2 and "none of the action-boundary modules ['no_such_module']" in capsys.readouterr().err


def test_int8_gate_fails_and_removes_the_file_for_a_perturbed_model(exported, tmp_path):
    model, _, fp32, source = exported
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.action_out.bias.add_(3.0)  # every action shifted: the exported file no longer matches it
    work = tmp_path / "student.sample.onnx"
    work.write_bytes(fp32.read_bytes())
    (tmp_path / "student.sample.json").write_text(fp32.with_suffix(".json").read_text().replace(fp32.name, work.name))
    import json

    rec = json.loads((tmp_path / "student.sample.json").read_text())
    from wallwm_edge.export.sidecar import file_sha256

    rec["sha256"] = file_sha256(work)
    (tmp_path / "student.sample.json").write_text(json.dumps(rec))
    calib = st.dataset_feeds(model.cfg, source, 8, 4, seed=5, kind="sample")
    gate = st.dataset_feeds(model.cfg, source, 8, 4, seed=6, kind="sample")
    with pytest.raises(parity.ParityError, match=r"\[int8\]"):
        quantize_variants(bad, {}, work, ("int8",), calib, gate)
    assert not variant_path(work, "int8").exists()


def test_int8_without_dataset_is_refused(exported, tmp_path):
    _, d, _, _ = exported
    with pytest.raises(ConfigError, match="int8 needs calibration batches from the dataset"):
        st.export_checkpoint(d, tmp_path, precisions=("fp32", "int8"), progress=False)


def test_shared_transposed_weights_are_folded_once(tmp_path):
    """Two unrolled steps reading Transpose(W) (what the dynamo exporter writes for shared weights)
    become MatMuls on one transposed initializer, with identical outputs."""
    from onnx import TensorProto, helper, numpy_helper

    from wallwm_edge.export.quantize import fold_weight_transposes

    W = np.random.default_rng(0).normal(size=(5, 5)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["W"], ["Wt1"]), helper.make_node("MatMul", ["x", "Wt1"], ["h"]),
             helper.make_node("Transpose", ["W"], ["Wt2"]), helper.make_node("MatMul", ["h2", "Wt2"], ["y"]),
             helper.make_node("Slice", ["h", "s", "e", "a"], ["h2"])]
    consts = [numpy_helper.from_array(W, "W")] + [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("s", 0), ("e", 5), ("a", 1))]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], consts)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    x = np.random.default_rng(1).normal(size=(2, 5)).astype(np.float32)
    onnx.save(m, str(tmp_path / "a.onnx"))
    before = onnx_export.run(onnx_export.session(tmp_path / "a.onnx"), {"x": x})["y"]
    assert fold_weight_transposes(m) == 2
    assert not [n for n in m.graph.node if n.op_type == "Transpose"]
    assert [i.name for i in m.graph.initializer if i.name.startswith("W")] == ["W_T"]
    onnx.save(m, str(tmp_path / "b.onnx"))
    np.testing.assert_allclose(onnx_export.run(onnx_export.session(tmp_path / "b.onnx"), {"x": x})["y"], before, rtol=1e-6)


def test_calib_method_changes_the_calibration_and_entropy_is_refused(exported, tmp_path):
    """minmax and percentile write different activation scales (onnxruntime's entropy gave exactly the
    min-max scales, so it is not offered); onnxruntime's calibration progress prints stay quiet."""
    import contextlib
    import io

    from onnx import numpy_helper

    from wallwm_edge.export.quantize import quantize_int8

    model, _, fp32, source = exported
    calib = st.dataset_feeds(model.cfg, source, 8, 4, seed=5, kind="sample")
    scales = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for method in ("minmax", "percentile"):
            dst = tmp_path / f"{method}.onnx"
            quantize_int8(fp32, dst, calib, method=method)
            g = onnx.load(str(dst))
            scales[method] = {i.name: float(numpy_helper.to_array(i).ravel()[0]) for i in g.graph.initializer if i.name.endswith("_scale")}
    assert out.getvalue() == ""
    common = set(scales["minmax"]) & set(scales["percentile"])
    assert common and any(scales["minmax"][k] != scales["percentile"][k] for k in common)
    with pytest.raises(ConfigError, match="unknown calibration method 'entropy'"):
        quantize_int8(fp32, tmp_path / "e.onnx", calib, method="entropy")


def test_failed_int8_gate_names_the_remedy_and_export_leaves_no_partial_folder(exported, synthetic_dataset, tmp_path, capsys,
                                                                                monkeypatch):
    _, d, _, _ = exported
    monkeypatch.setitem(parity.GATES, "int8", parity.Gate("int8", cosine_min=1.01, l1_max=None))  # no int8 model can pass
    out = tmp_path / "new" / "onnx"
    rc = main(["export", str(d), "--out", str(out), "--data", str(synthetic_dataset), "--graphs", "sample,step",
               "--precisions", "fp32,int8", "--exporter", "torchscript", "--text-encoder", "hash",
               "--gate-samples", "4", "--calib-samples", "4"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "parity gate failed" in err and "[int8]" in err
    assert "--calib-samples" in err and "--calib-method minmax" in err and "--precisions fp32,fp16" in err
    assert f"nothing was written to {out}" in err
    assert list(tmp_path.iterdir()) == []  # neither OUT nor the folder made for it, nor a staging folder


def test_export_into_an_existing_folder_keeps_its_files_and_reports_final_paths(exported, tmp_path, capsys):
    import json

    _, d, _, _ = exported
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "MODEL_CARD.md").write_text("card\n")
    rc = main(["export", str(d), "--out", str(out), "--graphs", "sample", "--exporter", "torchscript", "--text-encoder", "hash",
               "--gate-samples", "4"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "student.export.json", "student.sample.json", "student.sample.onnx"]
    rep = json.loads((out / "student.export.json").read_text())
    assert rep["graphs"]["sample"][0]["file"] == str(out / "student.sample.onnx")
    assert read_sidecar(out / "student.sample.onnx")["precision"] == "fp32"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging folder left beside it
