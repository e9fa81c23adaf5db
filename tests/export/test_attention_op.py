"""The shipped student (checkpoints/student) with its attentions fused into `wallwm.BlockSparseAttention` nodes
(export/attention_op.py): with `_C`'s op registered, and with the op unavailable (the node's standard-op body),
its outputs match the standard graph it came from. Real onnxruntime sessions, fixed seeds, no timing.

Tolerances (all outputs: actions, end_prob / v_video, v_action, end_logit):
  op registered   max |diff| <= 1e-4  (a different float32 summation order in 3 attention layers; ~7e-6 measured)
  standard body   max |diff| <= 1e-5  (the same ops as the standard graph; 0 measured)
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (extra 'export')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from wallwm_edge.export import attention_op, onnx_export  # noqa: E402
from wallwm_edge.export.student import random_feeds  # noqa: E402

STUDENT = Path(__file__).resolve().parents[2] / "checkpoints" / "student"
OP_TOL, BODY_TOL = 1e-4, 1e-5
needs_student = pytest.mark.skipif(not (STUDENT / "student.sample.onnx").is_file(), reason=f"no shipped student at {STUDENT}")
needs_op = pytest.mark.skipif(attention_op.library()[0] is None, reason=f"no op library: {attention_op.library()[1]}")


def _cfg(side: dict) -> SimpleNamespace:
    """What random_feeds reads from a model config, from the sidecar (torch-free)."""
    return SimpleNamespace(num_views=len(side["views"]), image_size=tuple(side["image_size"]), view_tokens=side["view_tokens"],
                           instruction_dim=side["text_dim"], proprio_dim=side["proprio_dim"], n_future=side["n_future"],
                           latent_dim=side["latent_dim"], horizon=side["L_max"], action_dim=side["action_dim"])


def _rig_mask(side: dict) -> np.ndarray:
    """The real sight-cone mask of the student's rig (static poses), as the runtime computes it."""
    from wallwm_edge.calibration.rig import Rig
    from wallwm_edge.runtime.masks import MaskProvider

    cfg = side["config"]
    return MaskProvider(Rig.from_json(side["rig"]), side["views"], cfg["patch"], cfg["near"], cfg["far"], side["image_size"]).view_mask()


def _feeds(graph: str) -> list[dict[str, np.ndarray]]:
    """Random inputs with random masks (empty rows, an all-empty sample), and the same with the rig's real mask."""
    kind = graph.split(".")[0]
    side = json.loads((STUDENT / f"student.{graph}.json").read_text())
    cfg = _cfg(side)
    feeds = [random_feeds(cfg, 4, seed, kind) for seed in (0, 1)]
    real = random_feeds(cfg, 2, 2, kind)
    real["view_mask"] = np.broadcast_to(_rig_mask(side), real["view_mask"].shape).copy()
    return feeds + [real]


GRAPHS = ("sample", "step", "sample.int8")  # the shipped files student.GRAPH.onnx (int8: attention stays float32)


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    """{graph: fused copy of the shipped file}; the fusion runs once per file."""
    d = tmp_path_factory.mktemp("fused")
    out = {}
    for graph in GRAPHS:
        n = attention_op.fuse_file(STUDENT / f"student.{graph}.onnx", d / f"student.{graph}.onnx")
        out[graph] = (d / f"student.{graph}.onnx", n)
    return out


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(np.asarray(a[k], np.float64) - b[k]).max()) for k in a)


def _run_all(path, feeds, custom_ops: bool) -> list[dict]:
    sess = onnx_export.session(path, threads=1, custom_ops=custom_ops)
    return [onnx_export.run(sess, f) for f in feeds]


@needs_student
@pytest.mark.parametrize("graph", GRAPHS)
def test_every_attention_is_fused(fused, graph):
    side = json.loads((STUDENT / f"student.{graph}.json").read_text())
    path, n = fused[graph]
    model = onnx.load(str(path))
    depth = side["config"]["depth"]
    assert n == attention_op.count_nodes(model) == depth * (side["steps"] if side["kind"] == "sample" else 1)
    assert not any(node.op_type == "Softmax" for node in model.graph.node)  # no attention left in the main graph
    assert [f.name for f in model.functions] == [attention_op.OP]


