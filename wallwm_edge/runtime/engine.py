"""The student engine: an exported student (ONNX + JSON sidecar) run without torch.

    student = Student.load("checkpoints/student")            # folder, .onnx or .json
    out = student.act(images, proprio, "grasp the puck", view_mask)
    out.actions (L, A) raw robot actions, out.end_prob (L,), out.length, out.done

Two layers:
- `Engine` (ABC): named numpy arrays in, named numpy arrays out. `OrtEngine` runs onnxruntime on CPU
  (the default everywhere); on a Jetson or GPU box with onnxruntime-gpu it can use the TensorRT or CUDA
  execution providers (`backend="tensorrt"`), which build and cache the TensorRT engine themselves.
- `Student`: what the sidecar says about the graph (input names, shapes, views, horizon, caption
  embeddings, mode) turned into feeds: the sight-cone view mask (Vn, Vn) (or, for graphs that take
  the full token mask, its (S, S) expansion), the instruction looked up in the caption table, fresh
  Gaussian noise per chunk.

The sidecar's `kind` "sample" is the whole flow integration inside one graph (raw actions out, the
normalizer inside). When the export also wrote the `step` graph (one velocity evaluation) beside it,
real-time chunking inpaints: `act(..., prefix=committed)` runs the Euler loop on board (the `_C`
fused loop `denoise_loop` when built, else the same loop in numpy) and holds the chunk's first P rows
at the committed actions after every step, so the rest is denoised to continue what the arm is
already executing. Without a prefix the sample graph runs (one engine call per chunk).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.events.end_rule import DEFAULT_END_RULE, EndRule
from wallwm_edge.export.onnx_export import session

PRECISION_ORDER = ("fp32", "int8", "fp16")  # CPU preference when a folder holds several exports
GRAPH_INPUTS = ("images", "proprio", "instruction", "view_mask", "mask", "noise_video", "noise_action")
STEP_INPUTS = ("images", "proprio", "instruction", "view_mask", "x_video", "x_action", "t")


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
        self.sess = session(path, threads, providers, error=ConfigError)
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
        raise ConfigError(f"student {p}: not found. Pass --student (an exported student folder, .onnx or .json), or make "
                          f"one: `wallwm-edge distill ...` then `wallwm-edge export CHECKPOINT --out {p}`")
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
    length: int  # steps to execute (the end rule: forecast end, at most max_exec; unified: L)
    done: bool  # the current event is already over on the observation this chunk was computed from
    inpainted: int = 0  # rows held at the committed prefix during denoising (0: plain sample graph)


class Student:
    def __init__(self, sidecar: dict, engine: Engine, seed: int = 0, step: tuple[dict, Engine] | None = None,
                 end_rule: EndRule = DEFAULT_END_RULE):
        self.meta = sidecar
        self.end_rule = end_rule
        self.engine = engine
        self.step_meta, self.step_engine = step if step is not None else (None, None)
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
        norm = sidecar["normalizer"]["action"]
        self.mean, self.std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
        self.steps = int(sidecar["steps"])

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "cpu", precision: str = "auto", threads: int | None = None, seed: int = 0) -> "Student":
        from wallwm_edge.export.sidecar import read_sidecar

        side = find_student(path, precision)
        record = read_sidecar(side)
        if record["kind"] != "sample":
            raise ConfigError(f"{record['onnx_path']}: sidecar kind {record['kind']!r}; the runtime runs 'sample' graphs")
        step = None
        step_side = side.with_name(side.name.replace(".sample.", ".step."))
        if step_side != side and step_side.is_file():  # the export's step graph: real-time chunking inpaints with it
            srec = read_sidecar(step_side)
            if srec["kind"] == "step" and srec.get("config") == record.get("config") and srec["steps"] == record["steps"]:
                step = (srec, OrtEngine(srec["onnx_path"], backend, threads))
        return cls(record, OrtEngine(record["onnx_path"], backend, threads), seed, step)

    @property
    def can_inpaint(self) -> bool:
        return self.step_engine is not None

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

    def act(self, images, proprio, instruction: str, view_mask=None, prefix: np.ndarray | None = None) -> ChunkOut:
        """One chunk. `prefix` (P, A) raw actions: the committed prefix to inpaint around (step graph only)."""
        feeds = self.feeds(images, proprio, instruction, view_mask)
        if prefix is not None and len(prefix) and self.can_inpaint:
            actions, end_prob = self._inpaint(feeds, np.asarray(prefix, np.float32)[: self.horizon])
            inpainted = min(len(prefix), self.horizon)
        else:
            out = self.engine.run(feeds)
            actions, end_prob, inpainted = np.asarray(out["actions"], np.float32)[0], out.get("end_prob"), 0
        if self.mode == "unified" or end_prob is None:
            return ChunkOut(actions, np.zeros(len(actions), np.float32), len(actions), False, inpainted)
        end = np.asarray(end_prob, np.float32).reshape(-1)
        return ChunkOut(actions, end, self.end_rule.length(end), self.end_rule.is_done(end), inpainted)

    def _inpaint(self, feeds: dict, prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Euler loop of the sample graph, run here with the step graph, rows [0, P) held at the prefix.

        Same noise, same times, same update as inside the sample graph (x += v / steps, t = k / steps), so
        with an empty prefix it reproduces the sample graph; the video latents are integrated alongside
        (the callback owns them: Euler calls it once per step, in order)."""
        from wallwm_edge.ops import ext

        if "view_mask" not in feeds:
            raise ConfigError(f"{self.step_meta['onnx_path']}: inpainting needs a sample graph with a view_mask input")
        obs = {k: feeds[k] for k in ("images", "proprio", "instruction", "view_mask")}
        state = {"video": feeds["noise_video"].copy(), "end_logit": None}
        ts = np.arange(self.steps + 1, dtype=np.float64) / self.steps

        def velocity(x, t):
            out = self.step_engine.run({**obs, "x_video": state["video"], "x_action": np.ascontiguousarray(x, np.float32),
                                        "t": np.full((1,), t, np.float32)})
            state["video"] = (state["video"] + out["v_video"] / self.steps).astype(np.float32)
            state["end_logit"] = out["end_logit"]
            return np.ascontiguousarray(out["v_action"], np.float32)

        x0 = feeds["noise_action"].astype(np.float32)
        pre = ((prefix - self.mean) / self.std).astype(np.float32)[None]  # (1, P, A) normalised
        if ext.has("denoise_loop"):
            out = np.empty_like(x0)
            ext.require("denoise_loop")(velocity, x0, ts, "euler", pre, self.mean, self.std, None, None, out)
        else:  # the same loop in numpy
            x = x0.copy()
            x[:, : pre.shape[1]] = pre
            for k in range(self.steps):
                x = x + (ts[k + 1] - ts[k]) * velocity(x, ts[k])
                x[:, : pre.shape[1]] = pre
            out = x * self.std + self.mean
        end_prob = 1.0 / (1.0 + np.exp(-np.asarray(state["end_logit"], np.float64)))
        return out[0].astype(np.float32), end_prob[0].astype(np.float32)
