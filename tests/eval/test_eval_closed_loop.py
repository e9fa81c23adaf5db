"""Closed-loop evaluation in real Meta-World: the metric on reference policies, and bad inputs.

The scripted expert must score 100 Task Progress (and drive the planner through every event by its
end-of-event signal); a do-nothing policy must score 0 (and only advance by the safety cap).
"""

import json
from dataclasses import replace

import numpy as np
import pytest

from wallwm_edge.errors import ConfigError, WallwmError
from wallwm_edge.eval.actors import CheckpointActor, ExpertActor, NoopActor
from wallwm_edge.eval.closed_loop import EvalConfig, evaluate, registry_plans
from wallwm_edge.runtime.progress import ProgressTracker
from wallwm_edge.eval.report import summarize

TASK = "pick-place-v3"  # three events: reach, grasp, carry


def test_expert_scores_full_progress_and_signals_every_event():
    [r] = evaluate(ExpertActor(), EvalConfig(splits=("seen",), tasks=(TASK,), episodes=1), progress=False)
    assert r.success and r.events_completed == r.events_total == 3 and r.progress == 100.0
    assert [e["key"] for e in r.events] == ["reach:puck", "grasp:puck", "carry:puck@target"]
    # the planner advanced on the expert's end-of-event signal, not on the safety cap
    assert [e["reason"] for e in r.events[:2]] == ["signalled", "signalled"]
    done = [e["completed_at"] for e in r.events]
    assert done == sorted(done) and done[-1] == r.steps


def test_noop_scores_zero_and_planner_advances_by_cap():
    cfg = EvalConfig(splits=("seen",), tasks=(TASK,), episodes=1, max_steps=60, event_cap=20)
    [r] = evaluate(NoopActor(), cfg, progress=False)
    assert not r.success and r.events_completed == 0 and r.progress == 0.0
    assert [e["reason"] for e in r.events] == ["cap", "cap", "cap"]
    assert [(e["start"], e["end"]) for e in r.events] == [(0, 20), (20, 40), (40, 60)]
    s = summarize([r])
    assert s["seen"]["task_progress"] == 0.0 and s["seen"]["success_rate"] == 0.0
    # plan_end="hold": after the plan, the last event is re-issued until max_steps (unified mode's budget)
    [h] = evaluate(NoopActor(), EvalConfig(splits=("seen",), tasks=(TASK,), episodes=1, max_steps=90, event_cap=20,
                                           plan_end="hold"), progress=False)
    assert h.steps == 90 and [(e["start"], e["end"]) for e in h.events] == [(0, 20), (20, 40), (40, 60)]


class _AlwaysDone(NoopActor):
    """Zero motion in 5-step chunks whose p_end says the event is already over on every observation."""

    def act(self, obs, instruction):
        return super().act(obs, instruction)[0][:5], np.ones(5, np.float32)


class _Forecast(NoopActor):
    """p_end forecasts the end at step 3 but never says "done": the plan must not advance on a forecast."""

    def act(self, obs, instruction):
        return super().act(obs, instruction)[0], np.array([0.1, 0.2, 0.9] + [1.0] * 7, np.float32)


def test_done_on_a_fresh_observation_advances_without_executing_and_forecasts_never_advance():
    base = EvalConfig(splits=("seen",), tasks=(TASK,), episodes=1, max_steps=60, event_cap=20)
    [r] = evaluate(_AlwaysDone(), base, progress=False)  # every observation: "done" -> the plan runs out at once
    assert [(e["start"], e["end"], e["reason"]) for e in r.events] == [(0, 0, "signalled")] * 3
    assert r.steps == 0  # nothing of a finished event's chunk runs; plan_end="stop" ends the episode
    [k] = evaluate(_AlwaysDone(), replace(base, end_confirm=2), progress=False)  # 2 verdicts in a row per event
    assert [(e["start"], e["end"]) for e in k.events] == [(0, 1), (1, 2), (2, 3)]  # p_end[0] > 0.5: 1-step chunks
    [m] = evaluate(_AlwaysDone(), replace(base, min_event_steps=12), progress=False)  # verdicts ignored before 12 steps
    assert [(e["start"], e["end"]) for e in m.events] == [(0, 12), (12, 24), (24, 36)]
    [f] = evaluate(_Forecast(), base, progress=False)
    assert [e["reason"] for e in f.events] == ["cap", "cap", "cap"]  # chunks of 3 steps, advanced only by the cap
    assert [(e["start"], e["end"]) for e in f.events] == [(0, 20), (20, 40), (40, 60)]
    with pytest.raises(ConfigError, match="max_exec"):
        evaluate(_Forecast(), replace(base, max_exec=0), progress=False)


