"""`wallwm-edge bridge` and `wallwm-edge fw-sim` from the command line."""

import subprocess
import sys

import numpy as np

from wallwm_edge.cli import main


def test_help_documents_ports_and_examples(capsys):
    outs = {}
    for cmd in ("bridge", "fw-sim"):
        try:
            main([cmd, "--help"])
        except SystemExit:
            pass
        outs[cmd] = capsys.readouterr().out
        assert "example" in outs[cmd]
    assert "serial:/dev/pts" in outs["bridge"] and "can:socketcan" in outs["bridge"]
    assert "--can" in outs["fw-sim"] and "PTY" in outs["fw-sim"]


def test_bridge_streams_a_npy_file_to_a_fw_sim(tmp_path, fw_sim_exe, monkeypatch):
    monkeypatch.setenv("WALLWM_FW_SIM", str(fw_sim_exe))
    sim = subprocess.Popen([sys.executable, "-m", "wallwm_edge", "fw-sim", "--log", str(tmp_path / "log")],
                           stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while not line.startswith("PTY"):
            line = sim.stdout.readline()
            assert line, "fw-sim exited"
        pts = np.zeros((2, 25, 7))
        pts[:, :, 0] = np.linspace(0, 0.2, 25)
        np.save(tmp_path / "c.npy", pts)
        r = subprocess.run([sys.executable, "-m", "wallwm_edge", "bridge", str(tmp_path / "c.npy"), "--port",
                            f"serial:{line.split()[1]}", "--wait", "5", "--blend", "append"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "chunk 1: 25 points queued" in r.stdout and "played" in r.stdout
        bad = tmp_path / "bad.csv"
        bad.write_text("0,0,0,0,0,0,0\n0,0,nan,0,0,0,0\n")
        r = subprocess.run([sys.executable, "-m", "wallwm_edge", "bridge", str(bad), "--port",
                            f"serial:{line.split()[1]}"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "row 1, column 2" in r.stderr and "Traceback" not in r.stderr
    finally:
        sim.terminate()
        sim.wait(5)
