"""Parity gates: an exported or quantized model must reproduce its parent's actions, or the export fails.

Every step of the edge pipeline (teacher -> student -> ONNX float32 -> float16 / int8 -> TensorRT) is
compared with its parent on fresh inputs it never saw during calibration. The gates are the ones NVIDIA
uses for GR00T deployment: actions cosine >= 0.99 and mean |error| <= 0.05 for float32/float16, cosine
>= 0.98 for int8 (int8 shifts every value a little, so an L1 bound would be about the scale, not the
shape, of the chunk). Numbers are compared in the model's normalised action space, where an action is
O(1), so the L1 bound means the same on every robot.

numpy only: the torch-free runtime can re-check an engine on board.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from wallwm_edge.errors import WallwmError


class ParityError(WallwmError):
    """An exported model missed its parity gate; the message names the variant, the figure and the bound."""


@dataclass(frozen=True)
class Gate:
    """Bounds one precision must meet. `l1_max=None` means no L1 bound."""

    precision: str
    cosine_min: float
    l1_max: float | None


GATES = {
    "fp32": Gate("fp32", cosine_min=0.99, l1_max=0.05),
    "fp16": Gate("fp16", cosine_min=0.99, l1_max=0.05),
    "int8": Gate("int8", cosine_min=0.98, l1_max=None),
}


@dataclass(frozen=True)
class ParityReport:
    name: str  # what was compared, e.g. "student.sample.int8.onnx vs eager"
    precision: str
    cosine: float  # worst per-sample cosine over the batch (flattened valid actions)
    cosine_mean: float
    l1: float  # mean absolute error over valid action entries
    max_abs: float
    nonfinite: int  # NaN/inf count in the candidate
    samples: int
    passed: bool
    why: str  # "" when passed, else the violated bound(s)

    def to_json(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        verdict = "PASS" if self.passed else f"FAIL ({self.why})"
        return (f"{self.name} [{self.precision}]: cosine min {self.cosine:.5f} mean {self.cosine_mean:.5f}, "
                f"L1 {self.l1:.5f}, max |err| {self.max_abs:.4f}, n={self.samples}: {verdict}")


def _cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Per-sample cosine of (B, ...) arrays flattened per sample. Two all-zero samples count as identical."""
    r = ref.reshape(ref.shape[0], -1).astype(np.float64)
    g = got.reshape(got.shape[0], -1).astype(np.float64)
    nr, ng = np.linalg.norm(r, axis=1), np.linalg.norm(g, axis=1)
    dot = (r * g).sum(axis=1)
    cos = dot / np.maximum(nr * ng, 1e-12)
    cos = np.where((nr < 1e-12) & (ng < 1e-12), 1.0, cos)
    return cos


def compare(name: str, ref: np.ndarray, got: np.ndarray, precision: str = "fp32", valid: np.ndarray | None = None) -> ParityReport:
    """Compare candidate actions `got` with reference `ref`, both (B, L, A); `valid` (B, L) bool masks padding.

    Padding rows (beyond an event's length) are zeroed in both before comparing, so a model may put
    anything there; a NaN anywhere in the candidate fails the gate regardless.
    """
    if precision not in GATES:
        raise WallwmError(f"unknown precision {precision!r} for a parity gate; known: {', '.join(GATES)}")
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        raise ParityError(f"{name}: output shape {got.shape} differs from the reference's {ref.shape}")
    nonfinite = int((~np.isfinite(got)).sum())
    if valid is not None:
        v = np.asarray(valid, dtype=bool).reshape(valid.shape + (1,) * (ref.ndim - np.ndim(valid)))
        ref, got = ref * v, np.where(v, got, 0.0)
        count = max(int(np.broadcast_to(v, ref.shape).sum()), 1)
    else:
        count = ref.size
    got_f = np.nan_to_num(got, nan=0.0, posinf=0.0, neginf=0.0)
    cos = _cosines(ref, got_f)
    err = np.abs(ref - got_f)
    l1 = float(err.sum() / count)
    gate = GATES[precision]
    why = []
    if nonfinite:
        why.append(f"{nonfinite} NaN/inf values")
    if cos.min() < gate.cosine_min:
        why.append(f"cosine {cos.min():.5f} < {gate.cosine_min}")
    if gate.l1_max is not None and l1 > gate.l1_max:
        why.append(f"L1 {l1:.5f} > {gate.l1_max}")
    return ParityReport(name, precision, float(cos.min()), float(cos.mean()), l1, float(err.max()) if err.size else 0.0,
                        nonfinite, int(ref.shape[0]), not why, "; ".join(why))


def enforce(report: ParityReport) -> ParityReport:
    """Raise ParityError (one clear line) unless the report passed; return it otherwise."""
    if not report.passed:
        raise ParityError(f"parity gate failed: {report.line()}")
    return report
