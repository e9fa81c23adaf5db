"""`data export-lerobot`: our episodes as a LeRobot v3.0 folder, read back by LeRobot's own loader (where it
imports), by the layout checks its loader relies on, and by our importer (events and arrays round-trip)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from wallwm_edge.cli import main
from wallwm_edge.data.dataset import Dataset
from wallwm_edge.data.episode import Event
from wallwm_edge.data.synthetic import synthetic_episode

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
av = pytest.importorskip("av")
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level

VIEWS, T = ("top", "wrist"), (14, 10)


def grey(g: int, v: int) -> int:
    return 30 + 6 * (g % 30) + 8 * v


def events(T: int, first: bool) -> tuple[Event, ...]:
    if first:  # a task change at frame 8, subtasks and actions nested in it, a segment
        return (Event("task", 0, 8, "task:open", "open the drawer"), Event("task", 8, T, "task:close", "close the drawer"),
                Event("subtask", 0, 4, "subtask:reach", "reach the handle", parent=0), Event("subtask", 4, 8, "subtask:pull", "pull", parent=0),
                Event("subtask", 8, T, "subtask:push", "push", parent=1),
                Event("action", 0, 2, "action:move", "move to the handle", parent=2), Event("action", 2, 4, "action:grip", "close the gripper", parent=2),
                Event("segment", 0, 2, "segment:0", "approach", parent=5))
    return (Event("task", 0, T, "task:wipe", "wipe the table"), Event("subtask", 3, T, "subtask:wipe", "wipe", parent=0))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    ds = Dataset.create(tmp / "ours", views=list(VIEWS), image_size=(32, 32), action_dim=4, proprio_dim=4, fps=10.0)
    g = 0
    for i, n in enumerate(T):
        ep = synthetic_episode(f"ep{i}", T=n, views=VIEWS, seed=i)
        frames = np.stack([np.stack([np.full((32, 32, 3), grey(g + t, v), np.uint8) for v in range(2)]) for t in range(n)])
        ds.append(dataclasses.replace(ep, frames=frames, events=events(n, i == 0), task=events(n, i == 0)[0].caption))
        g += n
    ds.finalize()
    assert main(["data", "export-lerobot", str(tmp / "ours"), "--out", str(tmp / "lr")]) == 0
    return tmp, Dataset.open(tmp / "ours"), tmp / "lr"


def test_lerobot_loader_reads_the_export(exported):
    """LeRobot's own LeRobotDataset (standalone `lerobot-dataset`, or `lerobot`) loads the folder."""
    try:
        from ledataset.datasets.lerobot_dataset import LeRobotDataset
    except Exception as first:
        try:
            from lerobot.datasets.lerobot_dataset import LeRobotDataset
        except Exception:  # not installed, or its torchvision does not load beside this torch
            pytest.skip(f"LeRobot's loader does not import here (lerobot-dataset: {type(first).__name__}: {first})")
    _, ours, root = exported
    lr = LeRobotDataset("wallwm/export", root=root)
    assert lr.num_episodes == 2 and lr.num_frames == sum(T) and lr.fps == 10
    for g, (e, t) in enumerate([(0, t) for t in range(T[0])] + [(1, t) for t in range(T[1])]):
        item = lr[g]
        ep = ours[e]
        np.testing.assert_array_equal(item["action"].numpy(), ep.actions[t])
        np.testing.assert_array_equal(item["observation.state"].numpy(), ep.proprio[t])
        assert int(item["episode_index"]) == e and int(item["frame_index"]) == t
        assert item["task"] == next(ev.caption for ev in ep.events_on("task") if ev.start <= t < ev.end)
        for v, name in enumerate(VIEWS):
            img = item[f"observation.images.{name}"].numpy()  # (3, H, W) float in [0, 1]
            assert img.shape == (3, 32, 32) and abs(img.mean() * 255 - grey(g, v)) < 4
    assert lr[3]["language.subtask"] == "reach the handle" and lr[8]["language.subtask"] == "push"


