"""Robustness drills on the real loop: dropped frame, inference overrun, bridge disconnect, Ctrl-C.

Each runs `wallwm-edge run` in a subprocess against the simulated firmware on a pty and checks the
run's own log, the firmware's log and the report. None of them may lose the run's log.
"""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from runtime_helpers import HERE, TORCH_FREE_MAIN, read_jsonl, run_cli, runtime_env, wait_for

pytestmark = pytest.mark.slow


def fw_events(path):
    """(time_ms, text) of every firmware log line."""
    out = []
    for line in path.read_text().splitlines():
        t, _, rest = line.partition(" ")
        out.append((int(t), rest))
    return out


def test_drop_overrun_disconnect(tmp_path, tiny_student, repeated_plan):
    # The tiny export: its events never end by themselves, so every chunk is sent in full and the
    # firmware log has a chunk to point at for each drill, whatever the shipped student would signal.
    out = tmp_path / "drill"
    r = run_cli(["run", "--student", str(tiny_student), "--plan", str(repeated_plan), "--event-cap", "24",
                 "--max-chunks", "10", "--out", str(out), "--no-status", "--no-gif",
                 "--inject", "drop_frame@1", "--inject", "overrun@3:0.6", "--inject", "disconnect@5:0.7",
                 "--inject", "overrun@8:1.3"],
                runtime_env(), timeout=150)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "TORCH_FREE" in r.stdout
    log = read_jsonl(out / "log.jsonl")
    chunks = {c["chunk"]: c for c in log if c["kind"] == "chunk"}
    report = json.loads((out / "report.json").read_text())
    fw = fw_events(out / "fw.log")

    # 1. dropped frame: the wrist view's last good image stands in, the chunk is still computed
    drops = [x for x in log if x["kind"] == "frame_dropped"]
    assert len(drops) == 1 and drops[0]["chunk"] == 1 and drops[0]["view"] == "gripperPOV" and drops[0]["reused_previous"]
    assert 1 in chunks and report["counters"]["frames_dropped"] == 1

    # 2. overrun: chunk 3 took 0.6 s extra. The firmware played what it had, then held still (no chunk
    #    playing) until chunk 3 arrived; the loop counted those control steps as not served.
    assert chunks[3]["injected_delay_s"] == 0.6 and chunks[3]["infer_ms"] >= 600
    done2 = next(t for t, e in fw if e == "done chunk=2")
    start3 = next(t for t, e in fw if e == "start chunk=3")
    assert start3 - done2 > 250, (done2, start3)
    assert not any(e.startswith("start chunk=") for t, e in fw if done2 < t < start3)
    assert report["counters"]["overruns"] == 1 and report["counters"]["underrun_steps"] >= 5
    assert report["on_time"]["share"] < 1.0

    # 3. disconnect after chunk 5 for 0.7 s: the firmware's watchdog held the arm, the runtime
    #    reconnected (new handshake) and went on sending chunks that the firmware played.
    kinds = [x["kind"] for x in log]
    lost, restored = kinds.index("link_lost"), kinds.index("link_restored")
    assert lost < restored and report["counters"]["link_lost"] == 1 and report["counters"]["link_restored"] == 1
    assert any(re.match(r"hold faults=\d+", e) and int(e.split("=")[1].split()[0]) & 1 for t, e in fw), "no watchdog hold"
    after = [x for x in log[restored:] if x["kind"] == "chunk" and x["executed"] > 0]
    assert after, "no chunk sent after the link came back"
    assert f"start chunk={after[0]['chunk']}" in [e for t, e in fw]
    assert sum(1 for t, e in fw if e.startswith("hello session=")) >= 2  # a second session after reconnecting

    # 4. an overrun past stale_s (1 s): the result is stale when it arrives, so it is dropped, never played,
    #    and a fresh capture is taken
    stale = [x for x in log if x["kind"] == "stale_result"]
    assert [x["chunk"] for x in stale] == [8] and stale[0]["age_s"] > 1.0
    assert 8 not in chunks and 9 in chunks and "queued chunk=8 " not in (out / "fw.log").read_text()
    assert report["counters"]["stale_results"] == 1

    assert report["reason"] == "chunk limit" and kinds[-1] == "end"


def test_sigint_holds_and_writes_report(tmp_path, student_dir):
    out = tmp_path / "ctrlc"
    plan = tmp_path / "long.json"  # far more events than the run will reach before the signal
    plan.write_text(json.dumps({"pick-place-v3": ["reach:puck", "grasp:puck", "carry:puck@target"] * 40}))
    proc = subprocess.Popen([sys.executable, "-c", TORCH_FREE_MAIN, "run", "--student", str(student_dir), "--plan", str(plan),
                             "--max-steps", "2000", "--event-cap", "200", "--out", str(out), "--no-status"],
                            env=runtime_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE.parent.parent,
                            start_new_session=True)
    try:
        log_path = out / "log.jsonl"
        ok = wait_for(lambda: log_path.exists() and log_path.read_text().count('"kind": "chunk"') >= 2, 90)
        assert ok, "run did not produce two chunks"
        os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group, simulator included
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-3000:]
    assert "run ended: interrupted" in stdout and "TORCH_FREE" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["reason"] == "interrupted" and report["hold_confirmed"] is True
    log = read_jsonl(out / "log.jsonl")
    assert [x["kind"] for x in log][-2:] == ["hold", "end"] and log[-2]["confirmed"] is True
    assert sum(x["kind"] == "chunk" for x in log) >= 2
    fw = (out / "fw.log").read_text()
    assert re.search(r"^\d+ hold faults=", fw, re.M)  # the HOLD reached the firmware (it ignored the terminal's SIGINT)
    assert (out / "episode.gif").exists() and (out / "latency.png").exists()


def test_interactive_prompt_drives_the_events(tmp_path, tiny_student):
    """An operator types the next events (a key or a caption); an unknown one is refused and asked again."""
    out = tmp_path / "ask"
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE_MAIN, "run", "--student", str(tiny_student), "--interactive",
                           "--event-cap", "10", "--out", str(out), "--no-status", "--no-gif"],
                          input="reach the puck\njuggle the puck\ngrasp:puck\n\n", env=runtime_env(), capture_output=True,
                          text=True, timeout=120, cwd=HERE.parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not in the student's caption table" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["reason"] == "plan done"
    assert [e["instruction"] for e in report["events"]] == ["reach the puck", "grasp the puck"]
    assert all(e["end"] - e["start"] <= 10 for e in report["events"])  # the cap moved each event along
