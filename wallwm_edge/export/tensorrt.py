"""Build a TensorRT engine from an exported ONNX with the tensorrt Python API (float16 or int8).

Runs where TensorRT is installed (a Jetson with JetPack 6, or an x86 box with an NVIDIA GPU and
`pip install tensorrt`); everywhere else `build_engine` raises `TensorRTUnavailable` saying exactly what
is missing, so the CLI prints one line instead of an ImportError.

- float16: the float32 ONNX built with the FP16 flag; TensorRT keeps float32 where float16 would
  overflow, and the action boundary can be pinned to float32 with `fp32_layers_matching`.
- int8: the QDQ ONNX written by `wallwm-edge quantize` (explicit quantization): the scales come from
  our dataset calibration, so no TensorRT calibrator runs on the robot and host and Jetson quantize
  identically. Layers without Q/DQ (the action boundary) run in float16/float32.
- Optimization profiles: every input whose axis 0 is dynamic ("batch") gets min/opt/max batch from a
  build profile (export/profiles/*.json); other dims come from the ONNX.

The build profile JSON: {"name", "precision": "fp16"|"int8", "batch": [min, opt, max],
"workspace_mb": 1024, "builder_optimization_level": 3, "fp32_layers_matching": ["action_out", ...]}.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wallwm_edge.errors import ConfigError, WallwmError, read_json_object
from wallwm_edge.model.boundary import ACTION_BOUNDARY


class TensorRTUnavailable(WallwmError):
    """TensorRT (or a CUDA GPU it can use) is not present on this machine."""


@dataclass(frozen=True)
class BuildProfile:
    name: str = "default"
    precision: str = "fp16"  # "fp16" | "int8" | "fp32"
    batch: tuple[int, int, int] = (1, 1, 4)  # min, opt, max of every dynamic batch axis
    workspace_mb: int = 1024
    builder_optimization_level: int = 3
    fp32_layers_matching: tuple[str, ...] = ACTION_BOUNDARY  # what a profile JSON that names none pins

    def validate(self, where: str = "build profile") -> "BuildProfile":
        if self.precision not in ("fp16", "int8", "fp32"):
            raise ConfigError(f"{where}: field precision must be fp16, int8 or fp32, got {self.precision!r}")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise ConfigError(f"{where}: field batch must be [min, opt, max] with 1 <= min <= opt <= max, got {list(self.batch)}")
        return self


def load_profile(path: str | os.PathLike) -> BuildProfile:
    path = Path(path)
    d = read_json_object(path, ConfigError, "build profile not found")
    known = set(BuildProfile.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {unknown}; known: {sorted(known)}")
    for key in ("batch", "fp32_layers_matching"):
        if key in d:
            d[key] = tuple(d[key])
    return BuildProfile(**d).validate(str(path))


def why_unavailable() -> str | None:
    """None when TensorRT can build here, else the reason in one sentence."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        return (f"the tensorrt Python package is not installed ({e}); it ships with JetPack on a Jetson "
                "(python3-libnvinfer) or as `pip install tensorrt` on an x86 machine with an NVIDIA GPU")
    except OSError as e:  # the wheel is there but libnvinfer / libcudart cannot load
        return f"tensorrt is installed but its libraries cannot load ({e}); check the CUDA driver and LD_LIBRARY_PATH"
    try:
        import ctypes

        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
            return "tensorrt is installed but no CUDA GPU is visible (cuInit/cuDeviceGetCount found none)"
    except OSError:
        return "tensorrt is installed but the CUDA driver (libcuda.so.1) is missing: no NVIDIA GPU driver on this machine"
    return None


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, profile: BuildProfile = BuildProfile()) -> Path:
    """Parse `onnx_path`, build a serialized engine for `profile`, write it to `engine_path`."""
    reason = why_unavailable()
    if reason:
        raise TensorRTUnavailable(f"cannot build a TensorRT engine here: {reason}. Build on the target with "
                                  f"`wallwm-edge export --trt` or trtexec (see export/README.md).")
    import tensorrt as trt

    profile.validate()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT < 10 needs it; 10 ignores it
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError(f"{onnx_path}: TensorRT's ONNX parser refused it: {errors[:500]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, profile.workspace_mb << 20)
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = profile.builder_optimization_level
    if profile.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if profile.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from the QDQ nodes
    if profile.fp32_layers_matching and profile.precision != "fp32":
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if any(p in layer.name for p in profile.fp32_layers_matching):
                layer.precision = trt.float32
    opt_profile = builder.create_optimization_profile()
    dynamic = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise ConfigError(f"{onnx_path}: input {tensor.name!r} has dynamic non-batch dims {shape}; export with fixed sizes")
        if shape and shape[0] < 0:
            dynamic = True
            lo, opt, hi = profile.batch
            opt_profile.set_shape(tensor.name, [lo] + shape[1:], [opt] + shape[1:], [hi] + shape[1:])
    if dynamic:
        config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigError(f"{onnx_path}: TensorRT failed to build an engine for profile {profile.name!r} (see its log above)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    return engine_path


def trtexec_command(sidecar: str | os.PathLike, profile: BuildProfile, engine_path: str | os.PathLike | None = None) -> str:
    """The equivalent `trtexec` command line for an exported ONNX (for Jetsons without TensorRT's
    Python bindings in the project's Python): shapes from the sidecar, batch from the profile, and the
    action-boundary layers pinned to float32 by their ONNX node names (TensorRT keeps those names)."""
    import onnx

    from wallwm_edge.export.onnx_export import nodes_under
    from wallwm_edge.export.sidecar import read_sidecar

    rec = read_sidecar(sidecar)
    onnx_path = Path(rec["onnx_path"])
    engine = Path(engine_path) if engine_path else onnx_path.with_suffix(f".{profile.name}.engine")

    def shapes(batch: int) -> str:
        return ",".join(f"{i['name']}:" + "x".join(str(batch if d == "batch" else d) for d in i["shape"]) for i in rec["inputs"])

    lo, opt, hi = profile.batch
    parts = ["/usr/src/tensorrt/bin/trtexec", f"--onnx={onnx_path.name}", f"--saveEngine={engine.name}",
             f"--minShapes={shapes(lo)}", f"--optShapes={shapes(opt)}", f"--maxShapes={shapes(hi)}",
             f"--memPoolSize=workspace:{profile.workspace_mb}M", f"--builderOptimizationLevel={profile.builder_optimization_level}"]
    if profile.precision in ("fp16", "int8"):
        parts.append("--fp16")
    if profile.precision == "int8":
        parts.append("--int8")
    if profile.fp32_layers_matching and profile.precision != "fp32":
        kept = nodes_under(onnx.load(str(onnx_path)), tuple(profile.fp32_layers_matching))
        if kept:
            parts += ["--precisionConstraints=obey", "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in kept)]
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """python -m wallwm_edge.export.tensorrt SIDECAR.json PROFILE.json [--build]: print the trtexec
    command, or (--build) build the engine with the Python API here."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m wallwm_edge.export.tensorrt", description=main.__doc__)
    ap.add_argument("sidecar")
    ap.add_argument("profile")
    ap.add_argument("--build", action="store_true", help="build with the tensorrt Python API instead of printing")
    args = ap.parse_args(argv)
    prof = load_profile(args.profile)
    if args.build:
        from wallwm_edge.export.sidecar import read_sidecar

        onnx_path = Path(read_sidecar(args.sidecar)["onnx_path"])
        print(build_engine(onnx_path, onnx_path.with_suffix(f".{prof.name}.engine"), prof))
    else:
        print(trtexec_command(args.sidecar, prof))
    return 0


if __name__ == "__main__":
    import sys

    try:
        sys.exit(main())
    except WallwmError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