@needs_student
@needs_op
@pytest.mark.parametrize("graph", GRAPHS)
def test_op_matches_standard_graph(fused, graph):
    feeds = _feeds(graph)
    ref = _run_all(STUDENT / f"student.{graph}.onnx", feeds, custom_ops=False)
    got = _run_all(fused[graph][0], feeds, custom_ops=True)
    assert max(_max_diff(r, g) for r, g in zip(ref, got)) <= OP_TOL
    assert all(np.isfinite(v).all() for g in got for v in g.values())


@needs_student
@pytest.mark.parametrize("graph", GRAPHS)
def test_standard_body_matches_standard_graph(fused, graph):
    feeds = _feeds(graph)
    ref = _run_all(STUDENT / f"student.{graph}.onnx", feeds, custom_ops=False)
    got = _run_all(fused[graph][0], feeds, custom_ops=False)
    assert max(_max_diff(r, g) for r, g in zip(ref, got)) <= BODY_TOL


@needs_student
@needs_op
def test_session_runs_the_op_when_it_loads(fused, tmp_path):
    """onnxruntime's profile names the kernels it ran: our node with the op, the body's Softmax without."""
    import onnxruntime as ort

    feeds = _feeds("sample")[:1]
    ran = {}
    for with_op in (True, False):
        opts = ort.SessionOptions()
        opts.enable_profiling, opts.profile_file_prefix, opts.intra_op_num_threads = True, str(tmp_path / f"p{with_op}"), 1
        assert attention_op.register(opts, with_op) == with_op
        sess = ort.InferenceSession(str(fused["sample"][0]), opts, providers=["CPUExecutionProvider"])
        onnx_export.run(sess, feeds[0])
        events = json.loads(Path(sess.end_profiling()).read_text())
        ran[with_op] = {e.get("args", {}).get("op_name") for e in events if e.get("cat") == "Node"}
    assert attention_op.OP in ran[True] and "Softmax" not in ran[True]
    assert attention_op.OP not in ran[False] and "Softmax" in ran[False]


@needs_student
def test_fused_student_runs_where_the_op_cannot_load(fused, tmp_path):
    """A process whose `_C` cannot be imported (as on a plain source checkout) runs the fused file's standard body."""
    feeds = _feeds("sample")
    ref = _run_all(STUDENT / "student.sample.onnx", feeds, custom_ops=False)
    np.savez(tmp_path / "feeds.npz", **{f"{i}:{k}": v for i, f in enumerate(feeds) for k, v in f.items()})
    script = f"""
import sys
sys.modules["wallwm_edge._C"] = None  # `from wallwm_edge import _C` raises ImportError: no op library
import numpy as np
from wallwm_edge.export import attention_op, onnx_export
assert attention_op.library()[0] is None, attention_op.library()
z = np.load({str(tmp_path / 'feeds.npz')!r})
feeds = {{}}
for key in z.files:
    i, k = key.split(":")
    feeds.setdefault(int(i), {{}})[k] = z[key]
sess = onnx_export.session({str(fused['sample'][0])!r}, threads=1)
outs = [onnx_export.run(sess, feeds[i]) for i in sorted(feeds)]
np.savez({str(tmp_path / 'out.npz')!r}, **{{f"{{i}}:{{k}}": v for i, o in enumerate(outs) for k, v in o.items()}})
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    z = np.load(tmp_path / "out.npz")
    got = [{k: z[f"{i}:{k}"] for k in r} for i, r in enumerate(ref)]
    assert max(_max_diff(r, g) for r, g in zip(ref, got)) <= BODY_TOL


@needs_student
def test_fuse_export_rewrites_the_sidecar_and_the_runtime_loads_it(tmp_path):
    """fuse_export in place on a copy of the shipped student: gated, sidecar renewed, the runtime's Student runs it."""
    from wallwm_edge.export.sidecar import read_sidecar
    from wallwm_edge.runtime.engine import Student

    d = tmp_path / "student"
    d.mkdir()
    for name in ("student.sample.onnx", "student.sample.json"):
        shutil.copy(STUDENT / name, d / name)
    info = attention_op.fuse_export(d / "student.sample.onnx", _feeds("sample"))
    assert info["nodes"] == attention_op.count_nodes(onnx.load(str(d / "student.sample.onnx"))) > 0
    assert all(r["passed"] for r in info["parity"])
    assert len(info["parity"]) == (2 if attention_op.library()[0] else 1)
    record = read_sidecar(d / "student.sample.onnx")  # the sha256 matches the rewritten file
    assert record["attention_op"]["nodes"] == info["nodes"]
    assert attention_op.fuse_export(d / "student.sample.onnx", _feeds("sample"))["nodes"] == info["nodes"]  # idempotent

    feeds = _feeds("sample")[2]
    fused_out = Student.load(d, threads=1).engine.run({k: v[:1] for k, v in feeds.items()})
    plain_out = Student.load(STUDENT, precision="fp32", threads=1).engine.run({k: v[:1] for k, v in feeds.items()})
    assert _max_diff(plain_out, fused_out) <= OP_TOL


