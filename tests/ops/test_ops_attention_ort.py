"""`wallwm.BlockSparseAttention` as an onnxruntime custom op (csrc/ort_ops.cpp): the `_C` kernel inside a real
onnxruntime session against the float64 reference, and the op's standard-op body (the fallback) against the same.

Seeds are fixed: these tests are deterministic. Tolerance: 2e-5 absolute (float32 attention over <= 130 keys of
unit-normal inputs; the kernel's own tests hold it to 2x PyTorch's float32 error, about 1e-6 here).
"""

import numpy as np
import pytest

from wallwm_edge.ops.attention import attention_reference_np

onnx = pytest.importorskip("onnx", reason="onnx is not installed (extra 'export')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from onnx import TensorProto, helper  # noqa: E402

from wallwm_edge.export import attention_op  # noqa: E402

ATOL = 2e-5
needs_op = pytest.mark.skipif(attention_op.library()[0] is None, reason=f"no op library: {attention_op.library()[1]}")


def _model(B, H, S, D, mask_shape, scale=None, with_function=True):
    attrs = {"block": 16, "scale": float(1 / np.sqrt(D) if scale is None else scale)}  # the body needs the scale
    node = helper.make_node(attention_op.OP, ["q", "k", "v", "mask"], ["out"], domain=attention_op.DOMAIN, **attrs)
    # Dynamic axes everywhere, as in the exported student: onnxruntime then leaves every shape check to the op.
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", "H", "S", "D"]) for n in "qkv"]
    ins.append(helper.make_tensor_value_info("mask", TensorProto.BOOL, [f"m{i}" for i in range(len(mask_shape))]))
    graph = helper.make_graph([node], "attention", ins, [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", "H", "S", "D"])])
    fns = [attention_op.function_proto(18)] if with_function else []
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(attention_op.DOMAIN, 1)],
                              functions=fns)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _session(model_bytes, with_op: bool, profile: str | None = None):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile
    assert attention_op.register(opts, with_op) == with_op
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def _inputs(B, H, S, D, mask_shape, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((B, H, S, D)).astype(np.float32) for _ in range(3))
    mask = rng.random(mask_shape) < 0.35
    flat = mask.reshape(-1, S, S)
    flat[0, 3] = False  # a query that sees no key: zeros
    flat[-1, :, 5] = False  # a key nobody sees
    flat[-1, 7] = True  # a query that sees everything
    return q, k, v, mask


def _reference(q, k, v, mask, scale=None):
    B, S = q.shape[0], q.shape[2]
    m = mask.reshape(-1, S, S)
    return np.stack([attention_reference_np(q[b:b + 1], k[b:b + 1], v[b:b + 1], m[b if len(m) > 1 else 0], scale)[0]
                     for b in range(B)])


CASES = [  # (B, H, S, D, mask shape): the student's per-sample (B, 1, S, S); one shared (S, S) or (1, 1, S, S); odd sizes
    (2, 4, 114, 24, (2, 1, 114, 114)),
    (3, 2, 37, 16, (1, 1, 37, 37)),
    (2, 3, 45, 7, (45, 45)),
    (1, 1, 130, 48, (1, 1, 130, 130)),
]


@needs_op
@pytest.mark.parametrize("case", CASES)
def test_op_matches_reference(case):
    B, H, S, D, ms = case
    q, k, v, mask = _inputs(B, H, S, D, ms, seed=11)
    out = _session(_model(B, H, S, D, ms), True).run(None, {"q": q, "k": k, "v": v, "mask": mask})[0]
    ref = _reference(q, k, v, mask)
    assert np.abs(out - ref).max() <= ATOL
    assert np.all(out.reshape(B, H, S, D)[0, :, 3] == 0)  # the query that sees nothing gives exact zeros


@pytest.mark.parametrize("case", CASES)
def test_standard_body_matches_reference(case):
    """Without the op library, onnxruntime inlines the node's function: the standard-op fallback."""
    B, H, S, D, ms = case
    q, k, v, mask = _inputs(B, H, S, D, ms, seed=12)
    out = _session(_model(B, H, S, D, ms), False).run(None, {"q": q, "k": k, "v": v, "mask": mask})[0]
    assert np.abs(out - _reference(q, k, v, mask)).max() <= ATOL
    assert np.all(out[0, :, 3] == 0)


@needs_op
def test_scale_attribute_used_by_op_and_body():
    B, H, S, D, ms = 1, 2, 40, 8, (1, 1, 40, 40)
    q, k, v, mask = _inputs(B, H, S, D, ms, seed=13)
    ref = _reference(q, k, v, mask, scale=0.7)
    for with_op in (True, False):
        out = _session(_model(B, H, S, D, ms, scale=0.7), with_op).run(None, {"q": q, "k": k, "v": v, "mask": mask})[0]
        assert np.abs(out - ref).max() <= ATOL, with_op


@needs_op
def test_op_really_runs_when_registered(tmp_path):
    """The profile names the kernel onnxruntime ran: our op's node, not the inlined MatMul/Softmax body."""
    B, H, S, D, ms = 1, 2, 40, 8, (1, 1, 40, 40)
    q, k, v, mask = _inputs(B, H, S, D, ms, seed=14)
    ran = {}
    for with_op in (True, False):
        sess = _session(_model(B, H, S, D, ms), with_op, profile=str(tmp_path / f"p{int(with_op)}"))
        sess.run(None, {"q": q, "k": k, "v": v, "mask": mask})
        ran[with_op] = _ops_in_profile(sess.end_profiling())
    assert attention_op.OP in ran[True] and "Softmax" not in ran[True]
    assert attention_op.OP not in ran[False] and "Softmax" in ran[False]


def _ops_in_profile(path) -> set[str]:
    import json

    return {e.get("args", {}).get("op_name") for e in json.load(open(path)) if e.get("cat") == "Node"}


@needs_op
def test_op_refuses_wrong_shapes_in_one_line():
    B, H, S, D = 1, 2, 20, 8
    sess = _session(_model(B, H, S, D, (1, 1, S, S), with_function=False), True)
    q, k, v, _ = _inputs(B, H, S, D, (1, 1, S, S), seed=15)
    for bad in ((1, 1, S, S - 1), (1, 2, S, S), (3, 1, S, S)):  # wrong keys, per-head, wrong batch
        with pytest.raises(Exception, match=r"wallwm.BlockSparseAttention: mask: expected \(B, 1, S, S\)"):
            sess.run(None, {"q": q, "k": k, "v": v, "mask": np.ones(bad, bool)})
    with pytest.raises(Exception, match="k, v: expected the shape of q"):
        sess.run(None, {"q": q, "k": k[:, :1], "v": v, "mask": np.ones((1, 1, S, S), bool)})


def test_register_is_refused_when_disabled(monkeypatch):
    monkeypatch.setenv("WALLWM_ORT_OPS", "0")
    assert attention_op.register(ort.SessionOptions()) is False


@needs_op
def test_op_gives_the_same_bits_on_any_session_thread_count():
    """(sample, head) pairs are tasks of the session's intra-op pool; each is computed the same way on any thread."""
    B, H, S, D, ms = 3, 4, 114, 24, (3, 1, 114, 114)
    q, k, v, mask = _inputs(B, H, S, D, ms, seed=16)
    outs = []
    for threads in (1, 2, 3):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        assert attention_op.register(opts)
        sess = ort.InferenceSession(_model(B, H, S, D, ms), opts, providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {"q": q, "k": k, "v": v, "mask": mask})[0])
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    assert np.abs(outs[0] - _reference(q, k, v, mask)).max() <= ATOL
