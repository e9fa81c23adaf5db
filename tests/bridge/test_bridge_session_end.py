"""Issue 14: `wallwm-edge bridge` on a chunk file, end to end against the real C firmware on a pty.

A file's chunks are paced so none is preempted or dropped before it moves the arm (and one that is makes
the command fail); a clean end of session (BYE) trips no watchdog, while a host that vanishes still does,
and the next `bridge` then names the remedy; the underrun after the last chunk is the stream's end, not a
fault, an underrun mid-stream is; `--port sim` waits for playback and says what played.

Watchdog deadlines are generous (the firmware simulator runs niced beside other work on a loaded
machine); waits are on events (log lines, STATEs, fates) with long deadlines.
"""

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from wallwm_edge.bridge import protocol as P
from wallwm_edge.bridge.firmware import SimulatedFirmware
from wallwm_edge.bridge.framing import serial_frame
from wallwm_edge.bridge.link import ArmLink
from wallwm_edge.bridge.playback import play
from wallwm_edge.cli import main

CALM = dict(hold_ms=1500, estop_ms=3000)


@pytest.fixture
def fw(tmp_path, fw_sim_exe):
    f = SimulatedFirmware(exe=fw_sim_exe, log=tmp_path / "fw.log", **CALM)
    yield f
    f.stop()


def chunk_file(path, n, rows):
    pts = np.zeros((n, rows, 7))
    pts[:, :, 0] = np.linspace(0.0, 0.1, rows)  # slow enough for the velocity limit
    pts[:, :, 6] = 0.5
    np.save(path, pts)
    return path


def bridge(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "wallwm_edge", "bridge", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def names(fw):
    return [e for _, e, _ in fw.events()]


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_file_plays_every_chunk_and_a_clean_end_trips_no_watchdog(tmp_path, fw):
    f = chunk_file(tmp_path / "c.npy", 3, 20)
    r = bridge(f, "--port", fw.port, "--rate", 100)
    assert r.returncode == 0, r.stderr
    assert re.search(r"played 3 of 3 chunks / 60 steps", r.stdout), r.stdout
    played = r.stdout.splitlines()[-1]
    assert "underrun" not in played, "the queue running dry after the last chunk is the end, not a fault"
    assert not {"preempted", "dropped", "stopped"} & set(names(fw)), fw.events()
    assert names(fw).count("done") == 3 and "bye" in names(fw)
    # a second session after the e-stop deadline has passed (measured on the simulator's clock below):
    # before issue 14 the watchdog had e-stopped the arm by then and this bridge failed
    time.sleep(CALM["estop_ms"] / 1000 + 1.5)
    r = bridge(f, "--port", fw.port, "--rate", 100)
    assert r.returncode == 0, r.stderr
    ev = fw.events()
    bye = next(t for t, e, _ in ev if e == "bye")
    hello2 = [t for t, e, _ in ev if e == "hello"][1]
    assert hello2 - bye >= CALM["estop_ms"], (bye, hello2)
    assert not {"hold", "estop"} & set(names(fw)), ev


def test_a_vanished_host_still_trips_the_watchdog_and_bridge_names_the_remedy(tmp_path, fw):
    link = ArmLink.open(fw.port)
    link.send_chunk(np.full((100, 7), 0.2), rate_hz=10.0)  # 10 s: still playing when the host vanishes
    link.wait_state(lambda s: s.mode == P.Mode.RUNNING, 10.0)
    link.close()  # no BYE: a disconnect
    wait_for(lambda: "estop" in names(fw), 30, "the watchdog e-stop")
    f = chunk_file(tmp_path / "c.npy", 1, 10)
    r = bridge(f, "--port", fw.port, "--rate", 100)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert "e-stopped" in err and "--reset" in err and "kill -USR1" in err and "watchdog_estop" in err, err
    r = bridge(f, "--port", fw.port, "--rate", 100, "--reset")
    assert r.returncode == 0, r.stderr
    assert "e-stop released" in r.stdout and "played 1 of 1 chunks / 10 steps" in r.stdout, r.stdout


def test_ensemble_file_is_paced_so_each_chunk_moves_the_arm_before_it_is_taken_over(tmp_path, fw):
    f = chunk_file(tmp_path / "c.npy", 4, 20)
    r = bridge(f, "--port", fw.port, "--rate", 50, "--blend", "ensemble")
    assert r.returncode == 0, r.stderr
    assert "played 4 of 4 chunks (3 taken over by the next)" in r.stdout, r.stdout
    pre = {kv["chunk"]: int(kv["row"]) for _, e, kv in fw.events() if e == "preempted"}
    assert sorted(pre) == ["0", "1", "2"] and min(pre.values()) >= 10, pre  # --every: half the chunk
    assert "dropped" not in names(fw) and names(fw).count("done") == 1


def test_a_dropped_chunk_makes_bridge_exit_non_zero(tmp_path, fw):
    f = chunk_file(tmp_path / "c.npy", 3, 20)
    p = subprocess.Popen([sys.executable, "-m", "wallwm_edge", "bridge", str(f), "--port", fw.port, "--rate", "10"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "start" in names(fw), 60, "the first chunk to start")
        # another party on the line e-stops the arm (anyone may): the chunks still queued are dropped
        fd = os.open(fw.path, os.O_WRONLY | os.O_NOCTTY)
        try:
            os.write(fd, serial_frame(P.control(P.ESTOP, 1, 0xE5709)))
        finally:
            os.close(fd)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert "estop" in names(fw)
    assert p.returncode == 2 and "Traceback" not in err, (out, err)
    line = err.strip().splitlines()[-1]
    # the e-stop lands either after the last chunk was queued (its fate: dropped) or before (the firmware
    # refuses it): both are the e-stop, named with its remedy
    assert ("did not play" in line and "(estop)" in line) or "refused it: e-stopped" in line, line
    assert "--reset" in line, line


def test_port_sim_waits_for_playback_and_prints_what_played(tmp_path, fw_sim_exe, monkeypatch):
    monkeypatch.setenv("WALLWM_FW_SIM", str(fw_sim_exe))
    r = bridge(chunk_file(tmp_path / "c.npy", 2, 20), "--port", "sim", "--rate", 100)
    assert r.returncode == 0, r.stderr
    assert "played 2 of 2 chunks / 40 steps" in r.stdout and "watchdog 1000/4000 ms" in r.stdout, r.stdout


def test_underrun_mid_stream_is_reported_the_final_one_is_not(fw):
    link = ArmLink.open(fw.port)
    try:
        a = np.full((10, 7), 0.05)

        def late_source():  # a source that is late with the second chunk: the arm stops in between
            yield a
            link.wait_state(lambda s: s.last_done == 0 and s.mode == P.Mode.IDLE, 30.0)
            yield a

        rep = play(link, late_source(), rate_hz=100.0)
        assert rep.played == 2 and rep.steps == 20
        assert link.underruns[:1] == [0] and link.underruns[-1] == 1, link.underruns  # both seen...
        assert [p for p in rep.problems if "underrun" in p] == [
            "underrun: the queue ran dry after chunk 0, before the stream's end"]  # ...one is a fault
        assert "underrun" in rep.faults
    finally:
        link.end_session()


@pytest.mark.parametrize("opt", [["--rate", "0"], ["--every", "0"], ["--wait", "-1"], ["--rate", "nan"]])
def test_bad_options_are_refused_before_anything_is_sent(tmp_path, opt, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bridge", str(tmp_path / "c.npy"), *opt])
    assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err
