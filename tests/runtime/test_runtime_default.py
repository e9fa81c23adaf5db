"""The default path (README's first command) for a few chunks, in a fresh interpreter: torch-free, report folder."""

import json

import numpy as np
import pytest

from runtime_helpers import read_jsonl, run_cli, runtime_env, shipped_student

pytestmark = pytest.mark.slow


def test_default_run_few_chunks_torch_free(tmp_path, request):
    # The true default (no --student): checkpoints/student. Only while no student is shipped does the test
    # point WALLWM_STUDENT at the tiny export, so the path under test is otherwise exactly `wallwm-edge run`.
    student = None if shipped_student() else request.getfixturevalue("tiny_student")
    out = tmp_path / "run"
    r = run_cli(["run", "--max-chunks", "4", "--out", str(out), "--no-status"], runtime_env(student))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "TORCH_FREE" in r.stdout
    assert "run ended: " in r.stdout and "control steps served on time" in r.stdout, r.stdout

    # However the shipped policy signals its events, a few chunks went through the whole path: at most the
    # 4 asked for, exactly 4 unless the plan finished (or the task succeeded) first.
    report = json.loads((out / "report.json").read_text())
    log = read_jsonl(out / "log.jsonl")
    chunks = [rec for rec in log if rec["kind"] == "chunk"]
    assert report["reason"] in ("chunk limit", "plan done", "success"), report["reason"]
    assert 1 <= len(chunks) == report["counters"]["chunks"] <= 4
    assert len(chunks) == 4 or report["reason"] != "chunk limit"
    assert [c["chunk"] for c in chunks] == list(range(len(chunks)))
    sent = [c["chunk"] for c in chunks if c["executed"] > 0]
    assert sent, "no chunk reached the firmware"
    for stage, n in (("capture", len(chunks)), ("mask", len(chunks)), ("inference", len(chunks)), ("bridge", len(sent))):
        s = report["latency"][stage]
        assert s["n"] == n and 0 < s["p50_ms"] <= s["p99_ms"], (stage, s)
    assert report["on_time"]["steps"] > 0 and 0 <= report["on_time"]["share"] <= 1
    assert 0 <= report["task_progress"] <= 100 and isinstance(report["success"], bool)
    assert report["hold_confirmed"] is True

    kinds = [rec["kind"] for rec in log]
    assert kinds[:3] == ["start", "warm_up", "homed"] and kinds[-1] == "end" and "hold" in kinds
    assert chunks[0]["skipped_committed"] == 0  # nothing was queued before the first chunk
    if log[0]["rtc"] == "inpaint":  # the committed prefix was held during denoising, not only dropped after
        assert all(c["inpainted"] == c["committed"] for c in chunks)

    fw = (out / "fw.log").read_text()
    for c in sent:  # every chunk the runtime sent was queued and played by the firmware
        assert f"queued chunk={c} " in fw and f"start chunk={c}\n" in fw
    assert "hold" in fw

    import imageio.v3 as iio

    frames = iio.imread(out / "episode.gif", index=None)
    width = len(log[0]["views"]) * log[0]["image_size"][1] * 2
    assert frames.shape[0] == len(chunks) + 1 and frames.shape[2] == width  # a frame per capture + the end; views side by side, x2
    assert frames[:, -30:].std() > 0  # the caption band has text drawn on it
    assert (out / "latency.png").stat().st_size > 1000


def test_help_has_examples():
    from wallwm_edge.cli import build_parser

    parser = build_parser()
    for cmd in ("run", "demo"):
        sub = parser._subparsers._group_actions[0].choices[cmd]
        text = sub.format_help()
        assert "example" in text and "wallwm-edge" in text


def test_summary_numbers_match_report(tmp_path, student_dir, repeated_plan):
    """The synchronous baseline writes the same report; its on-time share is computed from the steps."""
    out = tmp_path / "sync"
    r = run_cli(["run", "--student", str(student_dir), "--plan", str(repeated_plan), "--sync", "--max-chunks", "3",
                 "--out", str(out), "--no-status", "--no-gif"], runtime_env())
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["scheduler"] == "sync" and not (out / "episode.gif").exists()
    ot = rep["on_time"]
    assert ot["steps"] > 0 and np.isclose(ot["share"], ot["served"] / ot["steps"], atol=1e-4)
    # Synchronous: nothing is queued while a chunk is computed, so no committed prefix is ever skipped.
    assert all(c["committed"] == 0 for c in read_jsonl(out / "log.jsonl") if c["kind"] == "chunk")


def test_robot_path_folder_cameras_and_rig_file(tmp_path, tiny_student):
    """The on-robot configuration: recorded camera folders + a rig file, no simulated world; proprio and the
    wrist camera's pose come from the firmware's reported EE pose."""
    import cv2

    from wallwm_edge.runtime.loop import RunConfig, run
    from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

    with MetaWorldEnv(SimConfig()) as env:
        obs = env.reset(1)
        rig = env.rig.save(tmp_path / "rig.json")
        for i in range(2):
            for v, name in enumerate(env.config.views):
                (tmp_path / "cams" / name).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(tmp_path / "cams" / name / f"{i:03d}.png"), obs["images"][v][..., ::-1])
            obs = env.step(env.expert_action())
    res = run(RunConfig(student=str(tiny_student), source=f"folder:{tmp_path / 'cams'}", rig=str(rig), max_chunks=3,
                        out=str(tmp_path / "out"), status=False, gif=False))
    assert res.reason == "chunk limit" and res.report["counters"]["chunks"] == 3
    assert "success" not in res.report  # no simulator: nothing to judge success by
    assert res.report["latency"]["mask"]["n"] == 3
    with pytest.raises(Exception, match="needs a rig file"):  # the tiny export carries no rig in its sidecar
        run(RunConfig(student=str(tiny_student), source=f"folder:{tmp_path / 'cams'}", out=str(tmp_path / "norig"), status=False))


def test_unified_mode_fixed_chunks_from_the_task_instruction(tmp_path, tiny_unified_student):
    from wallwm_edge.runtime.loop import RunConfig, run

    res = run(RunConfig(student=str(tiny_unified_student), unified=True, max_chunks=3, out=str(tmp_path / "u"),
                        status=False, gif=False))
    assert res.reason == "chunk limit" and res.report["mode"] == "unified"
    chunks = [json.loads(x) for x in (tmp_path / "u" / "log.jsonl").read_text().splitlines() if '"chunk"' in x]
    chunks = [c for c in chunks if c["kind"] == "chunk"]
    assert [c["instruction"] for c in chunks] == ["pick up the puck and place it at the target"] * 3
    assert all(c["length"] == 8 and not c["done"] for c in chunks)  # fixed length: the whole horizon
    with pytest.raises(Exception, match="unified-mode student: run it with --unified"):
        run(RunConfig(student=str(tiny_unified_student), out=str(tmp_path / "e"), status=False))
