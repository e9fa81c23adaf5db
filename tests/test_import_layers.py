"""Packages import one way down the data flow of DESIGN.md, function-level imports included.

Every `import` / `from ... import` of every module under wallwm_edge/ is read with `ast` (module level,
inside functions, under `if TYPE_CHECKING:` alike: a cycle hidden in a function is still a cycle) and
each import of another package must go to a package in an earlier layer:

    errors, validate    the foundation: every package raises these errors and validates with these helpers
    bridge              the host side of the link: a leaf library the runtime pushes chunks into; it
                        imports nothing of the pipeline (the flow's last arrow is data leaving, not an import)
    calibration         the rig file: episodes carry it, the sight-cone masks are computed from it
    ops                 the `_C` kernels and their references (the sight-cone geometry takes a rig)
    data                episodes
    events              event records, vocabulary, sampler
    sim                 the simulated cell that generates episodes with their events
    model               the denoiser
    train               trainer and distillation -> teacher and student checkpoints
    export              quantization, ONNX, parity gates, TensorRT -> the files the robot runs
    runtime             the on-board loop over an exported student
    eval                closed-loop evaluation of checkpoints with the runtime's planner and Task Progress

The command line is the product's surface above all of them (DESIGN.md, "Command line"): wallwm_edge/cli.py,
__main__.py, bench.py and every package's `cli.py` / `*_cli.py` may import any package; nothing else may
import them.

KNOWN lists the upward imports that remain, each with why and what removes it. It is not an allow-list
that grows quietly: the test also fails when a listed import is gone, so the list only shrinks.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "wallwm_edge"

LAYERS = [
    ("errors", "validate"),
    ("bridge",),
    ("calibration",),
    ("ops",),
    ("data",),
    ("events",),
    ("sim",),
    ("model",),
    ("serve",),  # serves a checkpoint; train's distiller labels through its client
    ("train",),
    ("export",),
    ("runtime",),
    ("eval",),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
RANK["_C"] = RANK["ops"]  # the compiled kernels (csrc/): ops/ is their Python face
SURFACE_TOP = {"cli", "__main__", "bench", "__init__"}

KNOWN = {
    ("wallwm_edge/train/distill.py", "wallwm_edge.export.parity"):
        "distillation reports the student against the teacher with the one parity metric (export/parity.py, where "
        "DESIGN.md puts the gates); removed by moving `compare` below train or gating the student in export",
}


def _owner(path: Path) -> tuple[str, bool]:
    """(package or top-level module name, whether the module is command-line surface)."""
    rel = path.relative_to(PKG)
    top = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    surface = (len(rel.parts) == 1 and top in SURFACE_TOP) or rel.stem == "cli" or rel.stem.endswith("_cli")
    return top, surface


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "wallwm_edge"]
        else:
            continue
        for name in names:
            if name.startswith("wallwm_edge.") and name.count(".") >= 1:
                yield node.lineno, name


def _is_surface_target(name: str) -> bool:
    parts = name.split(".")[1:]
    return parts[0] in SURFACE_TOP - {"__init__"} or any(p == "cli" or p.endswith("_cli") for p in parts[1:2])


def violations() -> dict[tuple[str, str], list[int]]:
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted(PKG.rglob("*.py")):
        src, surface = _owner(path)
        if surface:
            continue
        for lineno, name in _imports(path):
            dst = name.split(".")[1]
            if dst == src and not _is_surface_target(name):
                continue
            assert _is_surface_target(name) or dst in RANK, f"{path}: {name}: package {dst!r} is in no layer of this test"
            assert src in RANK, f"{path}: package {src!r} is in no layer of this test"
            if _is_surface_target(name) or RANK[dst] > RANK[src]:
                key = (str(path.relative_to(PKG.parent)), name)
                found.setdefault(key, []).append(lineno)
    return found


def test_every_package_is_in_a_layer():
    packages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PKG.glob("*.py")}
    assert packages | (modules - SURFACE_TOP) == set(RANK) - {"_C"}


def test_packages_import_only_down_the_data_flow():
    found = violations()
    new = {k: v for k, v in found.items() if k not in KNOWN}
    assert not new, "imports up the data flow (DESIGN.md): " + "; ".join(f"{f}:{lines} imports {m}" for (f, m), lines in new.items())


def test_known_upward_imports_are_still_there():
    """A fixed entry must leave KNOWN, so the list cannot hide a new one under an old name."""
    gone = sorted(set(KNOWN) - set(violations()))
    assert not gone, f"no longer imported, remove from KNOWN: {gone}"
