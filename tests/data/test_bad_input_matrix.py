"""The bad-input matrix (issue 12): every malformed file a user can hand a command gets ONE line naming the
file, field and frame, a non-zero exit, no traceback, nothing written, and no hang.

Each case copies small valid inputs into its own folder (a 1-episode synthetic dataset, a tiny checkpoint,
the shipped student's int8 ONNX with its sidecar, a rig file), breaks one thing, runs one command, and
checks all of the above; "nothing written" compares a snapshot of the case folder (every path, size and
mtime) before and after, so an --out folder or a touched input shows up. Most cases call the CLI's
`main` in-process (fast); FIFO cases, and one of each kind, run a real `python -m wallwm_edge` subprocess
with a timeout, so a regression that blocks cannot hang the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from wwdata_helpers import ep_dir, load_meta, make_dataset, save_meta

from wallwm_edge.cli import main

ROOT = Path(__file__).resolve().parents[2]
STUDENT = ROOT / "checkpoints" / "student"
EP = "pick-place-v3_s00000"
INF, NAN = float("inf"), float("nan")
ESC = "\x1b[31mred\x07"  # control characters that must never reach the terminal raw
SUBPROCESS_TIMEOUT = 120


# --- the valid inputs each case starts from -------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """base/ds (dataset), base/ckpt/model.safetensors (tiny), base/student/ (int8 sample ONNX + sidecar), base/rig.json."""
    import torch

    from wallwm_edge.calibration.rig import Rig
    from wallwm_edge.data.dataset import Dataset
    from wallwm_edge.model.checkpoint import save_model
    from wallwm_edge.model.denoiser import WallWM
    from wallwm_edge.model.presets import resolve

    b = tmp_path_factory.mktemp("bad_input_base")
    make_dataset(b / "ds", n=1)
    ds = Dataset.open(b / "ds")
    (b / "ckpt").mkdir()
    torch.manual_seed(0)
    cfg = resolve("tiny", views=tuple(ds.views), image_size=ds.image_size, action_dim=ds.info["action_dim"],
                  proprio_dim=ds.info["proprio_dim"])
    save_model(b / "ckpt" / "model.safetensors", WallWM(cfg), {"step": 0, "train_config": {"split": None}})
    (b / "student").mkdir()
    for name in ("student.sample.int8.onnx", "student.sample.int8.json"):
        shutil.copy(STUDENT / name, b / "student" / name)
    rig = ds.episode(EP).rig
    Rig(rig.cameras, np.array([-1.0, -1.0, -0.5]), np.array([1.0, 1.0, 1.5])).save(b / "rig.json")
    return b


# --- one case ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    command: str  # key of COMMANDS
    setup: Callable[[Path], None]  # breaks one thing in the case folder
    expect: tuple[str, ...]  # words the one line must contain: file, field, frame
    subprocess: bool = False


def _ds(w: Path) -> Path:
    return w / "ds"


COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "check": lambda w: ["data", "check", str(_ds(w))],
    "check-json": lambda w: ["data", "check", str(_ds(w)), "--json"],
    "stats": lambda w: ["data", "stats", str(_ds(w))],
    "train": lambda w: ["train", str(_ds(w)), "--out", str(w / "run"), "--text-encoder", "hash", "--steps", "1", "--threads", "1"],
    "export": lambda w: ["export", str(w / "ckpt"), "--out", str(w / "onnx"), "--text-encoder", "hash", "--exporter", "torchscript"],
    "distill": lambda w: ["distill", "--teacher", str(w / "ckpt"), "--data", str(_ds(w)), "--out", str(w / "student_run"),
                          "--text-encoder", "hash", "--steps", "1", "--samples", "4", "--eval-samples", "2", "--threads", "1"],
    "eval": lambda w: ["eval", str(w / "ckpt"), "--splits", "seen", "--episodes", "1", "--max-steps", "2", "--text-encoder", "hash",
                       "--out", str(w / "eval.json")],
    "run": lambda w: ["run", "--student", str(w / "student" / "student.sample.int8.json"), "--out", str(w / "run"),
                      "--max-steps", "2", "--no-gif", "--no-status"],
    "run-rig": lambda w: ["run", "--student", str(w / "student" / "student.sample.int8.json"), "--rig", str(w / "rig.json"),
                          "--out", str(w / "run"), "--max-steps", "2", "--no-gif", "--no-status"],
    "run-plan": lambda w: ["run", "--student", str(w / "student" / "student.sample.int8.json"), "--plan", str(w / "plan.json"),
                           "--out", str(w / "run"), "--max-steps", "2", "--no-gif", "--no-status"],
    "export-data": lambda w: ["export", str(w / "ckpt"), "--data", str(_ds(w)), "--out", str(w / "onnx"), "--text-encoder", "hash",
                              "--exporter", "torchscript"],
    "eval-data": lambda w: ["eval", str(w / "ckpt"), "--data", str(_ds(w)), "--splits", "seen", "--episodes", "1", "--max-steps", "2",
                            "--text-encoder", "hash", "--out", str(w / "eval.json")],
    "run-student-folder": lambda w: ["run", "--student", str(w / "student"), "--out", str(w / "run"), "--max-steps", "2", "--no-gif",
                                     "--no-status"],
    "import-lerobot": lambda w: ["data", "import-lerobot", str(w / "lerobot"), "--out", str(w / "imported")],
    "distill-key-map": lambda w: ["distill", "--teacher", str(w / "ckpt"), "--key-map", str(w / "keymap.json"), "--data", str(_ds(w)),
                                  "--out", str(w / "student_run"), "--text-encoder", "hash", "--steps", "1", "--threads", "1"],
    "distill-teacher-config": lambda w: ["distill", "--teacher", str(w / "ckpt"), "--teacher-config", str(w / "tconfig.json"),
                                         "--data", str(_ds(w)), "--out", str(w / "student_run"), "--text-encoder", "hash",
                                         "--steps", "1", "--threads", "1"],
    "calibrate-check": lambda w: ["calibrate", "check", str(w / "rig.json"), str(w / "captures"), "--out", str(w / "rig_fixed.json")],
    "quantize": lambda w: ["quantize", str(w / "ckpt"), "--onnx", str(w / "student" / "student.sample.int8.onnx"),
                           "--data", str(_ds(w)), "--precisions", "fp16"],
    "bridge": lambda w: ["bridge", str(w / "chunks.npy"), "--port", "sim"],
}


def huge_npy(rel: str):
    """An .npy whose header declares 240 GB of float32 behind a few bytes: refused before any allocation."""
    def setup(w):
        import numpy as np

        with open(w / rel, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (1_000_000, 60_000, 1)})
            f.write(b"\0" * 64)
    return setup


# --- dataset and episode breakers ------------------------------------------------------------------------

def meta_edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(w):
        d = ep_dir(_ds(w))
        m = load_meta(d)
        fn(m)
        save_meta(d, m)
    return setup


def info_edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(w):
        p = _ds(w) / "dataset.json"
        d = json.loads(p.read_text())
        fn(d)
        p.write_text(json.dumps(d))
    return setup


def _set(path: str, value):
    """meta_edit/info_edit body: set a path ("rig/cameras/0/width") to value."""
    keys = [int(k) if k.isdigit() else k for k in path.split("/")]

    def fn(d):
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return fn


def _pop(path: str):
    keys = [int(k) if k.isdigit() else k for k in path.split("/")]

    def fn(d):
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return fn


def meta_is_folder(w):
    p = ep_dir(_ds(w)) / "meta.json"
    p.unlink()
    p.mkdir()


def meta_deep(w):
    (ep_dir(_ds(w)) / "meta.json").write_text("[" * 100_000 + "]" * 100_000)


def info_deep(w):
    (_ds(w) / "dataset.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")


def info_is_folder(w):
    p = _ds(w) / "dataset.json"
    p.unlink()
    p.mkdir()


def zero_frames(w):
    from wallwm_edge.data.episode import sha256_file

    d = ep_dir(_ds(w))
    m = load_meta(d)
    for name, rec in m["files"].items():
        arr = np.load(d / name)
        np.save(d / name, arr[:0])
        m["files"][name] = {"shape": [0, *rec["shape"][1:]], "dtype": rec["dtype"], "sha256": sha256_file(d / name)}
    m["num_frames"] = 0
    m["events"] = []
    save_meta(d, m)


def npy_declares(name: str, shape: tuple[int, ...]):
    """Rewrite an .npy header to declare `shape` (240 GB) over the original few bytes of data."""
    def setup(w):
        p = ep_dir(_ds(w)) / name
        arr = np.load(p)
        with open(p, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False, "shape": shape})
            f.write(arr.tobytes())
    return setup


def fifo(rel: str):
    def setup(w):
        p = w / rel
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
        os.mkfifo(p)
    return setup


def event_key_conflict(key: str, caption: str):
    """events[1] (subtask) takes events[0]'s key with another caption: one key, two meanings."""
    def fn(m):
        m["events"][0]["key"] = key
        m["events"][1]["key"] = key
        m["events"][1]["caption"] = caption
    return fn


