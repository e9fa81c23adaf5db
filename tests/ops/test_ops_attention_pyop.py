"""The other route to our attention inside onnxruntime, which benchmarks/attention_op.py measures beside the op
library: onnxruntime-extensions' Python op calling `_C.attention_forward`. Its numbers are right (so the
benchmark compares like with like), and the benchmark runs end to end. Fixed seeds; no timing asserts."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from wallwm_edge.ops import ext
from wallwm_edge.ops.attention import attention_reference_np

pytest.importorskip("onnx", reason="onnx is not installed (extra 'export')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions is not installed (extra 'ortx')")
if not ext.has("attention_forward"):
    pytest.skip("wallwm_edge._C is not built", allow_module_level=True)

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "attention_op.py"
STUDENT = Path(__file__).resolve().parents[2] / "checkpoints" / "student"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("attention_op_bench_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_python_op_matches_reference(bench):
    lib, why = bench.pyop_library()
    assert lib, why
    B, H, S, D = 2, 3, 45, 24
    model = bench._attention_node_model(B, H, S, D, 0.3, bench.CONTRIB, with_function=False)
    sess = bench._session(model, extra_library=lib)
    rng = np.random.default_rng(21)
    q, k, v = (rng.standard_normal((B, H, S, D)).astype(np.float32) for _ in range(3))
    mask = rng.random((B, 1, S, S)) < 0.4
    mask[1, 0, 4] = False  # a query that sees nothing
    out = sess.run(None, {"q": q, "k": k, "v": v, "mask": mask})[0]
    ref = np.stack([attention_reference_np(q[b:b + 1], k[b:b + 1], v[b:b + 1], mask[b, 0], 0.3)[0] for b in range(B)])
    assert np.abs(out - ref).max() <= 2e-5
    assert np.all(out[1, :, 4] == 0)


@pytest.mark.skipif(not (STUDENT / "student.sample.onnx").is_file(), reason=f"no shipped student at {STUDENT}")
def test_benchmark_runs_and_records_the_isa(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("WALLWM_BENCH_RESULTS", str(tmp_path))
    assert bench.main(["--reps", "3"]) == 0
    rec = json.loads((tmp_path / "attention_op.json").read_text())
    f = rec["figures"]
    assert f["cpu_isa"] and f["kernel_path"] and "ISA:" in rec["machine"]
    assert {"standard", "op", "fallback", "pyop"} <= set(f["chunk_ms"])
    assert f["max_abs_diff_vs_standard"]["op"] <= 1e-4 and f["max_abs_diff_vs_standard"]["fallback"] <= 1e-5
    assert f["attention_nodes"] > 0
