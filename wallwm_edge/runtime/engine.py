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
  the full token mask, its (S, S) expansion), the instruction's embedding, fresh Gaussian noise per chunk.

Instructions: the sidecar's caption table is a cache in front of the on-board sentence encoder
(`export.encoder_file.TextEncoder`, all-MiniLM-L6-v2 in ONNX, torch-free) when the student's folder
carries one (`wallwm-edge export-encoder --out FOLDER`), so any text is accepted; without one, only
the table's texts are, and any other raises DataError naming the text and that command.

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
from collections.abc import Iterator, Mapping
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


# The engines by name (runtime CLI `--engine`): cpu / tensorrt are onnxruntime (OrtEngine); trt is TensorRT's own
# runtime on the `export --trt` engine with CuPy buffers (runtime/trt_engine.py, imported only when chosen).
ENGINES = {"cpu": "onnxruntime on CPU", "tensorrt": "onnxruntime-gpu's TensorRT execution provider",
           "trt": "TensorRT runtime on the built .engine, CuPy buffers, CUDA-graph denoise (runtime/trt_engine.py)"}


def open_engine(path: str | os.PathLike, backend: str = "cpu", threads: int | None = None) -> Engine:
    """The engine named `backend` (ENGINES) for the exported graph at `path` (.onnx)."""
    if backend == "trt":
        from wallwm_edge.runtime.trt_engine import TensorRTEngine

        return TensorRTEngine(path, threads)
    if backend not in ENGINES:
        raise ConfigError(f"unknown engine {backend!r}: use one of {sorted(ENGINES)}")
    return OrtEngine(path, backend, threads)


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


class Captions(Mapping):
    """The student's caption table (text -> (D,) embedding) as a cache in front of a sentence encoder.

    Iterating, len() and `known` give the table's texts; `text in captions` is True for every text the
    student can embed (any string when an encoder is present), and `captions[text]` embeds a new text
    once, then serves it from the cache. Without an encoder it is the table, and KeyError outside it.
    """

    def __init__(self, table: dict, encoder=None):
        self.table = table
        self.encoder = encoder
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, text: str) -> np.ndarray:
        if text in self.table:
            return np.asarray(self.table[text], np.float32)
        if text not in self._cache:
            if self.encoder is None or not isinstance(text, str):
                raise KeyError(text)
            self._cache[text] = self.encoder.encode([text])[0]
        return self._cache[text]

    def __contains__(self, text) -> bool:
        return text in self.table or (self.encoder is not None and isinstance(text, str))

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def known(self) -> list[str]:
        return list(self.table)


def attach_encoder(captions: Captions, folder: Path, where: str, text_dim: int, threads: int | None = 1) -> None:
    """Use the sentence encoder exported into `folder` (export.encoder_file), if any, for texts outside
    the table. It must be the encoder the table was made with: one known caption is re-embedded and must
    agree (cosine >= 0.9; MiniLM fp32 gives 1.0000, int8 >= 0.96, another encoder ~0), else ConfigError."""
    from wallwm_edge.export.encoder_file import TextEncoder

    enc = TextEncoder.find(folder, threads=threads)
    if enc is None:
        return
    if enc.dim != text_dim:
        raise ConfigError(f"{enc.path}: the text encoder gives {enc.dim}-d embeddings, {where} takes {text_dim}-d instructions")
    if captions.table:
        text = next(iter(captions.table))
        ref, got = np.asarray(captions.table[text], np.float32), enc.encode([text])[0]
        cos = float(ref @ got / max(float(np.linalg.norm(ref) * np.linalg.norm(got)), 1e-12))
        if cos < 0.9:
            raise ConfigError(f"{enc.path}: the text encoder disagrees with {where}'s caption table (cosine {cos:.3f} on {text!r}): "
                              f"the student was trained with another encoder; remove {folder / 'text_encoder.json'} or re-export")
    captions.encoder = enc


def _has_trt_engine(onnx_path) -> bool:
    from wallwm_edge.runtime.trt_engine import find_engine

    return find_engine(onnx_path) is not None


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
        self.captions = Captions(sidecar["captions"])  # + the sentence encoder beside the student (load attaches it)
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
            if srec["kind"] == "step" and srec.get("config") == record.get("config") and srec["steps"] == record["steps"] \
                    and (backend != "trt" or _has_trt_engine(srec["onnx_path"])):  # trt: only when --trt built the step graph too
                step = (srec, open_engine(srec["onnx_path"], backend, threads))
        student = cls(record, open_engine(record["onnx_path"], backend, threads), seed, step)
        attach_encoder(student.captions, side.parent, Path(record["onnx_path"]).name, int(record.get("text_dim", 384)))
        return student

    @property
    def can_inpaint(self) -> bool:
        return self.step_engine is not None

    @property
    def name(self) -> str:
        return f"{Path(self.meta.get('onnx_path', '?')).name} ({self.meta.get('preset')}, {self.meta.get('precision')}, {self.engine.name})"

    def embed(self, text: str) -> np.ndarray:
        """(384,) float32 for an instruction: the sidecar's caption table, else the on-board sentence
        encoder beside the student (export.encoder_file); DataError naming the text when neither has it."""
        if text in self._embed_cache:
            return self._embed_cache[text]
        if text not in self.captions:
            raise DataError(self.unknown_instruction(text))
        e = np.asarray(self.captions[text], np.float32)
        self._embed_cache[text] = e
        return e

    @property
    def text_encoder(self):
        """The on-board sentence encoder (export.encoder_file.TextEncoder), or None."""
        return self.captions.encoder

    def unknown_instruction(self, text: str) -> str:
        """Why `text` cannot be embedded, and how to make it so (one line; the prompt prints it too)."""
        from wallwm_edge.validate import quote

        known = ", ".join(quote(c, 60) for c in self.captions.known[:6])
        folder = Path(self.meta.get("onnx_path", "STUDENT/x")).parent
        return (f"instruction {quote(text, 200)} is not in the student's caption table ({len(self.captions)} captions, e.g. {known}) "
                f"and no sentence encoder is beside the student: use a known caption, or add the encoder with "
                f"`wallwm-edge export-encoder --out {folder}` (needs torch once, on any machine; then copy the files beside the student)")

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
        if hasattr(self.step_engine, "denoise"):  # TensorRT engine: the whole loop on the device, one CUDA graph
            x, state["end_logit"] = self.step_engine.denoise(obs, feeds["noise_video"], x0, pre, self.steps)
            out = x * self.std + self.mean
        elif ext.has("denoise_loop"):
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