HUGE = "pick " * 1_000_000  # 5 MB caption

DATA_BREAKS: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    # name: (setup, words of the line in `data check`; stats names the same file/field)
    "meta_is_folder": (meta_is_folder, ("meta.json", "folder")),
    "files_entry_string": (meta_edit(_set("files/actions.npy", "actions")), ("files.actions.npy", "object")),
    "files_shape_int": (meta_edit(_set("files/actions.npy/shape", 12)), ("files.actions.npy.shape", "list")),
    "files_list": (meta_edit(_set("files", ["frames.npy"])), ("files", "object")),
    "rig_camera_int": (meta_edit(_set("rig/cameras/1", 7)), ("cameras[1]", "camera object")),
    "camera_width_inf": (meta_edit(_set("rig/cameras/0/width", INF)), ("cameras[0].width", "Infinity")),
    "camera_K_nan": (meta_edit(_set("rig/cameras/0/K/0/0", NAN)), ("cameras[0].K[0][0]", "NaN")),
    "rig_dist_nan": (meta_edit(_set("rig/cameras/0/dist/1", NAN)), ("cameras[0].dist[1]", "NaN")),
    "rig_null": (meta_edit(_set("rig", None)), ("rig", "null")),
    "workspace_no_max": (meta_edit(_set("rig/workspace", {"min": [0, 0, 0]})), ("workspace.max", "missing")),
    "workspace_nan": (meta_edit(_set("rig/workspace", {"min": [NAN, 0, 0], "max": [1, 1, 1]})), ("workspace.min[0]", "NaN")),
    "workspace_inverted": (meta_edit(_set("rig/workspace", {"min": [1, 0, 0], "max": [0, 1, 1]})), ("workspace", "min < max")),
    "meta_deep_json": (meta_deep, ("meta.json", "nested too deeply")),
    "zero_frames": (zero_frames, ("num_frames", "got 0")),
    "num_frames_string": (meta_edit(_set("num_frames", "12")), ("num_frames", "integer", "'12'")),
    "num_frames_float": (meta_edit(_set("num_frames", 11.7)), ("num_frames", "integer", "11.7")),
    "fps_inf": (meta_edit(_set("fps", INF)), ("fps", "Infinity")),
    "fps_zero": (meta_edit(_set("fps", 0)), ("fps", "> 0")),
    "image_size_one": (meta_edit(_set("image_size", [32])), ("image_size", "2 entries")),
    "views_int": (meta_edit(_set("views", 3)), ("views", "list")),
    "action_dim_string": (meta_edit(_set("action_dim", "4")), ("action_dim", "integer")),
    "episode_id_control": (meta_edit(_set("episode_id", "ep\x1b[2J")), ("episode_id", "\\x1b")),
    "event_start_inf": (meta_edit(_set("events/0/start", INF)), ("events[0]",)),
    "npy_240GB": (npy_declares("actions.npy", (60_000_000_000, 1)), ("actions", "60000000000")),
    "npy_garbage": (lambda w: (ep_dir(_ds(w)) / "proprio.npy").write_bytes(b"\x93NUMPY garbage"), ("proprio",)),
    "info_ids_not_strings": (info_edit(_set("episodes", [1, 2])), ("dataset.json", "episodes[0]", "string")),
    "info_id_traversal": (info_edit(_set("episodes", ["../../etc"])), ("dataset.json", "episodes[0]", "'../../etc'")),
    "info_fps_string": (info_edit(_set("fps", "10")), ("dataset.json", "fps", "number")),
    "info_image_size_nan": (info_edit(_set("image_size", [NAN, 32])), ("dataset.json", "image_size[0]")),
    "info_views_missing": (info_edit(_pop("views")), ("dataset.json", "views")),
    "info_is_folder": (info_is_folder, ("dataset.json", "folder")),
    "info_deep_json": (info_deep, ("dataset.json", "nested too deeply")),
    "info_array": (lambda w: (_ds(w) / "dataset.json").write_text("[1, 2]"), ("dataset.json", "JSON object")),
}
# `data check` only: the episode reads fine, the content is inconsistent (stats has no reason to refuse it)
CHECK_ONLY = {
    "event_key_control_chars": (meta_edit(event_key_conflict(ESC, "another caption")), ("events", "\\x1b[31mred\\x07")),
    "event_caption_huge": (meta_edit(event_key_conflict("grasp:puck", HUGE)), ("events", "characters)")),
}
# expected words where `data stats` (read_episode) words it differently from `data check`
STATS_WORDS = {
    "rig_camera_int": ("rig", "cameras[1]"),
    "event_start_inf": ("events[0]", "malformed"),
    "npy_240GB": ("actions.npy", "60000000000"),
    "npy_garbage": ("proprio.npy",),
}
TRAIN = ("meta_is_folder", "camera_width_inf", "meta_deep_json", "zero_frames", "num_frames_float", "info_ids_not_strings", "rig_dist_nan")


