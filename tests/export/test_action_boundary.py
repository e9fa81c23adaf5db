"""The action boundary is named once (wallwm_edge.model.boundary) and cannot go stale: every name is a
module of the model, and every consumer (int8, float16, TensorRT profiles) defaults to that one tuple."""

import inspect
import json
from pathlib import Path

from wallwm_edge.export import quantize, student
from wallwm_edge.export.tensorrt import BuildProfile
from wallwm_edge.model.boundary import ACTION_BOUNDARY
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.model.presets import resolve

PROFILES = Path(__file__).resolve().parents[2] / "export" / "profiles"


def test_every_boundary_name_is_a_module_of_the_model():
    for mode in ("event", "unified"):
        model = WallWM(resolve("tiny", views=("corner", "top", "gripper"), image_size=(32, 32), action_dim=4, proprio_dim=4, mode=mode))
        modules = dict(model.named_modules())
        missing = [n for n in ACTION_BOUNDARY if n not in modules]
        assert not missing, f"{mode} mode: {missing} are not modules of WallWM; update wallwm_edge/model/boundary.py"


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def test_every_consumer_defaults_to_the_one_boundary():
    assert _default(quantize.quantize_int8, "keep") == ACTION_BOUNDARY
    assert _default(quantize.convert_fp16, "keep") == ACTION_BOUNDARY
    assert _default(quantize.kept_float, "keep") == ACTION_BOUNDARY
    assert _default(student.sidecar_info, "keep") == ACTION_BOUNDARY
    assert BuildProfile().fp32_layers_matching == ACTION_BOUNDARY


def test_shipped_build_profiles_pin_the_boundary():
    profiles = sorted(PROFILES.glob("*.json"))
    assert profiles
    for path in profiles:
        named = json.loads(path.read_text()).get("fp32_layers_matching")
        assert named is None or tuple(named) == ACTION_BOUNDARY, f"{path.name}: {named} is not {ACTION_BOUNDARY}"