@needs_student
def test_float16_graph_is_left_alone(tmp_path):
    """The kernel is float32: a float16 student keeps its standard attention (0 fused, file unchanged)."""
    from wallwm_edge.export.quantize import convert_fp16

    convert_fp16(STUDENT / "student.sample.onnx", tmp_path / "fp16.onnx")
    model = onnx.load(str(tmp_path / "fp16.onnx"))
    out, n = attention_op.fuse(model)
    assert n == 0 and out == model


def test_graph_without_attention_is_left_alone():
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    out, n = attention_op.fuse(model)
    assert n == 0 and out == model


@needs_student
@pytest.mark.slow
def test_export_checkpoint_writes_the_fused_student(tmp_path):
    """`export --attention-op` on the real student checkpoint: the written graph has the nodes, gated both ways."""
    pytest.importorskip("torch", reason="export needs torch (extra 'train')")
    from wallwm_edge.export.sidecar import read_sidecar
    from wallwm_edge.export.student import export_checkpoint

    report = export_checkpoint(STUDENT / "model.safetensors", tmp_path / "out", graphs=("sample",), gate_samples=4, batch=2,
                               progress=False, attention_op=True)
    row = report["graphs"]["sample"][0]
    assert row["attention_op"]["nodes"] > 0 and all(r["passed"] for r in row["attention_op"]["parity"])
    path = tmp_path / "out" / "student.sample.onnx"
    assert attention_op.count_nodes(onnx.load(str(path))) == row["attention_op"]["nodes"]
    assert read_sidecar(path)["attention_op"]["nodes"] == row["attention_op"]["nodes"]


def test_fuses_both_exporters_graphs(exported_tiny):
    """TorchScript (sample graph) and dynamo (step graph) exports of a tiny model: every attention fused (TorchScript
    needs measured shapes: `feeds`), outputs as the standard graph's with the op and with the body."""
    model, sample, step = exported_tiny
    cfg = model.cfg
    for kind, path in (("sample", sample), ("step", step)):
        feeds = [random_feeds(cfg, 3, seed, kind) for seed in (5, 6)]
        fused, n = attention_op.fuse(onnx.load(str(path)), feeds=feeds[0])
        assert n == attention_op.count_nodes(fused) == cfg.depth * (2 if kind == "sample" else 1), kind  # exported with 2 steps
        out = path.with_name(path.stem + ".fused.onnx")
        onnx.save(fused, str(out))
        ref = _run_all(path, feeds, custom_ops=False)
        for with_op, tol in ((True, OP_TOL), (False, BODY_TOL)):
            if with_op and attention_op.library()[0] is None:
                continue
            got = _run_all(out, feeds, custom_ops=with_op)
            assert max(_max_diff(r, g) for r, g in zip(ref, got)) <= tol, (kind, with_op)