def test_layout_is_what_lerobots_loader_reads(exported):
    _, ours, root = exported
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and info["total_frames"] == sum(T) and info["total_tasks"] == 3
    feats = info["features"]
    assert feats["observation.images.top"]["dtype"] == "video" and feats["observation.images.top"]["info"]["video.codec"] == "av1"
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    # the loader builds its datasets.Features from every non-video feature: the columns must be exactly those
    assert sorted(data.column_names) == sorted(k for k, f in feats.items() if f["dtype"] != "video")
    assert data.column("task_index").to_pylist() == [0] * 8 + [1] * 6 + [2] * 10
    assert data.column("subtask_index").to_pylist()[:15] == [0] * 4 + [1] * 4 + [2] * 6 + [-1]
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["tasks"] for r in eps] == [["open the drawer", "close the drawer"], ["wipe the table"]]
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in eps] == [(0, 14), (14, 24)]
    stats = json.loads((root / "meta/stats.json").read_text())
    assert np.array(stats["observation.images.top"]["mean"]).shape == (3, 1, 1) and len(stats["action"]["mean"]) == 4
    pd = pytest.importorskip("pandas")  # LeRobot reads tasks.parquet with pandas and looks the text up as the index
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert list(tasks.index) == ["open the drawer", "close the drawer", "wipe the table"] and tasks.loc["wipe the table", "task_index"] == 2
    # LeRobot finds frame t of episode e at from_timestamp + t / fps in the camera's video
    for v, name in enumerate(VIEWS):
        with av.open(str(root / f"videos/observation.images.{name}/chunk-000/file-000.mp4")) as c:
            frames = {round(f.time * 10): f.to_ndarray(format="rgb24").mean() for f in c.decode(video=0)}
        for r in eps:
            start = round(r[f"videos/observation.images.{name}/from_timestamp"] * 10)
            for t in range(r["length"]):
                assert abs(frames[start + t] - grey(r["dataset_from_index"] + t, v)) < 4


def test_round_trip_through_import(exported):
    tmp, ours, root = exported
    assert main(["data", "import-lerobot", str(root), "--out", str(tmp / "back")]) == 0
    back = Dataset.open(tmp / "back")
    for a, b in zip(ours, back):
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.proprio, b.proprio)
        assert [(e.track, e.start, e.end, e.caption, e.parent) for e in a.events] == [(e.track, e.start, e.end, e.caption, e.parent) for e in b.events]
        assert np.abs(a.frames.astype(int) - b.frames).max() < 6


@pytest.mark.parametrize("vcodec", ["h264", "hevc"])
def test_other_codecs(exported, tmp_path, vcodec):
    _, ours, _ = exported
    assert main(["data", "export-lerobot", str(ours.root), "--out", str(tmp_path / "lr"), "--vcodec", vcodec]) == 0
    info = json.loads((tmp_path / "lr/meta/info.json").read_text())
    assert info["features"]["observation.images.wrist"]["info"]["video.codec"] == vcodec
    assert main(["data", "import-lerobot", str(tmp_path / "lr"), "--out", str(tmp_path / "back")]) == 0
    np.testing.assert_array_equal(Dataset.open(tmp_path / "back")[1].actions, ours[1].actions)


def test_bad_inputs_one_line_and_nothing_left(exported, tmp_path, capsys):
    _, ours, _ = exported
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x").write_text("x")
    assert main(["data", "export-lerobot", str(ours.root), "--out", str(tmp_path / "full")]) != 0
    err = capsys.readouterr().err.strip()
    assert "exists and is not an empty folder" in err and len(err.splitlines()) == 1
    assert main(["data", "export-lerobot", str(tmp_path / "nothing"), "--out", str(tmp_path / "lr")]) != 0
    err = capsys.readouterr().err.strip()
    assert "dataset.json" in err and len(err.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["full"]
