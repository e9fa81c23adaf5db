"""Episode schema round trip, atomic writes, and the Dataset handle."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from wwdata_helpers import T, make_dataset

import wallwm_edge.data.episode as episode_mod
from wallwm_edge.data.check import check_dataset, errors
from wallwm_edge.data.dataset import Dataset, scan_episode_ids
from wallwm_edge.data.episode import Event, read_episode, sha256_file, write_episode
from wallwm_edge.data.synthetic import synthetic_episode
from wallwm_edge.errors import DataError


def test_round_trip_every_field(tmp_path):
    ep = synthetic_episode(T=T, seed=3)
    path = write_episode(tmp_path, ep)
    back = read_episode(path)
    assert isinstance(back.frames, np.memmap) and not back.frames.flags.writeable  # streamed, read-only
    for name in ("frames", "actions", "proprio", "timestamps", "cam_poses"):
        a, b = getattr(ep, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    assert back.events == ep.events and all(isinstance(e, Event) for e in back.events)
    assert back.rig.to_json() == ep.rig.to_json()
    assert (back.episode_id, back.task, back.seed, back.fps, back.success, back.split_tags) == (
        ep.episode_id, ep.task, ep.seed, ep.fps, ep.success, ep.split_tags)
    assert back.views == ["corner", "top", "gripper"] and back.image_size == (32, 32) and back.num_frames == T
    meta = json.loads((path / "meta.json").read_text())
    for name, rec in meta["files"].items():  # checksums recorded are the files' real sha256
        assert rec["sha256"] == sha256_file(path / name)
    loaded = read_episode(path, mmap=False)
    assert not isinstance(loaded.frames, np.memmap) and np.array_equal(loaded.frames, ep.frames)


def test_event_json_round_trip_and_missing_field():
    e = Event("action", 2, 5, "close:gripper", "close the gripper", ("shut the gripper",), ("clamp it",), 1)
    assert Event.from_json(e.to_json()) == e and e.length == 3
    with pytest.raises(DataError, match="events\\[4\\]: event is missing field 'end'"):
        Event.from_json({"track": "task", "start": 0}, where="events[4]: ")


def test_write_rejects_bad_shapes_and_ids(tmp_path):
    ep = synthetic_episode(T=T)
    bad = episode_mod.Episode(**{**ep.__dict__, "actions": ep.actions[:, :3].astype(np.float64)})
    with pytest.raises(DataError, match=r"actions: dtype float64 != expected float32"):
        write_episode(tmp_path, bad)
    short = episode_mod.Episode(**{**ep.__dict__, "timestamps": ep.timestamps[:-1]})
    with pytest.raises(DataError, match=r"timestamps: shape \(11,\) != expected \(12,\)"):
        write_episode(tmp_path, short)
    with pytest.raises(DataError, match="episode id"):
        write_episode(tmp_path, episode_mod.Episode(**{**ep.__dict__, "episode_id": ".hidden"}))
    assert not (tmp_path / "episodes").exists() or not any((tmp_path / "episodes").iterdir())


def test_exists_and_overwrite(tmp_path):
    write_episode(tmp_path, synthetic_episode(T=T, seed=0))
    with pytest.raises(DataError, match="already exists"):
        write_episode(tmp_path, synthetic_episode(T=T, seed=1))
    p = write_episode(tmp_path, synthetic_episode(T=T, seed=1), overwrite=True)
    assert read_episode(p).seed == 1
    assert sorted(x.name for x in (tmp_path / "episodes").iterdir()) == [p.name]  # no leftovers


def test_exception_mid_write_leaves_nothing(tmp_path, monkeypatch):
    real, calls = episode_mod._save_npy, []

    def failing(path, arr):
        calls.append(path.name)
        if len(calls) == 3:
            raise OSError("disk full")
        real(path, arr)

    monkeypatch.setattr(episode_mod, "_save_npy", failing)
    with pytest.raises(OSError, match="disk full"):
        write_episode(tmp_path, synthetic_episode(T=T))
    assert list((tmp_path / "episodes").iterdir()) == []  # neither the episode nor its temp folder


def test_killed_mid_write_leaves_only_a_stale_dot_folder(tmp_path):
    make_dataset(tmp_path, n=1)
    # A real process dies (SIGKILL, no cleanup possible) after writing two of the array files.
    code = textwrap.dedent(f"""
        import os, signal
        import wallwm_edge.data.episode as m
        from wallwm_edge.data.synthetic import synthetic_episode
        real, n = m._save_npy, [0]
        def dying(path, arr):
            real(path, arr)
            n[0] += 1
            if n[0] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        m._save_npy = dying
        m.write_episode({str(tmp_path)!r}, synthetic_episode("pick-place-v3_s00009", T={T}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == -signal.SIGKILL
    leftovers = [p.name for p in (tmp_path / "episodes").iterdir()]
    assert "pick-place-v3_s00009" not in leftovers and any(p.startswith(".tmp-pick-place-v3_s00009-") for p in leftovers)
    assert scan_episode_ids(tmp_path) == ["pick-place-v3_s00000"]  # readers don't see it
    ds = Dataset.open(tmp_path).finalize()
    assert ds.episode_ids == ["pick-place-v3_s00000"]
    problems = check_dataset(tmp_path)
    assert not errors(problems)
    stale = [p for p in problems if p.kind == "stale_tmp"]
    assert len(stale) == 1 and stale[0].episode == "pick-place-v3_s00009" and "interrupted" in str(stale[0])
    # a retry of the same episode by the same writer succeeds
    write_episode(tmp_path, synthetic_episode("pick-place-v3_s00009", T=T))
    assert "pick-place-v3_s00009" in scan_episode_ids(tmp_path)


def test_dataset_create_open_append_finalize(tmp_path):
    ds = make_dataset(tmp_path / "d", n=3)
    assert len(ds) == 3 and ds.episode_ids == [f"pick-place-v3_s{i:05d}" for i in range(3)]
    again = Dataset.open(tmp_path / "d")
    assert again.info == ds.info and again.views == ["corner", "top", "gripper"] and again.image_size == (32, 32)
    assert [e.seed for e in again] == [0, 1, 2] and again[1].episode_id == "pick-place-v3_s00001"
    with pytest.raises(DataError, match="already exists"):
        Dataset.create(tmp_path / "d", views=["a"], image_size=(8, 8), action_dim=4, proprio_dim=4, fps=10)
    with pytest.raises(DataError, match="field 'image_size'"):
        Dataset.create(tmp_path / "d", views=ds.views, image_size=(8, 8), action_dim=4, proprio_dim=4, fps=10, exist_ok=True)
    # an episode that does not fit is refused with the reason
    with pytest.raises(DataError, match="views: episode has \\['corner', 'top'\\]"):
        ds.append(synthetic_episode("x", T=T, views=("corner", "top")))
    # parallel writers: write_episode directly, then the parent finalizes
    write_episode(ds.root, synthetic_episode("pick-place-v3_s00007", T=T))
    assert len(Dataset.open(ds.root)) == 3
    assert Dataset.open(ds.root).finalize(generator={"seed": 5}).episode_ids[-1] == "pick-place-v3_s00007"
    assert Dataset.open(ds.root).info["generator"] == {"seed": 5}


def test_open_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="dataset.json: not found"):
        Dataset.open(tmp_path)
    (tmp_path / "dataset.json").write_text("{oops")
    with pytest.raises(DataError, match="dataset.json: not valid JSON"):
        Dataset.open(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "wallwm-dataset/1"}))
    with pytest.raises(DataError, match="missing field 'views'"):
        Dataset.open(tmp_path)


def test_read_episode_truncated_file_is_a_data_error(tmp_path):
    p = write_episode(tmp_path, synthetic_episode(T=T))
    size = os.path.getsize(p / "frames.npy")
    with open(p / "frames.npy", "r+b") as f:
        f.truncate(size - 10)
    with pytest.raises(DataError, match="frames.npy: unreadable or truncated"):
        read_episode(p)
