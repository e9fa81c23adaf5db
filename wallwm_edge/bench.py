"""Benchmarks: `wallwm-edge bench NAME [--quick]` and the one JSON format they all write.

Each benchmark is a script `benchmarks/NAME.py` with `main(argv) -> int`. It measures side by side in one
run (figures are ratios against a baseline measured in the same run wherever a time is involved) and calls
`write_result`, which writes RESULTS/NAME.json:
{"benchmark", "command", "machine", "date", "quick", "figures", "goals", "met"}.

RESULTS is `bench --out DIR` when given, else $WALLWM_BENCH_RESULTS, else ./benchmarks/results under the
current folder (never the installed package's source checkout unless you run from it). A --quick run
writes NAME_quick.json, so it never overwrites a full run's result. Goals not met are one warning line
on stderr (`bench --strict` also exits 1).
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


def cpu_isa() -> str:
    """The vector instruction sets a figure depends on: AVX-512 / AVX2 / NEON (and bf16 support)."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        flags = set()
    names = [n for n, f in (("AVX-512", "avx512f"), ("AVX512-VNNI", "avx512_vnni"), ("AVX512-BF16", "avx512_bf16"),
                            ("AMX-BF16", "amx_bf16"), ("AVX2", "avx2"), ("FMA", "fma"), ("NEON", "asimd"), ("SVE", "sve"))
             if f in flags]
    if not names and platform.machine() in ("aarch64", "arm64"):
        names = ["NEON"]
    return ", ".join(names) or "SSE only"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith(("model name", "cpu model", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return (f"{cpu_model()} ({platform.machine()}; ISA: {cpu_isa()}), {os.cpu_count()} cores, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


# Set by `wallwm-edge bench` for the script it runs (None: decide from the environment / sys.argv).
_SESSION: dict = {"results": None, "quick": None, "unmet": []}


def resolve_results_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where results go: `explicit`, else `bench --out`, else $WALLWM_BENCH_RESULTS, else ./benchmarks/results."""
    for cand in (explicit, _SESSION["results"], os.environ.get("WALLWM_BENCH_RESULTS")):
        if cand:
            return Path(cand)
    return Path.cwd() / "benchmarks" / "results"


def _is_quick() -> bool:
    return bool(_SESSION["quick"]) if _SESSION["quick"] is not None else "--quick" in sys.argv[1:]


def result_name(name: str, quick: bool) -> str:
    """NAME for a full run, NAME_quick for a --quick one (a quick run never overwrites a full result)."""
    return f"{name}_quick" if quick and not name.endswith("_quick") else name


def unmet_line(name: str, goals: dict, met: dict, path: Path, quick: bool) -> str | None:
    """One warning line naming the goals not met, or None when every goal is met."""
    missed = [k for k, ok in met.items() if not ok]
    if not missed:
        return None
    shown = ", ".join(f"{k} (goal {goals[k]})" if k in goals else k for k in missed[:3]) + (", ..." if len(missed) > 3 else "")
    why = ("a --quick run is small and takes whatever load the machine has: rerun without --quick on an idle machine "
           "before comparing with README" if quick else "timings suffer on a loaded machine: rerun on an idle one")
    return f"warning: {name}: {len(missed)} of {len(met)} goals not met: {shown}; {why} (figures in {path})"


def write_result(name: str, figures: dict, goals: dict, met: dict, results_dir: Path | None = None) -> Path:
    """Write RESULTS/NAME.json (NAME_quick.json for a --quick run), print the figures and, when a goal is
    missed, one warning line on stderr; returns the path."""
    quick = _is_quick()
    name = result_name(name, quick)
    out_dir = resolve_results_dir(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "machine": machine(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
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
    line = unmet_line(name, goals, met, path, quick)
    if line:
        _SESSION["unmet"].append(name)
        print(line, file=sys.stderr, flush=True)
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
    _SESSION.update(results=args.out, quick=bool(args.quick), unmet=[])
    try:
        namespace = runpy.run_path(str(script), run_name="wallwm_bench")
        rc = int(namespace["main"](["--quick"] if args.quick else []) or 0)
    finally:
        unmet = list(_SESSION["unmet"])
        _SESSION.update(results=None, quick=None, unmet=[])
    return 1 if rc == 0 and args.strict and unmet else rc


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark (writes ./benchmarks/results/NAME.json, or --out DIR)",
        description="Run benchmarks/NAME.py; it measures side by side and writes OUT/NAME.json (a --quick run: "
        "OUT/NAME_quick.json, so it never overwrites a full result). Goals not met: one warning line on stderr.\n\n"
        "examples:\n  wallwm-edge bench attention --quick\n  wallwm-edge bench attention --out /tmp/bench --strict",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help=f"benchmark name ({', '.join(available()) or 'see benchmarks/'})")
    p.add_argument("--quick", action="store_true", help="smaller run that prints the same figures (writes NAME_quick.json)")
    p.add_argument("--out", "--results", dest="out", default=None, metavar="DIR",
                   help="folder for the result JSON (default: $WALLWM_BENCH_RESULTS, else ./benchmarks/results under the current folder)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is not met (default: warn and exit 0)")
    p.set_defaults(func=_run)