# --- checkpoint breakers (export, distill, eval) -------------------------------------------------------------

def ckpt_edit(header_fn=None, raw_header: str | None = None, tensor_fn=None, drop_header: bool = False):
    def setup(w):
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        p = w / "ckpt" / "model.safetensors"
        with safe_open(str(p), framework="pt") as f:
            header = json.loads(f.metadata()["wallwm"])
        tensors = load_file(str(p))
        if header_fn is not None:
            header_fn(header)
        if tensor_fn is not None:
            tensor_fn(tensors)
        meta = {} if drop_header else {"wallwm": raw_header if raw_header is not None else json.dumps(header)}
        save_file(tensors, str(p), metadata=meta)
    return setup


def _first_weight(t: dict) -> str:
    return sorted(k for k, v in t.items() if v.is_floating_point() and v.dim() == 2 and bool(v.abs().max() > 0))[0]


def bitflip(t):
    """Flip the top exponent bit of one float32 weight: 0.04 -> ~1e37, finite, and poison for everything after."""
    k = _first_weight(t)
    x = t[k].contiguous().view(-1).clone()
    i = int(x.abs().argmax())
    x.numpy().view(np.int32)[i] ^= 1 << 30  # the numpy view shares x's memory
    assert abs(float(x[i])) > 1e30
    t[k] = x.view(t[k].shape)


