"""benchmarks/gpu_check.py on a machine without a GPU: its --help, its no-GPU exit (one line, code 2,
nothing written), and its step runner and JSON record on stand-in steps (ok, failed, timeout, skipped).
The GPU steps themselves need a CUDA GPU; nothing here measures them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def test_help_has_an_example():
    p = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert "examples:" in p.stdout and "python benchmarks/gpu_check.py" in p.stdout and "--skip-build" in p.stdout


def test_without_a_gpu_one_line_exit_2_and_nothing_written(gpu_check, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check, "detect_gpu", lambda: None)
    assert gpu_check.main(["--out", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA GPU found" in err[0]
    assert not (tmp_path / "results").exists()


def test_the_real_script_on_this_machine(gpu_check, tmp_path):
    if gpu_check.detect_gpu() is not None:
        pytest.skip("this machine has a GPU: the no-GPU path is covered by the monkeypatched test")
    p = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "no CUDA GPU found" in p.stderr
    assert list(tmp_path.iterdir()) == []


def test_cuda_arch_from_compute_capability(gpu_check):
    assert gpu_check.cuda_arch("9.0") == "90" and gpu_check.cuda_arch("8.7") == "87" and gpu_check.cuda_arch("12.0") == "120"


def test_step_runner_and_record_on_stand_in_steps(gpu_check, tmp_path):
    py = sys.executable
    result = gpu_check.RESULT_TAG + json.dumps({"figures": {"speedup": 2.5}, "goals": {"speedup": 1.0}, "met": {"speedup": True}})
    Step = gpu_check.Step
    steps = [
        Step("measures", [py, "-c", f"print('warming up'); print({result!r})"], 30),
        Step("fails", [py, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"], 30),
        Step("hangs", [py, "-c", "import time; time.sleep(30)"], 1),
        Step("after_hang", [py, "-c", "pass"], 30, needs="hangs"),
    ]
    lines = []
    records = gpu_check.run_steps(steps, budget_s=60, log=lines.append)
    assert [r["status"] for r in records] == ["ok", "failed", "timeout", "skipped"]
    assert records[0]["figures"] == {"speedup": 2.5} and "boom" in records[1]["tail"] and records[2]["seconds"] < 10
    assert len(lines) == 2 * len(steps)
    gpu = {"name": "Stand-in GPU", "compute_capability": "9.0", "driver": "0.0", "memory_mib": 1, "source": "test"}
    path = gpu_check.write_record(tmp_path / "gpu_check.json", gpu, "90", records, 12.3)
    rec = json.loads(path.read_text())
    assert rec["benchmark"] == "gpu_check" and rec["gpu"]["name"] == "Stand-in GPU" and rec["cuda_arch"] == "90"
    assert rec["machine"] and rec["date"] and rec["total_s"] == 12.3 and rec["budget_s"] < 480
    assert [s["name"] for s in rec["steps"]] == ["measures", "fails", "hangs", "after_hang"]
    assert rec["figures"] == {"measures": {"speedup": 2.5}}
    assert rec["goals"] == {"measures.speedup": 1.0} and rec["met"] == {"measures.speedup": True}


def test_budget_cuts_late_steps(gpu_check):
    steps = [gpu_check.Step("late", [sys.executable, "-c", "pass"], 30)]
    (rec,) = gpu_check.run_steps(steps, budget_s=0.5, log=lambda _: None)
    assert rec["status"] == "skipped" and "budget" in rec["why"]


def test_planned_steps_build_for_the_gpu_and_fit_the_budget(gpu_check, tmp_path):
    steps = gpu_check.plan_steps("90", quick=False, skip_build=False, junit=tmp_path / "j.xml")
    assert [s.name for s in steps] == ["build", "extension", "cuda_tests", "attention", "denoise"]
    assert steps[0].env == {"WALLWM_CUDA": "ON", "WALLWM_CUDA_ARCHS": "90"}
    assert "-m" in steps[2].argv and "cuda" in steps[2].argv
    assert sum(s.timeout_s for s in steps) <= gpu_check.BUDGET_S < 480
    assert [s.name for s in gpu_check.plan_steps("90", True, True, tmp_path / "j.xml")][0] == "extension"
