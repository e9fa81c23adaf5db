"""`wallwm-edge bench`: results go where the user asked (never into the source checkout by default), a
--quick run never overwrites a full result, and goals not met are one warning line."""

import json
import os

import pytest

from wallwm_edge import bench
from wallwm_edge.cli import main

FAKE = """
import argparse
from wallwm_edge.bench import write_result

def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    speedup = 0.2 if a.quick else 3.0
    write_result("fake", {"speedup": speedup}, {"speedup": 2.0, "exact": True}, {"speedup": speedup >= 2.0, "exact": True})
    return 0
"""


@pytest.fixture
def fake_benchmarks(tmp_path, monkeypatch):
    d = tmp_path / "src" / "benchmarks"
    (d / "results").mkdir(parents=True)
    (d / "fake.py").write_text(FAKE)
    committed = d / "results" / "fake.json"
    committed.write_text('{"committed": true}\n')
    monkeypatch.setenv("WALLWM_BENCHMARKS", str(d))
    monkeypatch.delenv("WALLWM_BENCH_RESULTS", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return d, committed, work


def test_default_is_benchmarks_results_under_the_current_folder(fake_benchmarks, capsys):
    d, committed, work = fake_benchmarks
    assert main(["bench", "fake"]) == 0
    out = work / "benchmarks" / "results" / "fake.json"
    rec = json.loads(out.read_text())
    assert rec["benchmark"] == "fake" and rec["quick"] is False and rec["met"] == {"speedup": True, "exact": True}
    assert json.loads(committed.read_text()) == {"committed": True}  # the source checkout is untouched
    assert "warning" not in capsys.readouterr().err


def test_out_option_and_quick_never_overwrites_a_full_result(fake_benchmarks, tmp_path, capsys):
    d, committed, work = fake_benchmarks
    res = tmp_path / "mine"
    assert main(["bench", "fake", "--out", str(res)]) == 0
    full = json.loads((res / "fake.json").read_text())
    assert main(["bench", "fake", "--quick", "--results", str(res)]) == 0
    assert json.loads((res / "fake.json").read_text()) == full  # the full result is kept
    quick = json.loads((res / "fake_quick.json").read_text())
    assert quick["benchmark"] == "fake_quick" and quick["quick"] is True
    assert not (work / "benchmarks").exists() and json.loads(committed.read_text()) == {"committed": True}


def test_goals_not_met_is_one_warning_line_and_strict_fails(fake_benchmarks, capsys):
    d, committed, work = fake_benchmarks
    assert main(["bench", "fake", "--quick"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("warning: fake_quick: 1 of 2 goals not met: speedup (goal 2.0)") and "without --quick" in err[0]
    assert main(["bench", "fake", "--quick", "--strict"]) == 1
    assert main(["bench", "fake", "--strict"]) == 0


def test_help_shows_out_and_strict(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "--out DIR" in out and "--results" in out and "--strict" in out and "NAME_quick.json" in out


def test_script_run_outside_the_cli_uses_the_environment_then_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WALLWM_BENCH_RESULTS", raising=False)
    assert bench.resolve_results_dir() == tmp_path / "benchmarks" / "results"
    monkeypatch.setenv("WALLWM_BENCH_RESULTS", str(tmp_path / "env"))
    assert bench.resolve_results_dir() == tmp_path / "env"
    assert bench.resolve_results_dir(tmp_path / "x") == tmp_path / "x"
    assert bench.result_name("termination_quick", True) == "termination_quick" and bench.result_name("a", True) == "a_quick"
    assert not os.path.exists(tmp_path / "benchmarks")
