import json
import math

from wallwm_edge.eval.report import EpisodeResult, format_table, summarize, write_json


def _r(split, task, success, done, total=3):
    return EpisodeResult(split, task, 0, success, done, total, 10)


def test_summary_weights_tasks_equally_and_means_generalization():
    results = [
        _r("seen", "a", True, 3), _r("seen", "a", False, 0),  # a: 50 % success, TP 50
        _r("seen", "b", False, 1),  # b: 0 %, TP 33.3 (one episode, same weight as a)
        _r("novel_scene", "a", False, 2),
        _r("heldout_task", "c", True, 2, total=2),
    ]
    s = summarize(results)
    assert s["seen"]["tasks"]["a"] == {"episodes": 2, "success_rate": 50.0, "task_progress": 50.0, "mean_steps": 10.0}
    assert math.isclose(s["seen"]["task_progress"], (50.0 + 100 / 3) / 2)
    assert s["seen"]["success_rate"] == 25.0
    g = s["generalization"]
    assert g["splits"] == ["novel_scene", "heldout_task"]
    assert g["missing"] == ["heldout_paraphrase"]  # a mean over fewer than the three says so
    assert math.isclose(g["task_progress"], (200 / 3 + 100.0) / 2)


def test_table_has_a_row_per_task_and_split(tmp_path):
    results = [_r("seen", "pick-place-v3", True, 3), _r("heldout_paraphrase", "push-v3", False, 1)]
    s = summarize(results)
    table = format_table(s)
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["split", "task"]
    assert any(l.startswith("seen") and "pick-place-v3" in l and "100.0" in l for l in lines)
    assert any("push-v3" in l and "33.3" in l for l in lines)
    assert lines[-1].startswith("generalization")
    assert "(mean of heldout_paraphrase; without novel_scene, heldout_task)" in lines[-1]
    path = write_json(tmp_path / "sub" / "r.json", s, results, {"policy": "x"})
    doc = json.loads(path.read_text())
    assert doc["format"] == "wallwm-eval/1" and doc["policy"] == "x"
    assert doc["episodes"][1]["progress"] == 100 / 3
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_standard_errors_and_paired_differences():
    import math

    from wallwm_edge.eval.report import EpisodeResult, paired_difference, summarize

    def ep(split, task, seed, done, ok=False):
        return EpisodeResult(split, task, seed, ok, done, 2, 10)

    a = [ep("seen", "t1", 0, 2, True), ep("seen", "t1", 1, 0), ep("seen", "t2", 0, 1), ep("seen", "t2", 1, 1)]
    s = summarize(a)["seen"]
    assert s["task_progress"] == 50.0
    # t1 = {100, 0}: var 5000, n 2 -> 2500; t2 = {50, 50}: 0; SE = sqrt(2500) / 2
    assert math.isclose(s["task_progress_se"], 25.0)
    assert math.isclose(s["success_rate_se"], 25.0)
    b = [ep("seen", "t1", 0, 1), ep("seen", "t1", 1, 0), ep("seen", "t2", 0, 0), ep("seen", "t2", 9, 2)]
    d = paired_difference(a, b)
    assert d["pairs"] == 3  # (t2, 1) has no partner
    assert math.isclose(d["mean"], (50 + 0 + 50) / 3)
    assert math.isclose(d["se"], math.sqrt(((50 - d["mean"]) ** 2 * 2 + d["mean"] ** 2) / 2) / math.sqrt(3))
    assert paired_difference(a, b, "success")["mean"] == 100 / 3
