"""LeRobot v3 import of datasets as LeRobot writes them: AV1 (its default), h264 and hevc videos, per-frame
task changes, per-frame subtask labels (text column or subtask_index), and an import that fails cleanly.

The folders are written with pyarrow + PyAV following LeRobot v3.0's layout and its encoder settings
(`encode_video_frames`: yuv420p, GOP 2, CRF 30, SVT-AV1 preset 12), because LeRobot's own writer
(`lerobot-dataset`) cannot run beside the CPU build of torch 2.13 here: it needs torchvision, whose
wheels for torch 2.13 are CUDA builds that fail to load.
"""

import json
import os
import shutil
from fractions import Fraction

import numpy as np
import pytest

from wallwm_edge.cli import main
from wallwm_edge.data.check import check_dataset, errors
from wallwm_edge.data.dataset import Dataset
from wallwm_edge.data.lerobot import import_lerobot
from wallwm_edge.errors import DataError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
av = pytest.importorskip("av")

FPS, H, W = 10, 32, 32
CAMS = ("top", "wrist")
LENGTHS = (12, 10, 14)
TASKS = ["open the drawer", "close the drawer", "wipe the table"]  # task_index order
# per-frame task_index: episode 0 changes task mid-episode (open, then close)
TASK_IDX = [[0] * 7 + [1] * 5, [2] * 10, [1] * 14]
# what `tasks` in meta/episodes lists: a set to LeRobot, so in no particular order (here: the reverse)
EP_TASKS = [["close the drawer", "open the drawer"], ["wipe the table"], ["close the drawer"]]
SUBTASKS = [
    ["reach"] * 3 + ["pull"] * 4 + ["push"] * 5,  # "pull" ends where the task changes
    [""] * 2 + ["spray"] * 4 + ["wipe"] * 4,  # first frames unlabelled
    [""] * 14,  # none: falls back to segment events
]
ENCODER = {"av1": "libsvtav1", "h264": "h264", "hevc": "hevc"}
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level


def grey(g: int, cam: int) -> int:
    """Frame g of the whole dataset is a flat grey, so a frame from the wrong time shows as a wrong level."""
    return 30 + 6 * (g % 30) + 8 * cam