def test_progress_is_in_order_and_partial():
    # A hand placed on the object without grasping it completes "reach" only: 1 of 3 events.
    t = ProgressTracker(TASK)
    state = np.zeros(39)
    state[4:7] = [0.0, 0.6, 0.02]
    t.update({"state": state, "success": False, "step": 0})
    state = state.copy()
    state[:3] = [0.0, 0.6, 0.05]  # 3 cm above the puck, fingers open
    state[3] = 1.0
    assert t.update({"state": state, "success": False, "step": 5}) == 1
    assert t.progress == pytest.approx(100 / 3)
    # success latches every event, in order
    assert t.update({"state": state, "success": True, "step": 9}) == 3
    assert t.completed_at == [5, 9, 9]


def test_registry_plans_cover_every_task_with_heldout_texts():
    from wallwm_edge.events.vocab import TASKS, caption

    plans = registry_plans("heldout", seed=0)
    assert set(plans) == set(TASKS)
    for task, plan in plans.items():
        for step in plan.steps:
            assert step.instruction in caption(step.key).heldout_paraphrases


# ---------------------------------------------------------------- checkpoints and bad input

VIEWS = ("corner", "topview", "gripperPOV")


def _checkpoint(path, views=VIEWS, action_dim=4, size=(32, 32)):
    from wallwm_edge.data.synthetic import synthetic_rig
    from wallwm_edge.model.checkpoint import save_model
    from wallwm_edge.model.denoiser import WallWM
    from wallwm_edge.model.presets import resolve

    cfg = resolve("tiny", views=views, image_size=size, action_dim=action_dim, proprio_dim=4)
    rig = synthetic_rig(views=views, image_size=size)
    return save_model(path, WallWM(cfg), {"step": 0, "rig": rig.to_json()})


@pytest.fixture(scope="module")
def hash_embed():
    from wallwm_edge.train.samples import hash_embedder

    return hash_embedder()


def test_untrained_checkpoint_runs_closed_loop_from_renders(tmp_path, hash_embed):
    # The real Policy on real renders: wiring only (an untrained model), so no figure is asserted.
    actor = CheckpointActor(_checkpoint(tmp_path / "m.safetensors"), embed=hash_embed)
    # done_threshold 0.95: an untrained head's p_end sits near 0.5, so the events run (to the cap)
    cfg = EvalConfig(splits=("novel_scene",), tasks=(TASK,), episodes=1, max_steps=12, event_cap=6, done_threshold=0.95)
    [r] = evaluate(actor, cfg, progress=False)
    [again] = evaluate(actor, cfg, progress=False)
    assert (again.steps, again.events) == (r.steps, r.events)  # paired: noise restarts per (task, scene, seed)
    assert 1 <= r.steps <= 12 and r.split == "novel_scene" and 0 <= r.progress <= 100
    ended = [e for e in r.events if e.get("end") is not None]
    assert ended and all(e["end"] - e["start"] <= 6 for e in ended)  # the cap bounds every event


def test_checkpoint_view_count_mismatch_is_a_clear_error(tmp_path, hash_embed):
    actor = CheckpointActor(_checkpoint(tmp_path / "m.safetensors"), embed=hash_embed)
    with pytest.raises(ConfigError, match=r"checkpoint expects 3 views .* 2 views"):
        actor.check_env(("corner", "topview"), 4, 4, (32, 32))
    with pytest.raises(ConfigError, match="action dim 4.* action dim 6"):
        actor.check_env(VIEWS, 6, 4, (32, 32))


def test_checkpoint_action_dim_differs_from_env(tmp_path, hash_embed):
    actor = CheckpointActor(_checkpoint(tmp_path / "m.safetensors", action_dim=6), embed=hash_embed)
    with pytest.raises(ConfigError, match="action dim is 6.*Meta-World env's is 4"):
        evaluate(actor, EvalConfig(splits=("seen",), tasks=(TASK,), episodes=1), progress=False)


def test_checkpoint_camera_missing_from_sim_is_a_clear_error(tmp_path, hash_embed):
    actor = CheckpointActor(_checkpoint(tmp_path / "m.safetensors", views=("corner", "wristcam")), embed=hash_embed)
    with pytest.raises(ConfigError, match=r"unknown camera\(s\) \['wristcam'\]"):
        evaluate(actor, EvalConfig(splits=("seen",), tasks=(TASK,), episodes=1), progress=False)


