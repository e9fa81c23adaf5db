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


def test_third_party_chatter_is_quieted(monkeypatch):
    """torchvision's import-time warnings and transformers' logs/progress bars stay out of the commands'
    output; a user's own setting of those variables is kept."""
    import os
    import warnings

    from wallwm_edge.cli import quiet_third_party

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}
    env["TRANSFORMERS_VERBOSITY"] = "debug"
    monkeypatch.setattr(os, "environ", env)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn_explicit("Failed to load image Python extension", UserWarning, "image.py", 1, module="torchvision.io.image")
        warnings.warn_explicit("ours", UserWarning, "x.py", 1, module="wallwm_edge.x")
    assert [str(w.message) for w in caught] == ["ours"]
    assert env["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and env["TRANSFORMERS_VERBOSITY"] == "debug"