def write_lerobot(root, codec: str, subtask_col: str = "text") -> dict:
    rng = np.random.default_rng(1)
    n = sum(LENGTHS)
    starts = np.cumsum((0,) + LENGTHS[:-1])
    actions = rng.normal(size=(n, 6)).astype(np.float32)
    state = rng.normal(size=(n, 4)).astype(np.float32)
    for d in ("meta/episodes/chunk-000", "data/chunk-000", *(f"videos/observation.images.{c}/chunk-000" for c in CAMS)):
        (root / d).mkdir(parents=True)
    sub_texts = sorted({s for ep in SUBTASKS for s in ep if s})
    features = {f"observation.images.{c}": {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"],
                                              "info": {"video.height": H, "video.width": W, "video.codec": codec, "video.pix_fmt": "yuv420p",
                                                       "video.is_depth_map": False, "video.fps": FPS, "video.channels": 3, "has_audio": False}}
                for c in CAMS}
    features |= {
        "action": {"dtype": "float32", "shape": [6], "names": [f"j{i}" for i in range(6)]},
        "observation.state": {"dtype": "float32", "shape": [4], "names": None},
        **{k: {"dtype": "int64", "shape": [1], "names": None} for k in ("frame_index", "episode_index", "index", "task_index")},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    }
    cols = {
        "action": pa.array(actions.tolist(), pa.list_(pa.float32(), 6)),
        "observation.state": pa.array(state.tolist(), pa.list_(pa.float32(), 4)),
        "timestamp": pa.array(np.concatenate([np.arange(k) / FPS for k in LENGTHS]).astype(np.float32)),
        "frame_index": pa.array(np.concatenate([np.arange(k) for k in LENGTHS]), pa.int64()),
        "episode_index": pa.array(np.repeat(np.arange(len(LENGTHS)), LENGTHS), pa.int64()),
        "index": pa.array(np.arange(n), pa.int64()),
        "task_index": pa.array(sum(TASK_IDX, []), pa.int64()),
    }
    if subtask_col == "text":
        features["subtask"] = {"dtype": "string", "shape": [1], "names": None}
        cols["subtask"] = pa.array(sum(SUBTASKS, []), pa.string())
    else:
        features["subtask_index"] = {"dtype": "int64", "shape": [1], "names": None}
        cols["subtask_index"] = pa.array([sub_texts.index(s) if s else -1 for s in sum(SUBTASKS, [])], pa.int64())
        pq.write_table(pa.table({"subtask": sub_texts, "subtask_index": pa.array(range(len(sub_texts)), pa.int64())}), root / "meta/subtasks.parquet")
    pq.write_table(pa.table(cols), root / "data/chunk-000/file-000.parquet")
    # pandas' DataFrame({"task_index": ...}, index=tasks).to_parquet(): the text is the index column
    pq.write_table(pa.table({"task_index": pa.array(range(len(TASKS)), pa.int64()), "__index_level_0__": TASKS}), root / "meta/tasks.parquet")
    rows = []
    for e, (s, k) in enumerate(zip(starts, LENGTHS)):
        row = {"episode_index": e, "tasks": EP_TASKS[e], "length": k, "data/chunk_index": 0, "data/file_index": 0,
               "dataset_from_index": int(s), "dataset_to_index": int(s + k)}
        for c in CAMS:
            key = f"observation.images.{c}"
            row |= {f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                    f"videos/{key}/from_timestamp": s / FPS, f"videos/{key}/to_timestamp": (s + k) / FPS}
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    for ci, c in enumerate(CAMS):  # episodes one after the other in one stream, as LeRobot concatenates them
        options = {"g": "2", "crf": "30"} | ({"preset": "12"} if codec == "av1" else {})
        with av.open(str(root / f"videos/observation.images.{c}/chunk-000/file-000.mp4"), "w") as out:
            stream = out.add_stream(ENCODER[codec], rate=Fraction(FPS), options=options)
            stream.pix_fmt, stream.width, stream.height = "yuv420p", W, H
            for g in range(n):
                for p in stream.encode(av.VideoFrame.from_ndarray(np.full((H, W, 3), grey(g, ci), np.uint8), format="rgb24")):
                    out.mux(p)
            for p in stream.encode():
                out.mux(p)
    info = {"codebase_version": "v3.0", "robot_type": "so101", "total_episodes": len(LENGTHS), "total_frames": n, "total_tasks": len(TASKS),
            "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": FPS, "splits": {"train": f"0:{len(LENGTHS)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4", "features": features}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return {"actions": actions, "state": state, "starts": starts}


def spans(ep, track):
    return [(e.start, e.end, e.caption) for e in ep.events_on(track)]


@pytest.mark.parametrize("codec", ["av1", "h264", "hevc"])
def test_import_each_codec(tmp_path, codec):
    exp = write_lerobot(tmp_path / "src", codec)
    assert main(["data", "import-lerobot", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 0
    ds = Dataset.open(tmp_path / "out")
    assert len(ds) == 3 and ds.views == list(CAMS) and ds.image_size == (H, W)
    for e, ep in enumerate(ds):
        s, k = int(exp["starts"][e]), LENGTHS[e]
        np.testing.assert_array_equal(ep.actions, exp["actions"][s : s + k])  # bit-exact
        np.testing.assert_array_equal(ep.proprio, exp["state"][s : s + k])
        for v in range(len(CAMS)):  # aligned: each frame's grey level is that of its own time (codec tolerance)
            got = ep.frames[:, v].reshape(k, -1).mean(axis=1)
            want = np.array([grey(s + t, v) for t in range(k)], float)
            assert np.abs(got - want).max() < 4, (codec, e, v, got.round(), want)
        for track in ("task", "subtask", "action", "segment"):  # every track in time order
            on = ep.events_on(track)
            assert all(a.end <= b.start for a, b in zip(on, on[1:])), (track, spans(ep, track))
    ep0, ep1, ep2 = ds
    # a task change mid-episode: two task events, in time order (not in the order `tasks` lists them)
    assert spans(ep0, "task") == [(0, 7, "open the drawer"), (7, 12, "close the drawer")] and ep0.task == "open the drawer"
    assert spans(ep0, "subtask") == [(0, 3, "reach"), (3, 7, "pull"), (7, 12, "push")]
    assert [e.parent for e in ep0.events_on("subtask")] == [0, 0, 1]
    assert spans(ep1, "task") == [(0, 10, "wipe the table")] and spans(ep1, "subtask") == [(2, 6, "spray"), (6, 10, "wipe")]
    assert spans(ep2, "task") == [(0, 14, "close the drawer")] and not ep2.events_on("subtask")
    segs = ep2.events_on("segment")
    assert segs[0].start == 0 and segs[-1].end == 14 and all(a.end == b.start for a, b in zip(segs, segs[1:]))
    assert not errors(check_dataset(tmp_path / "out"))


def test_subtask_index_column(tmp_path):
    write_lerobot(tmp_path / "src", "h264", subtask_col="index")
    ds = import_lerobot(tmp_path / "src", tmp_path / "out")
    assert spans(ds[0], "subtask") == [(0, 3, "reach"), (3, 7, "pull"), (7, 12, "push")]
    assert spans(ds[1], "subtask") == [(2, 6, "spray"), (6, 10, "wipe")]


def test_failed_import_leaves_nothing_and_rerun_works(tmp_path, capsys):
    write_lerobot(tmp_path / "src", "av1")
    video = tmp_path / "src/videos/observation.images.wrist/chunk-000/file-000.mp4"
    good = video.read_bytes()
    video.write_bytes(good[: len(good) // 3])  # a truncated copy
    out = tmp_path / "out"
    assert main(["data", "import-lerobot", str(tmp_path / "src"), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert "file-000.mp4" in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["src"]  # no dataset.json, no hidden leftovers
    video.write_bytes(good)
    assert main(["data", "import-lerobot", str(tmp_path / "src"), "--out", str(out)]) == 0
    assert len(Dataset.open(out)) == 3
    with pytest.raises(DataError, match="a dataset already exists here"):
        import_lerobot(tmp_path / "src", out)
    shutil.rmtree(out)
    out.mkdir()  # an empty folder made beforehand is fine
    assert len(import_lerobot(tmp_path / "src", out)) == 3


def test_frames_past_the_video_name_the_codec(tmp_path):
    write_lerobot(tmp_path / "src", "av1")
    p = tmp_path / "src/meta/episodes/chunk-000/file-000.parquet"
    t = pq.read_table(p).to_pylist()
    for r in t:  # point episode 2 past the end of the videos
        for c in CAMS:
            r[f"videos/observation.images.{c}/from_timestamp"] += 5.0
    pq.write_table(pa.Table.from_pylist(t), p)
    with pytest.raises(DataError, match=r"the av1 video has 0 of the 12 frames") as e:
        import_lerobot(tmp_path / "src", tmp_path / "out")
    assert "episode 0" in str(e.value) and not (tmp_path / "out").exists()
