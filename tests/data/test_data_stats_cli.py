"""`data stats` figures against numpy, and the `data` CLI's exit codes and one-line errors."""

import json
import numpy as np
import pytest
from wwdata_helpers import T, ep_dir, make_dataset, rewrite_array

from wallwm_edge.cli import main
from wallwm_edge.data.dataset import Dataset
from wallwm_edge.data.stats import Moments, dataset_stats


def test_stats_match_numpy(tmp_path):
    make_dataset(tmp_path, n=3)
    st = dataset_stats(tmp_path).to_json()
    eps = list(Dataset.open(tmp_path))
    acts = np.concatenate([np.asarray(e.actions, np.float64) for e in eps])
    prop = np.concatenate([np.asarray(e.proprio, np.float64) for e in eps])
    assert st["episodes"] == 3 and st["frames"] == 3 * T and st["tasks"] == {"pick-place-v3": 3}
    assert st["success_rate"] == pytest.approx(2 / 3)  # seeds 0 and 2 succeed in the synthetic episodes
    assert st["events_per_track"] == {"task": 3, "subtask": 6, "action": 12, "segment": 12}
    assert st["events_per_key"]["subtask"] == {"grasp:puck": 3, "place:puck": 3}
    for name, x in (("actions", acts), ("proprio", prop)):
        np.testing.assert_allclose(st[name]["mean"], x.mean(0), rtol=1e-10)
        np.testing.assert_allclose(st[name]["std"], x.std(0), rtol=1e-10)
        np.testing.assert_array_equal(st[name]["min"], x.min(0))
        np.testing.assert_array_equal(st[name]["max"], x.max(0))
    assert st["event_length"]["task"] == {"mean": T, "min": T, "max": T}


def test_moments_merge_equals_one_pass():
    rng = np.random.default_rng(1)
    parts = [rng.normal(3, 2, size=(n, 4)) for n in (1, 7, 50, 2)]
    m = Moments()
    for p in parts:
        m.add(p)
    x = np.concatenate(parts)
    j = m.to_json()
    np.testing.assert_allclose(j["mean"], x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(j["std"], x.std(0), rtol=1e-12)
    assert Moments().to_json() == {"count": 0}


def test_cli_check_ok_and_failing(tmp_path, capsys):
    make_dataset(tmp_path, n=2)
    assert main(["data", "check", str(tmp_path)]) == 0
    assert "OK (0 error(s), 0 warning(s))" in capsys.readouterr().out
    a = np.load(ep_dir(tmp_path) / "actions.npy").copy()
    a[3] = np.nan
    rewrite_array(ep_dir(tmp_path), "actions.npy", a)
    assert main(["data", "check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "error: episode pick-place-v3_s00000, field actions, frame 3: NaN or inf at frame 3" in out
    assert "FAILED (1 error(s), 0 warning(s))" in err
    assert main(["data", "check", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["errors"] == 1
    assert report["problems"][0] | {"message": None} == {
        "severity": "error", "kind": "nonfinite", "episode": "pick-place-v3_s00000", "field": "actions",
        "frame": 3, "view": None, "frames": [3], "message": None}


def test_cli_strict_fails_on_warnings(tmp_path, capsys):
    make_dataset(tmp_path, n=1)
    (tmp_path / "episodes" / ".tmp-x-1").mkdir()
    assert main(["data", "check", str(tmp_path)]) == 0
    assert main(["data", "check", str(tmp_path), "--strict"]) == 1


def test_cli_stats_json_and_plot(tmp_path, capsys):
    make_dataset(tmp_path / "d", n=2)
    assert main(["data", "stats", str(tmp_path / "d"), "--json", "--plot", str(tmp_path / "p.png")]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["episodes"] == 2 and st["frames"] == 2 * T
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["data", "stats", str(tmp_path / "d")]) == 0
    assert "success rate  50.0%" in capsys.readouterr().out


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("wallwm-edge: error:") and "dataset.json: not found" in err
    assert main(["data", "import-lerobot", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "meta/info.json: not found" in err and "Traceback" not in err


def test_cli_help_has_examples(capsys):
    for sub in ("generate", "check", "stats", "import-lerobot"):
        with pytest.raises(SystemExit) as e:
            main(["data", sub, "--help"])
        out = capsys.readouterr().out
        assert e.value.code == 0 and "example" in out and f"wallwm-edge data {sub}" in out, sub
    with pytest.raises(SystemExit) as e:
        main(["data", "generate", "--out", "x", "--size", "0"])
    assert e.value.code == 2 and "--size must be N or HxW" in capsys.readouterr().err
