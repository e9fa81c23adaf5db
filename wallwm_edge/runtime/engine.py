"""The student engine: an exported student (ONNX + JSON sidecar) run without torch.

    student = Student.load("checkpoints/student")            # folder, .onnx or .json
    out = student.act(images, proprio, "grasp the puck", view_mask)
    out.actions (L, A) raw robot actions, out.end_prob (L,), out.length, out.event_end

Two layers:
- `Engine` (ABC): named numpy arrays in, named numpy arrays out. `OrtEngine` runs onnxruntime on CPU
  (the default everywhere); on a Jetson or GPU box with onnxruntime-gpu it can use the TensorRT or CUDA
  execution providers (`backend="tensorrt"`), which build and cache the TensorRT engine themselves.
- `Student`: what the sidecar says about the graph (input names, shapes, views, horizon, caption
  embeddings, mode) turned into feeds: the sight-cone view mask (Vn, Vn) (or, for graphs that take
  the full token mask, its (S, S) expansion), the instruction looked up in the caption table, fresh
  Gaussian noise per chunk.

The sidecar's `kind` must be "sample" (the whole flow integration inside the graph, what the export
writes for the student); the graph's outputs carry raw actions (the normalizer is inside the graph).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError, DataError

PRECISION_ORDER = ("fp32", "int8", "fp16")  # CPU preference when a folder holds several exports
GRAPH_INPUTS = ("images", "proprio", "instruction", "view_mask", "mask", "noise_video", "noise_action")


class Engine(ABC):
    name: str = ""

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None:
        pass


class OrtEngine(Engine):
    """onnxruntime. backend: "cpu" (default), "tensorrt" (TensorRT EP, falls back to CUDA/CPU per node)."""

    def __init__(self, path: str | os.PathLike, backend: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if backend == "cpu":
            providers = ["CPUExecutionProvider"]
        elif backend == "tensorrt":
            if "TensorrtExecutionProvider" not in available:
                raise ConfigError("engine 'tensorrt' needs onnxruntime-gpu built with TensorRT (JetPack's onnxruntime, or "
                                  f"`pip install onnxruntime-gpu tensorrt`); this onnxruntime offers {available}")
            cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wallwm-edge" / "trt"
            cache.mkdir(parents=True, exist_ok=True)
            providers = [("TensorrtExecutionProvider", {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                                         "trt_engine_cache_path": str(cache)}),
                         "CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            raise ConfigError(f"unknown engine {backend!r}: use cpu or tensorrt")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.sess = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types; one line is what the user needs
            raise ConfigError(f"{path}: onnxruntime cannot load it: {str(e).splitlines()[0][:300]}") from None
        self.name = f"onnxruntime-{backend}"
        self.inputs = {i.name: i for i in self.sess.get_inputs()}
        self.outputs = [o.name for o in self.sess.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.sess.run(self.outputs, feeds)))


_DTYPES = {"uint8": np.uint8, "float32": np.float32, "float16": np.float16, "bool": np.bool_, "int64": np.int64}


def find_student(path: str | os.PathLike, precision: str = "auto") -> Path:
    """The sidecar (.json) of the student at `path`: a .json, an .onnx, or a folder of exports."""
    p = Path(path)
    if p.suffix == ".onnx":
        p = p.with_suffix(".json")
    if p.is_file():
        return p
    if not p.is_dir():
        raise ConfigError(f"student {p}: not found (pass --student with an exported student folder, .onnx or .json)")
    import json

    found: dict[str, Path] = {}
    for j in sorted(p.glob("*.json")):
        try:
            rec = json.loads(j.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("format") == "wallwm-onnx/1" and rec.get("kind") == "sample":
            found.setdefault(str(rec.get("precision")), j)
    if not found:
        raise ConfigError(f"student folder {p}: no exported student (*.json sidecar of kind 'sample' beside its .onnx); "
                          "run `wallwm-edge export` first")
    if precision != "auto":
        if precision not in found:
            raise ConfigError(f"student folder {p}: no {precision} export; it has {sorted(found)}")
        return found[precision]
    return next(found[k] for k in (*PRECISION_ORDER, *sorted(found)) if k in found)


@dataclass
class ChunkOut:
    actions: np.ndarray  # (L, A) float32 raw
    end_prob: np.ndarray  # (L,)
    length: int  # steps to execute: first step with p_end > 0.5, + 1 (else L)
    event_end: bool  # the termination head fired within the chunk


class Student:
    def __init__(self, sidecar: dict, engine: Engine, seed: int = 0):
        self.meta = sidecar
        self.engine = engine
        cfg = sidecar.get("config", {})
        self.views = tuple(sidecar["views"])
        self.image_size = tuple(sidecar["image_size"])
        self.mode = str(sidecar.get("mode", cfg.get("mode", "event")))
        self.horizon = int(sidecar["L_max"])
        self.action_dim = int(sidecar["action_dim"])
        self.patch = int(sidecar["patch"])
        self.near, self.far = float(cfg.get("near", 0.05)), float(cfg.get("far", 2.0))
        self.n_frames = 1 + int(cfg.get("n_future", 1))
        self.captions = sidecar["captions"]
        self.inputs = {d["name"]: d for d in sidecar["inputs"]}
        unknown = sorted(set(self.inputs) - set(GRAPH_INPUTS))
        if unknown:
            raise ConfigError(f"{sidecar.get('onnx_path')}: graph input(s) {unknown} unknown to the runtime (it feeds {list(GRAPH_INPUTS)})")
        self.rng = np.random.default_rng(seed)
        self._embed_cache: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "cpu", precision: str = "auto", threads: int | None = None, seed: int = 0) -> "Student":
        from wallwm_edge.export.sidecar import read_sidecar

        record = read_sidecar(find_student(path, precision))
        if record["kind"] != "sample":
            raise ConfigError(f"{record['onnx_path']}: sidecar kind {record['kind']!r}; the runtime runs 'sample' graphs")
        return cls(record, OrtEngine(record["onnx_path"], backend, threads), seed)

    @property
    def name(self) -> str:
        return f"{Path(self.meta.get('onnx_path', '?')).name} ({self.meta.get('preset')}, {self.meta.get('precision')}, {self.engine.name})"

    def embed(self, text: str) -> np.ndarray:
        """(384,) float32 for an instruction: the sidecar's table, else the sentence encoder (needs torch)."""
        if text in self._embed_cache:
            return self._embed_cache[text]
        if text in self.captions:
            e = np.asarray(self.captions[text], np.float32)
        else:
            known = ", ".join(repr(c) for c in list(self.captions)[:6])
            raise DataError(f"instruction {text!r} is not in the student's caption table ({len(self.captions)} captions, e.g. {known}); "
                            "the on-board runtime carries no sentence encoder: use a known event caption or re-export with it")
        self._embed_cache[text] = e
        return e

    def full_mask(self, view_mask: np.ndarray) -> np.ndarray:
        """(Vn, Vn) sight-cone mask -> (1, S, S) token mask of the graph (model.attention.expand_view_mask)."""
        S = int(self.inputs["mask"]["shape"][-1])
        Vn = view_mask.shape[0]
        video = self.n_frames * Vn
        if video > S:
            raise ConfigError(f"view mask of {Vn} tokens x {self.n_frames} frames exceeds the graph's mask size {S}")
        full = np.ones((1, S, S), bool)
        full[0, :video, :video] = np.tile(view_mask, (self.n_frames, self.n_frames))
        return full

    def feeds(self, images: np.ndarray, proprio: np.ndarray, instruction: str, view_mask: np.ndarray | None) -> dict[str, np.ndarray]:
        f = {}
        for name, d in self.inputs.items():
            shape = [1 if isinstance(s, str) else int(s) for s in d["shape"]]
            dtype = _DTYPES.get(d.get("dtype", "float32"), np.float32)
            if name == "images":
                x = np.ascontiguousarray(images, np.uint8)[None]
            elif name == "proprio":
                x = np.asarray(proprio, np.float32).reshape(1, -1)
            elif name == "instruction":
                x = self.embed(instruction)[None]
            elif name == "view_mask":  # the export expands it to the token mask inside the graph
                x = view_mask[None] if view_mask is not None else np.ones(shape, bool)
            elif name == "mask":  # older graphs take the full (S, S) token mask
                x = self.full_mask(view_mask) if view_mask is not None else np.ones(shape, bool)
            else:  # noise_video, noise_action: the flow starts from fresh Gaussian noise every chunk
                x = self.rng.standard_normal(shape)
            x = np.ascontiguousarray(x, dtype=dtype)
            if list(x.shape) != shape:
                raise ConfigError(f"graph input {name!r}: expected shape {shape}, the runtime has {list(x.shape)}")
            f[name] = x
        return f

    def act(self, images, proprio, instruction: str, view_mask=None) -> ChunkOut:
        out = self.engine.run(self.feeds(images, proprio, instruction, view_mask))
        actions = np.asarray(out["actions"], np.float32)[0]
        if self.mode == "unified" or "end_prob" not in out:
            end = np.zeros(len(actions), np.float32)
            return ChunkOut(actions, end, len(actions), False)
        end = np.asarray(out["end_prob"], np.float32)[0]
        hit = np.nonzero(end > 0.5)[0]
        length = int(hit[0]) + 1 if len(hit) else len(end)
        return ChunkOut(actions, end, length, bool(len(hit)))
