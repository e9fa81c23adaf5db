"""Benchmarks: `wallwm-edge bench NAME [--quick]` and the one JSON format they all write.

Each benchmark is a script `benchmarks/NAME.py` with `main(argv) -> int`. It measures side by side in one
run (figures are ratios against a baseline measured in the same run wherever a time is involved) and calls
`write_result`, which writes `benchmarks/results/NAME.json`:
{"benchmark", "command", "machine", "date", "figures", "goals", "met"}.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import runpy
import sys
from pathlib import Path

from wallwm_edge.errors import WallwmError

REPO_ROOT = Path(__file__).resolve().parent.parent


def benchmarks_dir() -> Path:
    """The benchmarks folder: WALLWM_BENCHMARKS, else the repository's (source checkout), else ./benchmarks."""
    env = os.environ.get("WALLWM_BENCHMARKS")
    for cand in ([Path(env)] if env else []) + [REPO_ROOT / "benchmarks", Path.cwd() / "benchmarks"]:
        if cand.is_dir():
            return cand
    raise WallwmError("no benchmarks/ folder found: run from a source checkout or set WALLWM_BENCHMARKS")


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def write_result(name: str, figures: dict, goals: dict, met: dict, results_dir: Path | None = None) -> Path:
    """Write benchmarks/results/NAME.json and print the figures; returns the path."""
    out_dir = Path(results_dir) if results_dir else Path(os.environ.get("WALLWM_BENCH_RESULTS", benchmarks_dir() / "results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "machine": machine(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "figures": figures,
        "goals": goals,
        "met": met,
    }
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float) + "\n")
    os.replace(tmp, path)
    print(json.dumps({"benchmark": name, "figures": figures, "met": met}, indent=2, default=float))
    print(f"wrote {path}")
    return path


def available() -> list[str]:
    try:
        d = benchmarks_dir()
    except WallwmError:
        return []
    return sorted(p.stem for p in d.glob("*.py") if not p.stem.startswith("_"))


def _run(args) -> int:
    d = benchmarks_dir()
    script = d / f"{args.name}.py"
    if not script.is_file():
        raise WallwmError(f"unknown benchmark {args.name!r}; available: {', '.join(available()) or 'none'}")
    sys.path.insert(0, str(d))
    namespace = runpy.run_path(str(script), run_name="wallwm_bench")
    return int(namespace["main"](["--quick"] if args.quick else []) or 0)


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark (writes benchmarks/results/NAME.json)",
        description="Run benchmarks/NAME.py; it measures side by side and writes benchmarks/results/NAME.json.\n\n"
        "example:\n  wallwm-edge bench attention --quick",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help=f"benchmark name ({', '.join(available()) or 'see benchmarks/'})")
    p.add_argument("--quick", action="store_true", help="smaller run that prints the same figures")
    p.set_defaults(func=_run)
