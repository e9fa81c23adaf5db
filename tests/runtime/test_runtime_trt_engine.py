"""Engine "trt": TensorRT's own runtime on the `export --trt` engine, CuPy buffers, the denoise loop as a
CUDA graph (runtime/trt_engine.py). Here (no TensorRT, no CuPy, no GPU) the module imports, the registry
and the CLI list it, and choosing it says in one line what is missing and what to use instead. The
cuda-marked tests (benchmarks/gpu_check.py runs every cuda-marked test) build a tiny engine from the test
student's graphs and hold it to onnxruntime: one call of each graph, and the on-device denoise loop (CUDA
graph replay) against the runtime's numpy loop."""

import importlib
import sys

import numpy as np
import pytest

from wallwm_edge.errors import ConfigError
from wallwm_edge.runtime import trt_engine
from wallwm_edge.runtime.engine import ENGINES, OrtEngine, Student, open_engine

missing = trt_engine.why_unavailable()
no_trt = pytest.mark.skipif(missing is None, reason="tensorrt, cupy and a CUDA GPU are all here")
needs_trt = pytest.mark.skipif(missing is not None, reason=f"needs TensorRT, CuPy and a CUDA GPU ({missing})")


def test_module_imports_without_tensorrt_or_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # None in sys.modules: `import tensorrt` raises ImportError
    monkeypatch.setitem(sys.modules, "cupy", None)
    mod = importlib.reload(trt_engine)
    assert hasattr(mod, "TensorRTEngine")
    why = mod.why_unavailable()
    assert why is not None and "tensorrt" in why and "cupy" in why
    with pytest.raises(ConfigError) as e:
        mod.TensorRTEngine("nowhere/student.sample.onnx")
    msg = str(e.value)
    assert "\n" not in msg and "tensorrt" in msg and "cupy" in msg and "--engine cpu" in msg
    monkeypatch.undo()
    importlib.reload(trt_engine)


def test_registry_and_cli_list_it():
    from wallwm_edge.runtime.cli import _add_run_args

    assert {"cpu", "tensorrt", "trt"} <= set(ENGINES)
    import argparse

    p = argparse.ArgumentParser()
    _add_run_args(p)
    assert p.parse_args(["--engine", "trt"]).engine == "trt"
    assert p.parse_args([]).engine == "cpu"  # the default is unchanged
    with pytest.raises(ConfigError, match="unknown engine"):
        open_engine("x.onnx", "nope")


@no_trt
def test_constructing_without_tensorrt_is_one_clear_line(tmp_path):
    for make in (lambda: trt_engine.TensorRTEngine(tmp_path / "student.sample.onnx"),
                 lambda: open_engine(tmp_path / "student.sample.onnx", "trt")):
        with pytest.raises(ConfigError) as e:
            make()
        msg = str(e.value)
        assert "\n" not in msg and "engine 'trt'" in msg and "missing" in msg and "--engine cpu" in msg


@no_trt
def test_loading_a_student_with_engine_trt_refuses_in_one_line(tiny_student):
    with pytest.raises(ConfigError) as e:
        Student.load(tiny_student, "trt")
    assert "\n" not in str(e.value) and "engine 'trt'" in str(e.value) and "--engine cpu" in str(e.value)


def test_find_engine_names_what_export_trt_writes(tmp_path):
    onnx = tmp_path / "student.sample.onnx"
    assert trt_engine.find_engine(onnx) is None
    (tmp_path / "student.sample.int8.orin-int8.engine").write_bytes(b"x")  # the int8 graph's, not this one's
    assert trt_engine.find_engine(onnx) is None
    mine = tmp_path / "student.sample.orin-fp16.engine"
    mine.write_bytes(b"x")
    assert trt_engine.find_engine(onnx) == mine
    assert trt_engine.find_engine(tmp_path / "student.sample.json") == mine
    assert trt_engine.find_engine(mine) == mine
    assert trt_engine.find_engine(tmp_path / "student.sample.int8.onnx").name == "student.sample.int8.orin-int8.engine"


# ---- on a GPU with TensorRT and CuPy (benchmarks/gpu_check.py) -------------------------------------------
def _build(onnx_path, tmp_path):
    from wallwm_edge.export.tensorrt import BuildProfile, build_engine

    prof = BuildProfile(name="test-fp32", precision="fp32", batch=(1, 1, 1), workspace_mb=512, builder_optimization_level=1)
    return build_engine(onnx_path, tmp_path / (onnx_path.with_suffix("").name + ".test-fp32.engine"), prof)


def _close(a, b, what):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    cos = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    err = float(np.max(np.abs(a - b)))
    assert cos >= 0.999 and err <= 5e-2 * max(1.0, float(np.max(np.abs(b)))), f"{what}: cosine {cos:.5f}, max abs err {err:.4g}"


@pytest.mark.cuda
@needs_trt
def test_trt_engine_matches_onnxruntime(tiny_student, tmp_path):
    import shutil

    from wallwm_edge.runtime.engine import find_student

    side = find_student(tiny_student)
    work = tmp_path / "student"
    shutil.copytree(side.parent, work)
    student = Student.load(work, "cpu", seed=0)
    images = np.random.default_rng(0).integers(0, 255, [int(s) for s in student.inputs["images"]["shape"][1:]], dtype=np.uint8)
    proprio = np.zeros(int(student.inputs["proprio"]["shape"][-1]), np.float32)
    feeds = student.feeds(images, proprio, student.captions.known[0], None)
    sample_onnx = work / side.with_suffix(".onnx").name
    _build(sample_onnx, work)
    trt_sample = trt_engine.TensorRTEngine(sample_onnx)
    ref = OrtEngine(sample_onnx).run(feeds)
    got = trt_sample.run(feeds)
    assert set(got) == set(ref)
    for k in ref:
        _close(got[k], ref[k], f"sample graph output {k}")

    step_onnx = sample_onnx.with_name(sample_onnx.name.replace(".sample.", ".step."))
    if not step_onnx.is_file():
        pytest.skip("the test student has no step graph")
    _build(step_onnx, work)
    trt_student = Student.load(work, "trt", seed=0)
    assert isinstance(trt_student.step_engine, trt_engine.TensorRTEngine)
    cpu_student = Student.load(work, "cpu", seed=0)
    prefix = np.zeros((3, cpu_student.action_dim), np.float32) + 0.1
    for rep in range(2):  # first call captures the CUDA graph, second replays it
        f = cpu_student.feeds(images, proprio, student.captions.known[0], None)
        want, want_end = cpu_student._inpaint(f, prefix)
        got, got_end = trt_student._inpaint(f, prefix)
        _close(got, want, f"denoise loop actions (call {rep})")
        _close(got_end, want_end, f"denoise loop end_prob (call {rep})")
        assert np.allclose(got[:3], prefix, atol=1e-4)
    print("trt denoise loop ran as a CUDA graph:", trt_student.step_engine.graph_used)
