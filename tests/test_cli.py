import subprocess
import sys

from wallwm_edge.cli import main


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "wallwm-edge" in out and "bench" in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "wallwm_edge", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "wallwm-edge" in r.stdout


def test_unknown_benchmark_is_one_clear_line(capsys):
    assert main(["bench", "no-such-benchmark"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'no-such-benchmark'" in err and "Traceback" not in err
