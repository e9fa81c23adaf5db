"""TensorRT's own runtime on the engine `wallwm-edge export --trt` builds (engine name "trt").

    engine = TensorRTEngine("checkpoints/student/student.sample.onnx")   # finds student.sample.<profile>.engine
    out = engine.run(feeds)                                                # same interface as OrtEngine

Unlike engine "tensorrt" (onnxruntime's TensorRT execution provider, which builds and caches its own
engine), this deserializes the serialized engine with `trt.Runtime(logger).deserialize_cuda_engine`,
binds one CuPy device buffer per I/O tensor by name (TensorRT 10: `num_io_tensors`, `get_tensor_name`,
`set_tensor_address`, `execute_async_v3`), and runs on a CuPy stream: inputs host->device, one enqueue,
outputs device->host. Input/output names and shapes come from the sidecar beside the ONNX; a dynamic
"batch" axis runs at 1.

For the step graph (one velocity evaluation), `denoise` runs the runtime's whole Euler loop on the device
(K enqueues with the fused update, prefix hold and video integration between them as CuPy kernels),
captured once as a CUDA graph (`stream.begin_capture` / `end_capture`) and replayed per chunk; if capture
fails (old driver, a plugin that syncs) the same loop runs uncaptured on the stream.

tensorrt and cupy are imported inside `__init__`: this module imports anywhere; constructing the engine
where either (or a CUDA GPU) is missing raises one-line ConfigError naming what is missing and `--engine
onnx`-side fallbacks (`--engine cpu`, or `--engine tensorrt` through onnxruntime-gpu). Nothing here has
run on a GPU from the dev machines: benchmarks/gpu_check.py runs the cuda-marked tests
(tests/runtime/test_runtime_trt_engine.py) that build a tiny engine and compare it with onnxruntime.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError
from wallwm_edge.runtime.engine import Engine

FALLBACK = "use `--engine cpu` (onnxruntime; the ONNX engines) or `--engine tensorrt` (onnxruntime-gpu's TensorRT provider) instead"


def why_unavailable() -> str | None:
    """None when tensorrt, cupy and a CUDA GPU are all here, else what is missing, in one clause."""
    missing = []
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        missing.append("the tensorrt Python package (JetPack's python3-libnvinfer, or `pip install tensorrt`)")
    except OSError as e:
        missing.append(f"TensorRT's libraries ({str(e).splitlines()[0][:120]})")
    try:
        import cupy
    except ImportError:
        missing.append("cupy (`pip install cupy-cuda12x`)")
    except OSError as e:
        missing.append(f"CuPy's CUDA libraries ({str(e).splitlines()[0][:120]})")
    else:
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                missing.append("a CUDA GPU")
        except Exception:  # noqa: BLE001 - cudaErrorNoDevice, missing driver, ...: all mean "no GPU here"
            missing.append("a CUDA GPU (the CUDA runtime found none)")
    return None if not missing else "missing " + ", ".join(missing)


def find_engine(path: str | os.PathLike) -> Path | None:
    """The serialized engine for the graph at `path`: `path` itself if it is a .engine, else the newest
    `<onnx stem>.<profile>.engine` beside the .onnx/.json (what `export --trt` writes), else None."""
    p = Path(path)
    if p.suffix == ".engine":
        return p if p.is_file() else None
    stem = p.with_suffix("").name
    found = [e for e in p.parent.glob(f"{stem}.*.engine")
             if e.is_file() and "." not in e.name[len(stem) + 1: -len(".engine")]]  # X.sample.int8.P.engine is not X.sample's
    return max(found, key=lambda e: e.stat().st_mtime) if found else None


class TensorRTEngine(Engine):
    """A deserialized TensorRT engine on CuPy buffers. `path`: the .onnx / .json of the export (the
    engine is found beside it, see `find_engine`) or the .engine itself (the sidecar is then the .json of
    the engine name less its profile). `threads` is accepted for the Engine factory's signature."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: int = 0):
        reason = why_unavailable()
        if reason:
            raise ConfigError(f"engine 'trt' (TensorRT runtime on CuPy buffers) cannot run here: {reason}; {FALLBACK}")
        import cupy as cp
        import tensorrt as trt

        from wallwm_edge.export.sidecar import read_sidecar

        p = Path(path)
        engine_file = find_engine(p)
        if engine_file is None:
            raise ConfigError(f"{p}: no TensorRT engine beside it ({p.with_suffix('').name}.<profile>.engine); build one with "
                              f"`wallwm-edge export ... --trt PROFILE.json`, or {FALLBACK}")
        side = p if p.suffix in (".onnx", ".json") else engine_file.with_suffix("").with_suffix(".json")
        self.meta = read_sidecar(side)
        self.engine_path = engine_file
        self.name = f"tensorrt-{engine_file.name}"
        self.cp, self.trt = cp, trt
        self.device = cp.cuda.Device(device)
        self.device.use()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_file.read_bytes())
        if self.engine is None:
            raise ConfigError(f"{engine_file}: TensorRT could not deserialize it (built by another TensorRT version or for "
                              f"another GPU? rebuild it on this machine with `export --trt`); {FALLBACK}")
        self.context = self.engine.create_execution_context()
        self.stream = cp.cuda.Stream(non_blocking=True)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.outputs = [n for n in names if not is_input[n]]
        want_in = [d["name"] for d in self.meta["inputs"]]
        want_out = [d["name"] for d in self.meta["outputs"]]
        if sorted(want_in) != sorted(self.input_names) or sorted(want_out) != sorted(self.outputs):
            raise ConfigError(f"{engine_file}: tensors {sorted(self.input_names)} -> {sorted(self.outputs)} do not match the sidecar "
                              f"{side.name} ({sorted(want_in)} -> {sorted(want_out)}): rebuild the engine from this export")
        self.inputs = {d["name"]: d for d in self.meta["inputs"]}
        for d in self.meta["inputs"]:  # dynamic batch axes run at 1 (what the runtime feeds)
            if any(s < 0 for s in self.engine.get_tensor_shape(d["name"])):
                self.context.set_input_shape(d["name"], [1 if isinstance(s, str) else int(s) for s in d["shape"]])
        self.buf: dict = {}
        for n in names:
            shape = tuple(int(s) for s in self.context.get_tensor_shape(n))
            if any(s < 0 for s in shape):
                raise ConfigError(f"{engine_file}: tensor {n!r} still has a dynamic shape {list(shape)} after binding the inputs")
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))
            self.buf[n] = cp.zeros(shape, dtype)
            self.context.set_tensor_address(n, self.buf[n].data.ptr)
        self.device.synchronize()  # zeros ran on the legacy stream; ours does not wait for it
        self._graphs: dict = {}  # steps -> captured cupy.cuda.Graph, or None where capture failed
        self.graph_used: bool | None = None  # after denoise(): True (CUDA graph replay) / False (plain loop)

    # ---- one call ---------------------------------------------------------------------------------------
    def _put(self, name: str, x) -> None:
        b = self.buf[name]
        x = np.ascontiguousarray(np.asarray(x).astype(b.dtype, copy=False)).reshape(b.shape)
        b.set(x, stream=self.stream)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.ptr):
            raise ConfigError(f"{self.engine_path}: TensorRT execute_async_v3 failed (see its log above)")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(self.input_names) - set(feeds))
        if missing:
            raise ConfigError(f"{self.engine_path}: input(s) {missing} not fed")
        with self.device:
            for n in self.input_names:
                self._put(n, feeds[n])
            self._enqueue()
            out = {n: self.buf[n].get(stream=self.stream) for n in self.outputs}
            self.stream.synchronize()
        return {n: np.asarray(v, np.float32) if v.dtype == np.float16 else v for n, v in out.items()}

    # ---- the step graph's denoise loop on the device ----------------------------------------------------
    def _loop_body(self, steps: int) -> None:
        """K Euler steps, all on self.stream: the step graph's x_action / x_video inputs are the state. Every
        update is an in-place elementwise kernel (no temporaries: nothing allocates inside the capture)."""
        b = self.buf
        xa, xv, t = b["x_action"], b["x_video"], b["t"]
        self._k_update(b["_x0"], b["_hold"], b["_pre"], np.float32(0.0), xa, replace=True)
        self.cp.copyto(xv, b["_v0"])
        for k in range(steps):
            t.fill(k / steps)
            self._enqueue()
            self._k_update(b["v_action"], b["_hold"], b["_pre"], np.float32(1.0 / steps), xa, replace=False)
            self._k_add(b["v_video"], np.float32(1.0 / steps), xv)

    def _kernels(self) -> None:
        cp = self.cp
        # x <- (x (or v when replace) + dt * v) held at pre where hold == 1; float math for float16 buffers
        upd = cp.ElementwiseKernel(
            "V v, T hold, T pre, float32 dt, bool replace", "T x",
            "float h = (float)hold; float base = replace ? (float)v : (float)x + dt * (float)v;"
            "x = (T)(base * (1.f - h) + (float)pre * h)", "wallwm_trt_flow_hold")
        add = cp.ElementwiseKernel("V v, float32 dt", "T x", "x = (T)((float)x + dt * (float)v)", "wallwm_trt_flow_add")
        self._k_update = lambda v, hold, pre, dt, x, replace: upd(v, hold, pre, dt, replace, x)
        self._k_add = lambda v, dt, x: add(v, dt, x)

    def denoise(self, obs: dict, x_video: np.ndarray, x_action: np.ndarray, prefix: np.ndarray, steps: int):
        """The runtime's inpainting loop (Student._inpaint) on the device: x_action from `x_action`, its first
        P rows held at `prefix` (1, P, A) (normalised) after every step, x_video integrated alongside, t = k/steps.
        Returns (x_action (1, L, A) normalised float32, end_logit of the last step). Captured as one CUDA graph
        on the first call with this `steps`, replayed after; `graph_used` says which ran."""
        need = {"x_action", "x_video", "t", "v_action", "v_video"}
        if not need <= set(self.buf):
            raise ConfigError(f"{self.engine_path}: denoise needs the step graph (tensors {sorted(need)}), this engine has {sorted(self.buf)}")
        cp = self.cp
        with self.device:
            xa = self.buf["x_action"]
            if "_x0" not in self.buf:  # static state buffers, addresses fixed before any capture
                self.buf["_x0"] = cp.zeros_like(xa)
                self.buf["_pre"] = cp.zeros_like(xa)
                self.buf["_hold"] = cp.zeros((1, xa.shape[1], 1), xa.dtype)
                self.buf["_v0"] = cp.zeros_like(self.buf["x_video"])
                self._kernels()
                self.device.synchronize()  # zeros ran on the legacy stream; ours does not wait for it
            P = int(min(prefix.shape[1] if prefix is not None and prefix.ndim == 3 else 0, xa.shape[1]))
            pre = np.zeros(xa.shape, np.float32)
            hold = np.zeros((1, xa.shape[1], 1), np.float32)
            if P:
                pre[:, :P] = prefix[:, :P]
                hold[:, :P] = 1
            for n in self.input_names:
                if n in obs:
                    self._put(n, obs[n])
            self._put("_x0", x_action)
            self._put("_pre", pre)
            self._put("_hold", hold)
            self._put("_v0", x_video)
            graph = self._graphs.get(steps, "new")
            if graph == "new":
                graph = self._capture(steps)
                self._graphs[steps] = graph
            if graph is not None:
                graph.launch(self.stream)
            else:
                with self.stream:
                    self._loop_body(steps)
            self.graph_used = graph is not None
            x = self.buf["x_action"].get(stream=self.stream)
            end = self.buf["end_logit"].get(stream=self.stream) if "end_logit" in self.buf else None
            self.stream.synchronize()
        return np.asarray(x, np.float32), None if end is None else np.asarray(end, np.float32)

    def _capture(self, steps: int):
        """One warm-up run (TensorRT allocates on its first enqueue; nothing may allocate inside a capture),
        then the loop captured on the stream. None (plain loop from now on) where capture is refused."""
        with self.stream:
            self._loop_body(steps)
        self.stream.synchronize()
        try:
            with self.stream:
                self.stream.begin_capture()
                try:
                    self._loop_body(steps)
                finally:
                    graph = self.stream.end_capture()
            self.stream.synchronize()
            return graph
        except Exception:  # noqa: BLE001 - any capture failure: the uncaptured loop computes the same
            self.stream.synchronize()
            return None

    def close(self) -> None:
        self.stream.synchronize()
        self._graphs.clear()
        self.buf.clear()
        self.context = self.engine = None
