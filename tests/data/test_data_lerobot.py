"""LeRobot v3 import on a small dataset the test writes itself (pyarrow parquet + OpenCV mp4)."""

import json

import numpy as np
import pytest
from wwdata_helpers import write_lerobot_v3

from wallwm_edge.calibration.rig import Camera, Rig
from wallwm_edge.cli import main
from wallwm_edge.data.check import check_dataset, errors
from wallwm_edge.data.dataset import Dataset
from wallwm_edge.data.lerobot import PLACEHOLDER_HFOV_DEG, import_lerobot, label_runs, motion_segments
from wallwm_edge.errors import DataError

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lerobot")
    exp = write_lerobot_v3(tmp / "so101_demo")
    assert main(["data", "import-lerobot", str(tmp / "so101_demo"), "--out", str(tmp / "out")]) == 0
    return tmp, exp, Dataset.open(tmp / "out")


def test_round_trip_arrays_and_frames(imported):
    tmp, exp, ds = imported
    assert ds.episode_ids == ["so101-demo_e00000", "so101-demo_e00001"]
    assert ds.views == ["top", "wrist"] and ds.image_size == (24, 32) and ds.fps == 10.0
    assert ds.info["action_space"] == "lerobot:so101:j0,j1,j2,j3,j4,j5"
    for i, ep in enumerate(ds):
        s, n = int(exp["starts"][i]), exp["lengths"][i]
        assert ep.num_frames == n and ep.task == exp["tasks"][i]
        np.testing.assert_array_equal(ep.actions, exp["actions"][s : s + n])
        np.testing.assert_array_equal(ep.proprio, exp["state"][s : s + n])
        np.testing.assert_allclose(ep.timestamps, np.arange(n) / 10.0, atol=1e-6)
        for v in range(2):  # each frame carries its global index as a grey level: offsets must be exact
            got = ep.frames[:, v].reshape(n, -1).mean(axis=1)
            want = np.array([exp["grey"](s + t, v) for t in range(n)], float)
            assert np.abs(got - want).max() < 6, (i, v, got.round(), want)


def test_subtask_labels_become_events_else_segments(imported):
    _, exp, ds = imported
    ep0, ep1 = ds[0], ds[1]
    assert [(e.track, e.start, e.end, e.caption, e.parent) for e in ep0.events] == [
        ("task", 0, 14, "pick up the red cube", None),
        ("subtask", 0, 4, "reach the cube", 0),
        ("subtask", 4, 9, "grasp the cube", 0),
        ("subtask", 9, 14, "lift the cube", 0),
    ]
    assert ep0.events[2].key == "subtask:grasp-the-cube"
    assert ep1.events[0].caption == "open the drawer" and ep1.events[0].key == "task:open-the-drawer"
    segs = ep1.events_on("segment")
    assert segs and segs[0].start == 0 and segs[-1].end == 11 and all(e.parent == 0 for e in segs)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))


def test_placeholder_rig_is_flagged_and_dataset_checks_clean(imported):
    tmp, _, ds = imported
    ep = ds[0]
    assert ep.extra["uncalibrated"] == ["top", "wrist"] and "placeholder" in ep.extra["calibration"]
    assert ds.info["generator"]["uncalibrated"] == ["top", "wrist"]
    top, wrist = ep.rig.cameras
    assert top.mount == "fixed" and wrist.mount == "wrist"
    hfov = 2 * np.degrees(np.arctan((top.width / 2) / top.K[0, 0]))
    assert hfov == pytest.approx(PLACEHOLDER_HFOV_DEG)
    problems = check_dataset(tmp / "out")
    assert not errors(problems), [str(p) for p in problems]
    assert {p.kind for p in problems} <= {"caption"}  # only "no paraphrases" warnings


def test_rig_file_and_resize(tmp_path):
    write_lerobot_v3(tmp_path / "src", lengths=(12,), subtasks=False)
    K = np.array([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]])
    T = np.eye(4)
    T[:3, 3] = [0.5, 0, 1]
    Rig((Camera("wrist", 32, 24, K, mount="wrist", T_flange_cam=np.eye(4)), Camera("top", 32, 24, K, T_base_cam=T))).save(tmp_path / "rig.json")
    ds = import_lerobot(tmp_path / "src", tmp_path / "out", image_size=(12, 16), rig=tmp_path / "rig.json")
    ep = ds[0]
    assert ep.frames.shape == (12, 2, 12, 16, 3) and ep.extra["uncalibrated"] == []
    top = ep.rig.camera("top")
    np.testing.assert_allclose(top.K, [[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]])  # scaled about pixel centres
    np.testing.assert_allclose(ep.cam_poses[:, 0], np.broadcast_to(T, (12, 4, 4)))
    assert [e.track for e in ep.events][0] == "task" and not ep.events_on("subtask")
    assert not errors(check_dataset(tmp_path / "out"))


def test_episode_selection_and_bad_inputs(tmp_path):
    write_lerobot_v3(tmp_path / "src")
    ds = import_lerobot(tmp_path / "src", tmp_path / "one", episodes=[1])
    assert ds.episode_ids == ["src_e00001"] and ds[0].task == "open the drawer"
    with pytest.raises(DataError, match="no episode 7"):
        import_lerobot(tmp_path / "src", tmp_path / "x", episodes=[7])
    info = json.loads((tmp_path / "src" / "meta" / "info.json").read_text())
    (tmp_path / "src" / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(DataError, match="codebase_version 'v2.1' is not v3.x"):
        import_lerobot(tmp_path / "src", tmp_path / "y")
    (tmp_path / "src" / "meta" / "info.json").write_text(json.dumps(info))
    (tmp_path / "src" / "videos" / "observation.images.top" / "chunk-000" / "file-000.mp4").unlink()
    with pytest.raises(DataError, match="file-000.mp4: video file missing"):
        import_lerobot(tmp_path / "src", tmp_path / "z")


def test_label_runs_and_motion_segments():
    assert label_runs([0, 0, -1, 1, 1, None, 2], 7) == [(0, 2, 0), (3, 5, 1), (6, 7, 2)]
    # move, pause, move, pause, move: cuts land in the pauses
    v = np.concatenate([np.ones(10), np.zeros(4), np.ones(10), np.zeros(4), np.ones(10)])
    targets = np.cumsum(v)[:, None] * np.array([[1.0, 0.5]])  # (38, 2) joint-position targets; speed ~ v
    segs = motion_segments(targets)
    cuts = [s for s, _ in segs[1:]]
    assert len(cuts) == 2 and 9 <= cuts[0] <= 14 and 23 <= cuts[1] <= 28, segs
    assert motion_segments(np.zeros((6, 2))) == [(0, 6)]
