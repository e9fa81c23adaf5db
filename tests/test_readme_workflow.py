"""README's workflow, walked command by command exactly as written there, at the smallest scale.

The command lines come from README.md itself: the fenced block between `<!-- workflow:begin` and
`<!-- workflow:end -->`. Each runs as a subprocess in one temporary folder (README's data/ and runs/
paths are relative), in README's order, and its promised output is checked: exit code, the files it
says it writes, the key lines it prints. STEPS below pairs every README line with its check, so a line
added to or dropped from README without its check here fails `test_readme_walk_is_the_tested_walk`.

Three things are not literally "run the line and wait", each the least needed to walk it:
- the first `train` line is interrupted with SIGINT (Ctrl-C) after its first checkpoint, so that the
  README's `--resume` line that follows continues a stopped run, as README says;
- `wallwm-edge fw-sim &` runs in the background (as `&` says) until the walk ends; the `/dev/pts/N`
  of the next line is the pseudo-terminal it printed, as README's comment says;
- `wallwm-edge` / `python` are this interpreter's (its console script, else `python -m wallwm_edge`),
  so the walk tests the package under test even where its bin folder is not on PATH.
README's second block (full scale, a LeRobot folder, the encoder export, a robot) is not run: every line
of it is parsed by the real argument parser, so its flags stay in step with `--help`.
Budget: the walk is sized to stay under ~4 minutes on two busy CPU cores.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
STEP_TIMEOUT_S = 240  # one step; the walk as a whole is meant to take well under 4 minutes
pytestmark = pytest.mark.slow


def _blocks() -> tuple[list[str], list[str]]:
    """(the workflow block's command lines, the full-scale block's command lines), comments dropped."""
    text = README.read_text()
    m = re.search(r"<!-- workflow:begin.*?-->\s*```bash\n(.*?)```\s*<!-- workflow:end -->(.*?)```bash\n(.*?)```", text, re.S)
    assert m, "README.md has no <!-- workflow:begin --> ... <!-- workflow:end --> block followed by the full-scale block"

    def lines(block):
        return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]

    return lines(m.group(1)), lines(m.group(3))


def _argv(line: str) -> tuple[list[str], bool]:
    """shell words of a README line (its comment dropped) and whether it ends with `&` (background)."""
    words = shlex.split(line, comments=True)
    background = bool(words) and words[-1] == "&"
    return (words[:-1] if background else words), background


def _exe(words: list[str]) -> list[str]:
    if words[0] == "python":
        return [sys.executable] + words[1:]
    if words[0] == "wallwm-edge":
        script = Path(sys.executable).with_name("wallwm-edge")
        if script.exists():
            return [str(script)] + words[1:]
        found = shutil.which("wallwm-edge")
        return ([found] if found else [sys.executable, "-m", "wallwm_edge"]) + words[1:]
    return words


# ------------------------------------------------------------------ the checks, one per README line
# Each check gets the finished process (rc, out, err) and the walk folder; it asserts what README
# (or the command's own output) promises.

def _ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"


def _said(r) -> str:
    """Everything a command printed: results go to stdout, progress and "wrote ..." notes may go to stderr."""
    return r.stdout + r.stderr


def check_generate(r, d):
    _ok(r)
    assert "wrote 4 episode(s)" in _said(r) and (d / "data/mw").is_dir()


def check_check(r, d):
    _ok(r)
    assert "data/mw: OK (0 error(s)" in _said(r)


def check_stats(r, d):
    _ok(r)
    assert "wrote stats.png" in _said(r) and (d / "stats.png").read_bytes()[:4] == b"\x89PNG"


def check_train_interrupted(r, d):
    # Ctrl-C after the first checkpoint: exit 130, every finished step saved, the resume command named
    assert r.returncode == 130, f"exit {r.returncode}\n{r.stderr[-3000:]}"
    m = re.search(r"interrupted: saved step (\d+) to runs/teacher; continue with: wallwm-edge train DATA --out runs/teacher --resume",
                  r.stderr)
    assert m, r.stderr[-3000:]
    assert 20 <= int(m.group(1)) < 200
    assert (d / "runs/teacher/train_state.safetensors").exists() and (d / "runs/teacher/model.safetensors").exists()


def check_train_resumed(r, d):
    _ok(r)
    summary = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("{")))
    assert summary["step"] == 200 and summary["out"] == "runs/teacher"
    steps = [int(ln.split(",")[0]) for ln in (d / "runs/teacher/loss.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == 200  # resumed rows continue the log, none twice


def check_eval(r, d):
    _ok(r)
    assert "split heldout_task not evaluated: --tasks names none of its held-out tasks" in r.stderr
    assert "(mean of novel_scene, heldout_paraphrase; without heldout_task)" in r.stdout
    doc = json.loads((d / "runs/teacher_eval.json").read_text())
    assert doc["config"]["image_size"] == [64, 64]  # the checkpoint's own, not the reference policies' --size
    assert doc["config"]["views"] == ["corner", "topview", "gripperPOV"]
    assert doc["config"]["splits"] == ["seen", "novel_scene", "heldout_paraphrase"]
    assert doc["summary"]["generalization"]["missing"] == ["heldout_task"]
    assert len(doc["episodes"]) == 6


def check_distill(r, d):
    _ok(r)
    assert json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("{")))["step"] == 50
    assert (d / "runs/student/model.safetensors").exists()


def check_export(r, d):
    _ok(r)
    for g in ("sample", "step"):
        assert re.search(rf"^{g}\s+fp32 .* PASS ", r.stdout, re.M) and re.search(rf"^{g}\s+int8 .* PASS ", r.stdout, re.M), r.stdout
        assert (d / f"checkpoints/student/student.{g}.onnx").exists() and (d / f"checkpoints/student/student.{g}.int8.onnx").exists()
    assert (d / "checkpoints/student/student.export.json").exists()


def check_quantize(r, d):
    _ok(r)
    assert re.search(r"^fp16 ", r.stdout, re.M) and (d / "checkpoints/student/student.sample.fp16.onnx").exists()


def check_board(r, d):
    _ok(r)
    assert (d / "sheets/charuco_a4.pdf").read_bytes()[:4] == b"%PDF" and (d / "sheets/charuco_a4.png").exists()


def check_synth(r, d):
    _ok(r)
    assert "wrote 45 images to capture/" in _said(r) and (d / "capture/rig_truth.json").exists()


def check_calibrate_run(r, d):
    _ok(r)
    assert "rig: rig.json" in _said(r) and json.loads((d / "rig.json").read_text())
    assert (d / "calib_report/report.html").exists()


def check_bump(r, d):
    _ok(r)
    assert "cam1 bumped by 1 deg and 5 mm" in _said(r) and (d / "new_capture/rig_truth.json").exists()


def check_calibrate_check(r, d):
    _ok(r)
    assert "moved: cam1" in _said(r) and (d / "rig_fixed.json").exists()


def check_run(r, d):
    _ok(r)
    assert "report: runs/board/report.json" in _said(r)
    report = json.loads((d / "runs/board/report.json").read_text())
    assert report, "empty run report"
    for f in ("latency.png", "episode.gif", "log.jsonl"):
        assert (d / "runs/board" / f).exists(), f


def check_chunks(r, d):
    _ok(r)
    import numpy as np

    assert np.load(d / "chunks.npy").shape == (2, 20, 7)


def check_fw_sim(pty, d):
    assert re.fullmatch(r"/dev/pts/\d+", pty), pty


def check_bridge(r, d):
    _ok(r)
    assert "played 2 of 2 chunks / 40 steps" in r.stdout, r.stdout


def check_bench(r, d):
    _ok(r)
    doc = json.loads((d / "bench/attention_quick.json").read_text())
    assert doc["benchmark"].startswith("attention") and doc["figures"]


# README line prefix -> (step id, check). In README's order; the prefix is what makes the pairing explicit.
STEPS = [
    ("wallwm-edge data generate", "generate", check_generate),
    ("wallwm-edge data check", "check", check_check),
    ("wallwm-edge data stats", "stats", check_stats),
    ("wallwm-edge train data/mw --out runs/teacher --steps", "train-interrupt", check_train_interrupted),
    ("wallwm-edge train data/mw --out runs/teacher --resume --threads 1", "train-resume", check_train_resumed),
    ("wallwm-edge eval runs/teacher", "eval", check_eval),
    ("wallwm-edge distill", "distill", check_distill),
    ("wallwm-edge export runs/student", "export-fp32-int8", check_export),
    ("wallwm-edge quantize", "quantize", check_quantize),
    ("wallwm-edge calibrate board", "calibrate-board", check_board),
    ("wallwm-edge calibrate synth --out capture/", "calibrate-synth", check_synth),
    ("wallwm-edge calibrate run", "calibrate-run", check_calibrate_run),
    ("wallwm-edge calibrate synth --out new_capture/ --bump", "calibrate-synth-bump", check_bump),
    ("wallwm-edge calibrate check", "calibrate-check", check_calibrate_check),
    ("wallwm-edge run", "run", check_run),
    ("python -c", "chunk-file", check_chunks),
    ("wallwm-edge fw-sim", "fw-sim", check_fw_sim),
    ("wallwm-edge bridge", "bridge", check_bridge),
    ("wallwm-edge bench", "bench-quick", check_bench),
]


def test_readme_walk_is_the_tested_walk():
    """README's workflow block and STEPS pair one to one, in order: README's commands are what is run."""
    walk, _ = _blocks()
    assert len(walk) == len(STEPS), f"README's workflow has {len(walk)} command lines, the test checks {len(STEPS)}:\n" + "\n".join(walk)
    for line, (prefix, name, _) in zip(walk, STEPS):
        assert line.startswith(prefix), f"step {name}: README says {line!r}, the test expects a line starting {prefix!r}"


def test_readme_full_scale_lines_parse():
    """The lines not walked (full scale, own data and hardware) name real commands and flags."""
    from wallwm_edge.cli import build_parser

    _, more = _blocks()
    assert more
    parser = build_parser()
    for line in more:
        words, _ = _argv(line)
        if words[0] == "torchrun":
            words = ["wallwm-edge"] + words[words.index("wallwm_edge.cli") + 1:]
        assert words[0] == "wallwm-edge", line
        try:
            parser.parse_args(words[1:])
        except SystemExit as e:
            pytest.fail(f"README line does not parse (exit {e.code}): {line}")


class Walk:
    """The walk's folder, its environment, the background fw-sim and whether a step has failed."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {**os.environ, "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa", "HF_HUB_OFFLINE": "1"}
        self.env.pop("WALLWM_BENCH_RESULTS", None)
        self.failed: str | None = None
        self.fw_sim: subprocess.Popen | None = None
        self.pty: str | None = None
        self.times: list[tuple[str, float, float]] = []  # step, wall s, CPU s of its processes

    def run(self, argv, timeout=STEP_TIMEOUT_S):
        return subprocess.run(argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)

    def close(self):
        if self.fw_sim is not None and self.fw_sim.poll() is None:
            self.fw_sim.send_signal(signal.SIGINT)  # fw-sim's Ctrl-C: it stops its simulator and exits
            try:
                self.fw_sim.wait(10)
            except subprocess.TimeoutExpired:
                self.fw_sim.kill()
                self.fw_sim.wait()


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    w = Walk(tmp_path_factory.mktemp("readme_walk"))
    t0 = time.perf_counter()
    yield w
    w.close()
    total = time.perf_counter() - t0
    cpu = sum(c for _, _, c in w.times)
    print("\nREADME walk (wall s / CPU s): " + ", ".join(f"{n} {t:.1f}/{c:.1f}" for n, t, c in w.times)
          + f"; total {total:.1f} s wall, {cpu:.1f} s CPU")


