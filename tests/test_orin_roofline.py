"""benchmarks/orin_roofline.py: the FLOP counter on hand-built graphs, and the benchmark on the shipped student."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "orin_roofline.py"
STUDENT = REPO / "checkpoints" / "student" / "student.sample.onnx"


def _load():
    spec = importlib.util.spec_from_file_location("orin_roofline_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_batched_matmul_flops_exact():
    rf = _load()
    b, m, k, n = 3, 5, 7, 11
    model = _model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", b, m, k]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", b, k, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    c = rf.count(model)
    assert c["matmul_flops"] == 2 * b * m * n * k
    assert c["flops"] == 2 * b * m * n * k
    # bytes: both inputs read and the output written, float32, no weights
    assert c["bytes"] == 4 * (b * m * k + b * k * n + b * m * n)
    assert c["unknown_shapes"] == []


def test_gemm_flops_exact_and_weights_once():
    import numpy as np
    rf = _load()
    m, k, n = 4, 6, 9
    w = helper.make_tensor("w", TensorProto.FLOAT, [n, k], np.zeros(n * k, np.float32))
    model = _model(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    c = rf.count(model)
    assert c["matmul_flops"] == 2 * m * n * k
    assert c["flops"] == 2 * m * n * k  # no bias
    assert c["weight_bytes"] == 4 * n * k
    assert c["activation_bytes"] == 4 * (m * k + m * n)
    assert rf.count(model, float_bytes=2)["bytes"] == 2 * (n * k + m * k + m * n)


def test_roofline_bound_is_the_larger_term():
    rf = _load()
    b = rf.bound([(10**12, 1.0)], 10**9, 1.0)  # 1 s of compute, 1 s of memory
    assert b["compute_us"] == pytest.approx(1e6) and b["memory_us"] == pytest.approx(1e6)
    b = rf.bound([(10**9, 1.0)], 10**9, 1.0)
    assert b["limited_by"] == "memory" and b["bound_us"] == pytest.approx(1e6)


@pytest.mark.skipif(not STUDENT.is_file(), reason="shipped student not present")
def test_main_on_shipped_student(tmp_path, monkeypatch):
    rf = _load()
    monkeypatch.setenv("WALLWM_BENCH_RESULTS", str(tmp_path))
    t = time.perf_counter()
    assert rf.main(["--quick"]) == 0
    assert time.perf_counter() - t < 60  # ~1 s on an idle machine; slack for a loaded one
    out = list(tmp_path.glob("orin_roofline*.json"))
    assert len(out) == 1
    rec = json.loads(out[0].read_text())
    f = rec["figures"]
    assert rec["met"]["every_shape_inferred"]
    assert f["student_fp32"]["flops"] > f["student_fp32"]["matmul_flops"] > 0
    assert f["student_int8"]["weight_bytes"] < f["student_fp32"]["weight_bytes"]
    for plat in ("jetson_agx_orin_64gb", "jetson_agx_thor_t5000"):
        p = f["platforms"][plat]
        assert str(p["bandwidth_source"][0]).startswith("https://www.nvidia.com/")
        assert all(v["sparse"] is False for v in p["peaks"].values())
        for b in f["bounds_us"][plat].values():
            if "bound_us" in b:
                assert b["bound_us"] == max(b["compute_us"], b["memory_us"]) > 0
    assert f["context_published_measured"]["pi_cpp_fastwam_int8_agx_orin_ms"]["ms"] == 161.9
    assert f["context_published_measured"]["gr00t_n1_6_ms"]["ms"] == 173.0
