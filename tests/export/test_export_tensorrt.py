"""The TensorRT builder: where TensorRT is missing (every CI machine) it says exactly why, as one line;
the shipped build profiles load and bad ones are refused by field."""

import json
from pathlib import Path

import pytest

from wallwm_edge.cli import main
from wallwm_edge.errors import ConfigError
from wallwm_edge.export.tensorrt import BuildProfile, TensorRTUnavailable, build_engine, load_profile, why_unavailable

PROFILES = Path(__file__).resolve().parents[2] / "export" / "profiles"
no_trt = pytest.mark.skipif(why_unavailable() is None, reason="TensorRT and a GPU are present here")


@no_trt
def test_build_says_clearly_why_it_cannot_run_here(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"not used")
    with pytest.raises(TensorRTUnavailable) as e:
        build_engine(onnx_path, tmp_path / "m.engine", BuildProfile())
    msg = str(e.value)
    assert "cannot build a TensorRT engine here" in msg and ("tensorrt" in msg.lower())
    assert "export/README.md" in msg and not (tmp_path / "m.engine").exists()


@no_trt
def test_export_cli_with_trt_fails_fast_with_one_line(tmp_path, capsys):
    rc = main(["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "o"), "--trt", str(PROFILES / "orin-int8.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "--trt: cannot build a TensorRT engine here" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["orin-fp16", "orin-int8", "orin-nano-int8"])
def test_shipped_profiles_load(name):
    prof = load_profile(PROFILES / f"{name}.json")
    assert prof.name == name and prof.batch[0] <= prof.batch[1] <= prof.batch[2]
    assert "action_out" in prof.fp32_layers_matching and "end_head" in prof.fp32_layers_matching


def test_bad_profiles_are_refused_by_field(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"name": "x", "precision": "int4"}))
    with pytest.raises(ConfigError, match="field precision"):
        load_profile(p)
    p.write_text(json.dumps({"name": "x", "batch": [4, 1, 2]}))
    with pytest.raises(ConfigError, match="field batch"):
        load_profile(p)
    p.write_text(json.dumps({"name": "x", "batchsize": 2}))
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['batchsize'\]"):
        load_profile(p)


def test_trtexec_command_from_sidecar_pins_the_action_boundary(exported_tiny, tmp_path):
    from wallwm_edge.export.sidecar import write_sidecar
    from wallwm_edge.export.student import sidecar_info
    from wallwm_edge.export.tensorrt import trtexec_command

    model, sample, _ = exported_tiny
    p = tmp_path / "s.onnx"
    p.write_bytes(sample.read_bytes())
    write_sidecar(p, sidecar_info(model, {}, "sample", 2, "int8", {}, []))
    cmd = trtexec_command(p.with_suffix(".json"), load_profile(PROFILES / "orin-int8.json"))
    V, (H, W) = model.cfg.num_views, model.cfg.image_size
    assert cmd.startswith("/usr/src/tensorrt/bin/trtexec --onnx=s.onnx --saveEngine=s.orin-int8.engine")
    assert f"--minShapes=images:1x{V}x{H}x{W}x3," in cmd and f"--maxShapes=images:2x{V}x{H}x{W}x3," in cmd
    assert "--int8" in cmd and "--fp16" in cmd and "--precisionConstraints=obey" in cmd
    assert "/action_out/" in cmd and ":fp32" in cmd and "/qkv/" not in cmd