def _sigint_default() -> None:
    """In the child before exec: Ctrl-C's default action. A suite started in the background (`pytest &` from a
    script) ignores SIGINT, children inherit that, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _train_interrupted(w: Walk, argv):
    """Run README's train line and press Ctrl-C once its first checkpoint is on disk."""
    proc = subprocess.Popen(argv, cwd=w.root, env=w.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)
    state = w.root / "runs/teacher/train_state.safetensors"
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        time.sleep(0.3)  # inside the step loop, past the checkpoint's write
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _fw_sim(w: Walk, argv) -> str:
    """Start README's `wallwm-edge fw-sim &` and return the pty it prints."""
    w.fw_sim = subprocess.Popen(argv, cwd=w.root, env=w.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                preexec_fn=_sigint_default)
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = w.fw_sim.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.match(r"PTY (\S+)", line)
        if m:
            return m.group(1)
    pytest.fail(f"fw-sim printed no 'PTY /dev/pts/N' line: {''.join(seen)!r}")


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the walk's budget is CPU on a shared machine)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@pytest.mark.parametrize("index", range(len(STEPS)), ids=[s[1] for s in STEPS])
def test_readme_workflow_step(walk, index):
    prefix, name, check = STEPS[index]
    if walk.failed:
        pytest.skip(f"an earlier README step failed ({walk.failed})")
    line = _blocks()[0][index]
    assert line.startswith(prefix), f"README's line {index + 1} is {line!r}; see test_readme_walk_is_the_tested_walk"
    words, background = _argv(line)
    t0, c0 = time.perf_counter(), _children_cpu()
    try:
        if name == "train-interrupt":
            result = _train_interrupted(walk, _exe(words))
        elif name == "fw-sim":
            assert background, "README starts fw-sim in the background (&)"
            walk.pty = _fw_sim(walk, _exe(words))
            result = walk.pty
        else:
            if name == "bridge":
                assert walk.pty, "fw-sim did not start"
                words = [x.replace("/dev/pts/N", walk.pty) for x in words]
            result = walk.run(_exe(words))
        check(result, walk.root)
    except BaseException:
        walk.failed = name
        raise
    finally:
        walk.times.append((name, time.perf_counter() - t0, _children_cpu() - c0))
        if name == "bridge":
            walk.close()