def set_weight(value: float):
    def fn(t):
        k = _first_weight(t)
        t[k] = t[k].clone()
        t[k].view(-1)[5] = value
    return fn


CKPT_BREAKS = {
    "header_not_json": (ckpt_edit(raw_header="{not json"), ("model.safetensors", "not valid JSON")),
    "header_array": (ckpt_edit(raw_header="[1, 2, 3]"), ("model.safetensors", "JSON object")),
    "header_deep": (ckpt_edit(raw_header="[" * 100_000 + "]" * 100_000), ("model.safetensors", "nested too deeply")),
    "config_width_string": (ckpt_edit(header_fn=_set("config/width", "wide")), ("model.safetensors", "config.width", "integer")),
    "config_heads_zero": (ckpt_edit(header_fn=_set("config/heads", 0)), ("model.safetensors", "config.heads")),
    "config_views_int": (ckpt_edit(header_fn=_set("config/views", 3)), ("model.safetensors", "config.views", "list")),
    "config_near_nan": (ckpt_edit(header_fn=_set("config/near", NAN)), ("model.safetensors", "config.near", "NaN")),
    "config_list": (ckpt_edit(header_fn=_set("config", [1])), ("model.safetensors", "config", "object")),
    "config_unknown_field": (ckpt_edit(header_fn=_set("config/wings", 2)), ("model.safetensors", "wings")),
    "format_wrong": (ckpt_edit(header_fn=_set("format", "other/9")), ("model.safetensors", "format")),
    "header_rig_nan": (ckpt_edit(header_fn=_set("rig", {"format": "wallwm-rig/1", "cameras": [{"name": "a", "width": 8, "height": 8,
                       "K": [[NAN, 0, 4], [0, 10, 4], [0, 0, 1]], "T_base_cam": np.eye(4).tolist()}]})), ("model.safetensors", "K[0][0]")),
    "weight_bitflip": (ckpt_edit(tensor_fn=bitflip), ("model.safetensors", "tensor '", "e+3")),
    "weight_nan": (ckpt_edit(tensor_fn=set_weight(NAN)), ("model.safetensors", "tensor '", "nan")),
    "weight_inf": (ckpt_edit(tensor_fn=set_weight(INF)), ("model.safetensors", "tensor '", "inf")),
    "no_wallwm_header": (ckpt_edit(drop_header=True), ("model.safetensors", "wallwm")),
    "garbage_file": (lambda w: (w / "ckpt" / "model.safetensors").write_bytes(b"\x00" * 64), ("model.safetensors",)),
    "truncated": (lambda w: os.truncate(w / "ckpt" / "model.safetensors", 4096), ("model.safetensors",)),
}
DISTILL = ("header_not_json", "header_array", "config_width_string", "config_views_int", "weight_bitflip", "weight_nan", "weight_inf",
           "truncated")
EVAL = ("header_not_json", "config_heads_zero", "weight_bitflip", "weight_nan")


# --- sidecar and rig breakers (run, calibrate check, quantize) ------------------------------------------------

def sidecar_edit(fn):
    def setup(w):
        p = w / "student" / "student.sample.int8.json"
        d = json.loads(p.read_text())
        fn(d)
        p.write_text(json.dumps(d))
    return setup


def rig_edit(fn):
    def setup(w):
        p = w / "rig.json"
        d = json.loads(p.read_text())
        fn(d)
        p.write_text(json.dumps(d))
    return setup


