import json
import sys

import pytest

from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.runtime.planner import (
    EventPlanner,
    EventText,
    InteractivePlanner,
    Plan,
    Planner,
    PlanStep,
    load_plans,
    plan_from_keys,
    plans_from_tasks,
    registry_catalog,
    registry_plans,
    save_plans,
)

CATALOG = {
    "reach:puck": EventText("reach:puck", "reach for the puck", ("move to the puck",), ("go over to the puck",)),
    "grasp:puck": EventText("grasp:puck", "grasp the puck", ("pick up the puck",), ("take hold of the puck", "grab the puck")),
    "place:goal": EventText("place:goal", "place it at the goal", ("put it at the goal",), ("set it down on the target",)),
}


def test_planner_is_torch_free():
    # The on-board runtime imports the planner without torch (DESIGN.md decision 5).
    import subprocess

    code = "import sys, wallwm_edge.runtime.planner; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_advances_on_signal_and_records_history():
    plan = plan_from_keys("pick-place", ["reach:puck", "grasp:puck", "place:goal"], CATALOG)
    p = EventPlanner(plan, max_steps_per_event=50)
    assert p.instruction == "reach for the puck"
    assert not p.update(8, event_end=False)
    assert p.update(4, event_end=True)
    assert p.instruction == "grasp the puck" and p.current.key == "grasp:puck"
    assert p.update(10, event_end=True)
    assert p.update(3, event_end=True)
    assert p.done and p.instruction is None
    assert [(h.key, h.start, h.end, h.reason) for h in p.history] == [
        ("reach:puck", 0, 12, "signalled"),
        ("grasp:puck", 12, 22, "signalled"),
        ("place:goal", 22, 25, "signalled"),
    ]
    assert not p.update(5, event_end=True)  # done: nothing more happens


def test_safety_cap_advances_a_silent_policy():
    plan = Plan("t", (PlanStep("reach:puck", "reach", max_steps=5), PlanStep("grasp:puck", "grasp")))
    p = EventPlanner(plan, max_steps_per_event=7)
    assert p.cap == 5
    assert not p.update(3, False)
    assert p.cap == 2
    assert p.update(2, False)  # per-step cap reached
    assert p.cap == 7  # the planner default applies to the next step
    assert p.update(9, False)
    assert p.done and [h.reason for h in p.history] == ["cap", "cap"]


def test_end_confirm_and_min_event_steps_delay_the_advance():
    plan = plan_from_keys("pick-place", ["reach:puck", "grasp:puck", "place:goal"], CATALOG)
    # default rule: the first signal advances
    assert EventPlanner(plan, max_steps_per_event=50).update(4, True)
    # end_confirm=2: a signal must come on two chunks in a row; a chunk without it resets the count
    p = EventPlanner(plan, max_steps_per_event=50, end_confirm=2)
    assert not p.update(4, True)
    assert not p.update(4, False)
    assert not p.update(4, True)
    assert p.update(3, True)
    assert p.history[0].end == 15 and p.history[0].reason == "signalled" and p.steps_in_event == 0
    # the count starts afresh in the next event
    assert not p.update(2, True)
    # min_event_steps=10: signals before 10 steps of the event are ignored
    q = EventPlanner(plan, max_steps_per_event=50, min_event_steps=10)
    assert not q.update(4, True) and not q.update(4, True)
    assert q.update(4, True) and q.history[0].end == 12
    # the safety cap still wins over a head that keeps being vetoed
    c = EventPlanner(plan, max_steps_per_event=6, end_confirm=3)
    assert not c.update(3, True)
    assert c.update(3, True) and c.history[0].reason == "cap"
    with pytest.raises(ConfigError, match="end_confirm"):
        EventPlanner(plan, end_confirm=0)
    with pytest.raises(ConfigError, match="min_event_steps"):
        EventPlanner(plan, min_event_steps=-1)


def test_styles_are_deterministic_and_heldout_differs():
    keys = ["reach:puck", "grasp:puck", "place:goal"]
    a = plan_from_keys("t", keys, CATALOG, style="heldout", seed=3)
    b = plan_from_keys("t", keys, CATALOG, style="heldout", seed=3)
    assert a == b
    for step in a.steps:
        assert step.instruction in CATALOG[step.key].heldout_paraphrases
        assert step.instruction != CATALOG[step.key].caption
    with pytest.raises(ConfigError, match="style"):
        plan_from_keys("t", keys, CATALOG, style="nonsense")