def test_bad_split_task_and_episodes():
    with pytest.raises(ConfigError, match="unknown split 'nonsense'"):
        evaluate(NoopActor(), EvalConfig(splits=("nonsense",)), progress=False)
    with pytest.raises(ConfigError, match="not in the event registry"):
        evaluate(NoopActor(), EvalConfig(tasks=("fly-v3",)), progress=False)
    with pytest.raises(ConfigError, match="episodes must be >= 1"):
        evaluate(NoopActor(), EvalConfig(episodes=0), progress=False)


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    from wallwm_edge.cli import main

    out = tmp_path / "ev.json"
    rc = main(["eval", "expert", "--splits", "heldout_task", "--tasks", "push-wall-v3", "--episodes", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "heldout_task" in text and "push-wall-v3" in text and "100.0" in text
    doc = json.loads(out.read_text())
    assert doc["format"] == "wallwm-eval/1" and doc["mode"] == "event"
    assert doc["summary"]["heldout_task"]["tasks"]["push-wall-v3"]["task_progress"] == 100.0
    assert doc["summary"]["generalization"]["splits"] == ["heldout_task"]
    assert len(doc["episodes"]) == 1 and doc["episodes"][0]["progress"] == 100.0


def test_cli_bad_checkpoint_path_is_one_line(tmp_path, capsys):
    from wallwm_edge.cli import main

    assert main(["eval", str(tmp_path / "missing.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "Traceback" not in err


def test_plan_file_for_unknown_task(tmp_path, capsys):
    from wallwm_edge.cli import main

    f = tmp_path / "plan.json"
    f.write_text(json.dumps({"reach-v3": ["reach:target"]}))
    assert main(["eval", "expert", "--plan", str(f), "--splits", "seen", "--tasks", TASK, "--episodes", "1"]) == 2
    assert "no plan for task 'pick-place-v3'" in capsys.readouterr().err


def test_errors_are_wallwm_errors():
    assert issubclass(ConfigError, WallwmError)


# ---------------------------------------------------------------- issue 14 item 7: splits --tasks empties, recorded size

def test_tasks_that_empty_a_split_are_named_on_stderr_and_recorded(tmp_path, capsys):
    """--tasks with seen tasks only leaves heldout_task empty: one stderr line names it and why, the
    generalization figure says it averages two splits without heldout_task, and the JSON keeps both lists."""
    from wallwm_edge.cli import main

    out = tmp_path / "ev.json"
    rc = main(["eval", "noop", "--splits", "novel_scene,heldout_task", "--tasks", TASK, "--episodes", "1",
               "--max-steps", "4", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0
    assert "split heldout_task not evaluated: --tasks names none of its held-out tasks" in cap.err
    assert "(mean of novel_scene; without heldout_paraphrase, heldout_task)" in cap.out
    doc = json.loads(out.read_text())
    assert doc["config"]["splits"] == ["novel_scene"]
    assert doc["config"]["splits_requested"] == ["novel_scene", "heldout_task"]
    assert set(doc["config"]["splits_dropped"]) == {"heldout_task"}
    assert doc["summary"]["generalization"]["missing"] == ["heldout_paraphrase", "heldout_task"]
    assert '"generalization_missing": ["heldout_paraphrase", "heldout_task"]' in cap.out


def test_tasks_that_empty_every_split_are_refused_in_one_line(capsys):
    from wallwm_edge.cli import main

    assert main(["eval", "expert", "--splits", "heldout_task", "--tasks", TASK, "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "leaves every requested split (heldout_task) empty" in err and err.count("\n") == 1 and "Traceback" not in err


def test_results_json_records_the_checkpoints_own_size_and_views(tmp_path, capsys):
    """A 32x32 checkpoint evaluated with the --size default (meant for reference policies) runs and is
    recorded at 32x32; an explicit --size that differs is named as ignored."""
    from wallwm_edge.cli import main

    ckpt = _checkpoint(tmp_path / "m.safetensors", size=(32, 32))
    out = tmp_path / "ev.json"
    rc = main(["eval", str(ckpt), "--text-encoder", "hash", "--splits", "seen", "--tasks", TASK, "--episodes", "1",
               "--max-steps", "2", "--size", "96", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "--size 96 ignored: the checkpoint is evaluated at its own 32x32" in cap.err
    cfg = json.loads(out.read_text())["config"]
    assert cfg["image_size"] == [32, 32] and cfg["views"] == list(VIEWS)