def onnx_outside(w):
    """The sidecar points at an ONNX outside its folder (with the right hash): never followed."""
    src = w / "student" / "student.sample.int8.onnx"
    shutil.copy(src, w / "elsewhere.onnx")
    sidecar_edit(_set("onnx", "../elsewhere.onnx"))(w)


def corrupt_onnx(w):
    """A corrupt ONNX whose sidecar hash was updated to match: quantize must name it, not crash in protobuf."""
    from wallwm_edge.export.sidecar import file_sha256

    p = w / "student" / "student.sample.int8.onnx"
    data = bytearray(p.read_bytes())
    data[100:400] = b"\xff" * 300
    p.write_bytes(bytes(data[: len(data) // 2]))
    sidecar_edit(_set("sha256", file_sha256(p)))(w)


SC = "student.sample.int8.json"
SIDECAR_BREAKS = {
    "views_int": (sidecar_edit(_set("views", 3)), (SC, "'views'", "list")),
    "L_max_string": (sidecar_edit(_set("L_max", "sixteen")), (SC, "'L_max'", "'sixteen'")),
    "no_action_normalizer": (sidecar_edit(_pop("normalizer/action")), (SC, "normalizer.action", "missing")),
    "normalizer_std_zero": (sidecar_edit(lambda d: d["normalizer"]["action"]["std"].__setitem__(2, 0.0)), (SC, "normalizer.action.std[2]")),
    "normalizer_short": (sidecar_edit(lambda d: d["normalizer"]["action"]["mean"].pop()), (SC, "normalizer.action", "action_dim")),
    "onnx_outside_folder": (onnx_outside, (SC, "'onnx'", "../elsewhere.onnx")),
    "onnx_absolute": (sidecar_edit(_set("onnx", "/etc/passwd")), (SC, "'onnx'", "/etc/passwd")),
    "image_size_short": (sidecar_edit(_set("image_size", [64])), (SC, "image_size")),
    "steps_zero": (sidecar_edit(_set("steps", 0)), (SC, "'steps'", "got 0")),
    "captions_not_lists": (sidecar_edit(lambda d: d["captions"].__setitem__(next(iter(d["captions"])), "x")), (SC, "captions")),
    "caption_key_control": (sidecar_edit(lambda d: d["captions"].__setitem__(ESC, [0.0])), (SC, "captions", "\\x1b")),
    "sidecar_rig_dist_nan": (sidecar_edit(lambda d: d["rig"]["cameras"][0].__setitem__("dist", [NAN, 0, 0, 0, 0])), (SC, "rig", "dist[0]")),
    "kind_unknown": (sidecar_edit(_set("kind", "banana")), (SC, "kind")),
    "sidecar_not_json": (lambda w: (w / "student" / SC).write_text("{oops"), (SC, "not valid JSON")),
    "sidecar_is_folder": (lambda w: ((w / "student" / SC).unlink(), (w / "student" / SC).mkdir()), (SC,)),
}
RIG_BREAKS = {
    "dist_nan": (rig_edit(_set("cameras/0/dist/0", NAN)), ("rig.json", "cameras[0].dist[0]", "NaN")),
    "workspace_nan": (rig_edit(_set("workspace/min/1", NAN)), ("rig.json", "workspace.min[1]", "NaN")),
    "workspace_no_max": (rig_edit(_pop("workspace/max")), ("rig.json", "workspace.max", "missing")),
    "width_inf": (rig_edit(_set("cameras/0/width", INF)), ("rig.json", "cameras[0].width", "Infinity")),
    "camera_int": (rig_edit(_set("cameras/0", 5)), ("rig.json", "cameras[0]", "camera object")),
    "K_short": (rig_edit(_set("cameras/1/K", [[1, 0], [0, 1]])), ("rig.json", "cameras[1].K")),
    "pose_not_rigid": (rig_edit(_set("cameras/0/T_base_cam/0/0", 3.0)), ("rig.json", "T_base_cam", "orthonormal")),
    "mount_unknown": (rig_edit(_set("cameras/0/mount", "ceiling")), ("rig.json", "mount")),
    "cameras_empty": (rig_edit(_set("cameras", [])), ("rig.json", "cameras")),
    "rig_not_json": (lambda w: (w / "rig.json").write_text("{"), ("rig.json", "not valid JSON")),
    "rig_array": (lambda w: (w / "rig.json").write_text("[]"), ("rig.json", "JSON object")),
    "duplicate_names": (rig_edit(lambda d: d["cameras"][1].__setitem__("name", d["cameras"][0]["name"])), ("rig.json", "unique")),
}
def plan(text: str):
    return lambda w: (w / "plan.json").write_text(text)


PLAN_BREAKS = {
    "plan_key_control_chars": (plan(json.dumps({"pick-place-v3": [ESC]})), ("plan.json", "event 0", "\\x1b[31mred\\x07")),
    "plan_huge_caption": (plan(json.dumps({"pick-place-v3": ["x" * 5_000_000]})), ("plan.json", "event 0", "characters)")),
    "plan_not_a_list": (plan(json.dumps({"pick-place-v3": 5})), ("plan.json", "pick-place-v3", "list")),
    "plan_array": (plan("[1]"), ("plan.json",)),
    "plan_deep": (plan("[" * 100_000 + "]" * 100_000), ("plan.json", "nested too deeply")),
    "plan_is_folder": (lambda w: (w / "plan.json").mkdir(), ("plan.json", "folder")),
}
def write(rel: str, text: str):
    def setup(w):
        (w / rel).parent.mkdir(parents=True, exist_ok=True)
        (w / rel).write_text(text)
    return setup


def make_dir(rel: str):
    return lambda w: (w / rel).mkdir(parents=True)


BOARD = {"name": "b", "type": "charuco", "squares_x": 7, "squares_y": 5, "square_m": 0.035, "marker_m": 0.026}
OTHER_INPUTS = [  # (command, name, setup, words): the other JSON files that enter through one command or another
    ("import-lerobot", "info_is_folder", make_dir("lerobot/meta/info.json"), ("info.json", "folder")),
    ("import-lerobot", "info_array", write("lerobot/meta/info.json", "[]"), ("info.json", "JSON object")),
    ("import-lerobot", "info_not_json", write("lerobot/meta/info.json", "{"), ("info.json", "not valid JSON")),
    ("distill-key-map", "key_map_array", write("keymap.json", "[1]"), ("keymap.json", "JSON object")),
    ("distill-key-map", "key_map_is_folder", make_dir("keymap.json"), ("keymap.json", "folder")),
    ("distill-teacher-config", "teacher_config_array", write("tconfig.json", "[]"), ("tconfig.json", "JSON object")),
    ("distill-teacher-config", "teacher_config_width_string", write("tconfig.json", json.dumps({"name": "t", "width": "wide"})),
     ("tconfig.json", "'width'", "integer")),
    ("calibrate-check", "capture_json_array", write("captures/capture.json", "[]"), ("capture.json", "JSON object")),
    ("calibrate-check", "capture_board_squares_inf", write("captures/capture.json", json.dumps({"board": {**BOARD, "squares_x": INF}})),
     ("capture.json", "squares_x", "Infinity")),
    ("calibrate-check", "capture_wrist_int", write("captures/capture.json", json.dumps({"board": BOARD, "wrist": 5})),
     ("capture.json", "wrist", "list")),
]
RUN_RIG = ("dist_nan", "workspace_nan", "workspace_no_max", "width_inf", "camera_int")


# --- the matrix ---------------------------------------------------------------------------------------------

def _cases() -> list[Case]:
    cases = []
    for name, (setup, words) in DATA_BREAKS.items():
        cases.append(Case(f"check-{name}", "check", setup, words))
        cases.append(Case(f"check-json-{name}", "check-json", setup, words))
        cases.append(Case(f"stats-{name}", "stats", setup, STATS_WORDS.get(name, words)))
    for name, (setup, words) in CHECK_ONLY.items():
        cases.append(Case(f"check-{name}", "check", setup, words))
        cases.append(Case(f"check-json-{name}", "check-json", setup, words))
    for name in TRAIN:
        setup, words = DATA_BREAKS[name]
        cases.append(Case(f"train-{name}", "train", setup, words))
    for name, (setup, words) in CKPT_BREAKS.items():
        cases.append(Case(f"export-{name}", "export", setup, words))
    for name in DISTILL:
        cases.append(Case(f"distill-{name}", "distill", *CKPT_BREAKS[name]))
    for name in EVAL:
        cases.append(Case(f"eval-{name}", "eval", *CKPT_BREAKS[name]))
    for name, (setup, words) in SIDECAR_BREAKS.items():
        cases.append(Case(f"run-{name}", "run", setup, words))
    for name, (setup, words) in RIG_BREAKS.items():
        cases.append(Case(f"calibrate-check-{name}", "calibrate-check", setup, words))
    for name in RUN_RIG:
        cases.append(Case(f"run-rig-{name}", "run-rig", *RIG_BREAKS[name]))
    for command, name, setup, words in OTHER_INPUTS:
        cases.append(Case(f"{command}-{name}", command, setup, words))
    for name, (setup, words) in PLAN_BREAKS.items():
        cases.append(Case(f"run-{name}", "run-plan", setup, words))
    for name in ("meta_is_folder", "camera_width_inf", "info_ids_not_strings"):  # the dataset given beside a good checkpoint
        setup, words = DATA_BREAKS[name]
        cases.append(Case(f"distill-data-{name}", "distill", setup, words))
        cases.append(Case(f"export-data-{name}", "export-data", setup, STATS_WORDS.get(name, words)))
        cases.append(Case(f"eval-data-{name}", "eval-data", setup, STATS_WORDS.get(name, words)))
    cases += [
        Case("run-fifo-plan", "run-plan", lambda w: os.mkfifo(w / "plan.json"), ("plan.json", "FIFO"),
             subprocess=True),
        Case("import-lerobot-fifo-info", "import-lerobot", lambda w: (make_dir("lerobot/meta")(w), os.mkfifo(w / "lerobot/meta/info.json")),
             ("info.json", "FIFO"), subprocess=True),
        Case("run-student-folder-fifo", "run-student-folder", lambda w: os.mkfifo(w / "student" / "notes.json"), ("notes.json", "FIFO"),
             subprocess=True),
        Case("run-student-folder-deep-json", "run-student-folder", write("student/notes.json", "[" * 100_000 + "]" * 100_000),
             ("notes.json", "nested too deeply")),
        Case("quantize-corrupt-onnx", "quantize", corrupt_onnx, ("student.sample.int8.onnx", "not a readable ONNX")),
        Case("quantize-onnx-outside-folder", "quantize", onnx_outside, (SC, "'onnx'")),
        # special files: a FIFO must be refused without opening it (opening blocks until a writer comes)
        Case("stats-fifo-episode-file", "stats", fifo(f"ds/episodes/{EP}/actions.npy"), ("actions.npy", "FIFO"), subprocess=True),
        Case("check-fifo-episode-file", "check", fifo(f"ds/episodes/{EP}/actions.npy"), ("actions", "FIFO"), subprocess=True),
        Case("stats-fifo-meta", "stats", fifo(f"ds/episodes/{EP}/meta.json"), ("meta.json", "FIFO"), subprocess=True),
        Case("check-fifo-dataset-json", "check", fifo("ds/dataset.json"), ("dataset.json", "FIFO"), subprocess=True),
        Case("run-fifo-sidecar", "run", fifo(f"student/{SC}"), (SC,), subprocess=True),
        Case("calibrate-check-fifo-rig", "calibrate-check", fifo("rig.json"), ("rig.json", "FIFO"), subprocess=True),
        # one of each kind again through a real process: the console entry point behaves as main() does
        Case("subprocess-check-meta-deep", "check", meta_deep, ("meta.json", "nested too deeply"), subprocess=True),
        Case("subprocess-stats-width-inf", "stats", DATA_BREAKS["camera_width_inf"][0], ("cameras[0].width", "Infinity"), subprocess=True),
        Case("subprocess-calibrate-check-dist-nan", "calibrate-check", *RIG_BREAKS["dist_nan"], subprocess=True),
        Case("subprocess-run-L_max", "run", *SIDECAR_BREAKS["L_max_string"], subprocess=True),
        # the bridge's chunk file: a header declaring 240 GB, a FIFO, a 1-D array
        Case("bridge-npy-240GB", "bridge", huge_npy("chunks.npy"), ("chunks.npy", "240000000128 bytes"), subprocess=True),
        Case("bridge-npy-fifo", "bridge", lambda w: os.mkfifo(w / "chunks.npy"), ("chunks.npy", "FIFO"), subprocess=True),
        Case("bridge-npy-1d", "bridge", lambda w: __import__("numpy").save(w / "chunks.npy", __import__("numpy").zeros(7, "f4")),
             ("chunks.npy", "shape (7,)")),
    ]
    return cases


CASES = _cases()


def test_matrix_is_large_enough():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


def _snapshot(root: Path) -> dict:
    """path -> (size, mtime) of everything under root (lstat: FIFOs are not opened)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if not p.is_dir() else 0, st.st_mtime_ns)
    return out


def _run(case: Case, w: Path, capsys) -> tuple[int, str, str]:
    argv = COMMANDS[case.command](w)
    if case.subprocess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            r = subprocess.run([sys.executable, "-m", "wallwm_edge", *argv], capture_output=True, text=True, cwd=w,
                               timeout=SUBPROCESS_TIMEOUT, env=env)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{case.id}: `wallwm-edge {' '.join(argv)}` hung for {SUBPROCESS_TIMEOUT} s")
        return r.returncode, r.stdout, r.stderr
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _the_line(case: Case, rc, out: str, err: str) -> str:
    """Assert the one-line contract and return the line (or the JSON problem) that names the input."""
    text = out + err
    assert rc not in (0, None), f"{case.id}: exit status {rc}\n{text[:2000]}"
    assert "Traceback" not in text, f"{case.id}: traceback\n{text[-3000:]}"
    assert "\x1b" not in text and "\x07" not in text, f"{case.id}: raw control characters reached the terminal"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if case.command == "check-json":
        assert not err.strip(), f"{case.id}: stderr {err[:500]!r}"
        payload = json.loads(out)
        bad = [p for p in payload["problems"] if p["severity"] == "error"]
        assert payload["ok"] is False and payload["errors"] == 1 and len(bad) == 1, f"{case.id}: {payload['problems']}"
        p = bad[0]
        return f"{p['episode']} {p['field']} {p['frame']} {p['message']}"
    if case.command == "check":
        errors = [ln for ln in lines if ln.startswith("error:")]
        rest = [ln for ln in lines if not ln.startswith("error:")]
        assert len(errors) == 1, f"{case.id}: {len(errors)} error lines:\n" + "\n".join(lines)[:3000]
        assert len(rest) == 1 and "FAILED (1 error(s)" in rest[0], f"{case.id}: {rest}"
        return errors[0]
    assert len(lines) == 1 and lines[0].startswith("wallwm-edge: error: "), f"{case.id}: {len(lines)} lines:\n" + "\n".join(lines)[:3000]
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_line(case: Case, base: Path, tmp_path: Path, capsys):
    w = tmp_path / "case"
    shutil.copytree(base, w, symlinks=True)
    (w / "captures").mkdir()
    case.setup(w)
    before = _snapshot(w)
    rc, out, err = _run(case, w, capsys)
    line = _the_line(case, rc, out, err)
    for word in case.expect:
        assert word in line, f"{case.id}: {word!r} not in the line: {line[:500]}"
    assert len(line) < 2500, f"{case.id}: a {len(line)}-character line"
    after = _snapshot(w)
    assert after == before, f"{case.id}: files written or changed: {sorted(set(after.items()) ^ set(before.items()))[:5]}"


def test_stats_escapes_control_characters_in_keys(base: Path, tmp_path: Path, capsys):
    """A valid dataset whose event key holds control characters: `data stats` prints it escaped."""
    w = tmp_path / "case"
    shutil.copytree(base / "ds", w)
    d = ep_dir(w)
    m = load_meta(d)
    m["events"][0]["key"] = ESC
    save_meta(d, m)
    assert main(["data", "stats", str(w)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[31mred\\x07" in out


# --- the validation layer's own pieces ------------------------------------------------------------------------

def test_clip_escapes_control_characters_and_cuts_long_text():
    from wallwm_edge.validate import clip, one_line

    assert clip(ESC) == "\\x1b[31mred\\x07"
    assert clip("a\nb\u2028c") == "a\\nb\\u2028c"
    assert clip("caf\u00e9 \u6f22\u5b57") == "caf\u00e9 \u6f22\u5b57"  # printable non-ASCII stays readable
    long = clip("x" * 50_000_000)
    assert len(long) < 300 and long.endswith("... (50000000 characters)")
    assert "\n" not in one_line("line one\nline two\r\x1b")


def test_npy_header_refuses_a_declared_size_before_allocating(tmp_path):
    from wallwm_edge.errors import DataError
    from wallwm_edge.validate import npy_header

    p = tmp_path / "huge.npy"
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (60_000_000_000,)})
        f.write(b"\0" * 64)
    with pytest.raises(DataError, match=r"huge.npy: truncated: \d+ bytes on disk, its header declares shape \[60000000000\]"):
        npy_header(p)
    np.save(tmp_path / "ok.npy", np.zeros((3, 2), np.float32))
    assert npy_header(tmp_path / "ok.npy")[:2] == ((3, 2), np.dtype("float32"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects"):
        npy_header(tmp_path / "obj.npy")


@pytest.mark.parametrize("value, spec_name, words", [
    (49.7, "int", "must be an integer, got 49.7"),
    ("49", "int", "must be an integer, got the string '49'"),
    (True, "int", "must be an integer, got true"),
    (INF, "num", "must be a finite number, got Infinity"),
    (NAN, "num", "must be a finite number, got NaN"),
    ("1.0", "num", "must be a number, got the string '1.0'"),
    (0, "pos", "must be > 0, got 0"),
])
def test_specs_name_the_field_and_what_they_got(value, spec_name, words):
    from wallwm_edge.errors import DataError
    from wallwm_edge.validate import integer, number, obj, require

    spec = {"int": integer(1), "num": number(), "pos": number(positive=True)}[spec_name]
    with pytest.raises(DataError) as e:
        require({"outer": [{"x": value}]}, obj({"outer": _list_of(obj({"x": spec}))}), "f.json: ")
    assert str(e.value) == f"f.json: field 'outer[0].x' {words}"


def _list_of(spec):
    from wallwm_edge.validate import array

    return array(spec)