def test_plans_from_registry_tasks_and_unknown_key():
    plans = plans_from_tasks({"pick-place": ["reach:puck", "grasp:puck", "place:goal"], "reach": ["reach:puck"]}, CATALOG)
    assert plans["reach"].keys == ["reach:puck"]
    with pytest.raises(DataError, match="unknown event key.*'open:drawer'"):
        plans_from_tasks({"x": ["open:drawer"]}, CATALOG)


def test_plan_file_json_and_yaml_roundtrip(tmp_path):
    doc = {"pick-place": ["reach:puck", {"key": "grasp:puck", "max_steps": 30}, "now put it down on the goal"]}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    plans = load_plans(tmp_path / "p.json", CATALOG)
    steps = plans["pick-place"].steps
    assert steps[0] == PlanStep("reach:puck", "reach for the puck")
    assert steps[1] == PlanStep("grasp:puck", "grasp the puck", 30)
    assert steps[2] == PlanStep("", "now put it down on the goal")
    save_plans(plans, tmp_path / "out.json")
    assert load_plans(tmp_path / "out.json", CATALOG) == plans
    (tmp_path / "p.yaml").write_text("plans:\n  pick-place:\n    - reach:puck\n    - {caption: grab it}\n")
    y = load_plans(tmp_path / "p.yaml", CATALOG)["pick-place"]
    assert y.steps == (PlanStep("reach:puck", "reach for the puck"), PlanStep("", "grab it"))


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "not valid JSON"),
        ('{"t": "reach:puck"}', "must be a list"),
        ('{"t": []}', "has no events"),
        ('{"t": ["lift:cube"]}', "task 't', event 0: unknown event key 'lift:cube'"),
        ('{"t": [{"key": "grasp:puck", "max_steps": -1}]}', "max_steps"),
        ('{"t": [{"kee": "grasp:puck"}]}', "unknown field"),
        ("[]", "must map task names"),
    ],
)
def test_plan_file_errors_name_the_problem(tmp_path, text, match):
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(DataError, match=match) as e:
        load_plans(f, CATALOG)
    assert "bad.json" in str(e.value)


def test_missing_plan_file(tmp_path):
    with pytest.raises(DataError, match="plan file not found"):
        load_plans(tmp_path / "nope.json")


def test_interactive_planner_reads_prompts():
    lines = iter(["grasp:puck", "lift it up high", ""])
    p = InteractivePlanner(ask=lambda prompt: next(lines), max_steps_per_event=4, catalog=CATALOG)
    assert p.instruction == "grasp the puck"  # a typed key becomes its caption
    assert p.update(2, True)
    assert p.instruction == "lift it up high"
    assert p.update(4, False)  # cap
    assert p.done
    assert [(h.instruction, h.reason) for h in p.history] == [("grasp the puck", "signalled"), ("lift it up high", "cap")]


def test_interactive_planner_end_of_input():
    def ask(prompt):
        raise EOFError

    assert InteractivePlanner(ask=ask).done


def test_both_planners_are_one_planner_interface():
    """The loops never ask which planner they hold: a known plan and a prompt answer the same questions."""
    plan = plan_from_keys("pick-place", ["reach:puck", "grasp:puck"], CATALOG)
    known = EventPlanner(plan, max_steps_per_event=5)
    lines = iter(["grasp:puck", "lift it up high", ""])
    prompt = InteractivePlanner(ask=lambda _: next(lines), max_steps_per_event=5, catalog=CATALOG)
    assert isinstance(known, Planner) and isinstance(prompt, Planner)
    assert known.planned == ("reach for the puck", "grasp the puck") and prompt.planned is None
    for p in (known, prompt):
        assert p.index == 0
        assert p.update(1, True) and p.index == 1
        assert p.executed(5) and p.done and p.index == 2  # the cap ends the last event: index = events over


def test_registry_plans_cover_every_task_with_captions():
    catalog = registry_catalog()
    plans = registry_plans()
    assert plans and all(s.instruction == catalog[s.key].caption for p in plans.values() for s in p.steps)
    assert all(not t.independent for t in catalog.values())  # evaluation-only phrasings stay in eval

