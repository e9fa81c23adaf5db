"""Shared builders for the data tests: a small valid dataset, in-place corruption, a LeRobot v3 folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.data.episode import sha256_file
from wallwm_edge.data.synthetic import synthetic_episode

T = 12


def make_dataset(root: Path, n: int = 2) -> Dataset:
    ep = synthetic_episode(T=T)
    ds = Dataset.create(root, views=ep.views, image_size=ep.image_size, action_dim=ep.action_dim, proprio_dim=ep.proprio_dim, fps=ep.fps)
    for i in range(n):
        ds.append(synthetic_episode(f"pick-place-v3_s{i:05d}", T=T, seed=i))
    return ds


def ep_dir(root: Path, i: int = 0) -> Path:
    return Path(root) / "episodes" / f"pick-place-v3_s{i:05d}"


def load_meta(d: Path) -> dict:
    return json.loads((d / "meta.json").read_text())


def save_meta(d: Path, meta: dict) -> None:
    (d / "meta.json").write_text(json.dumps(meta))


def rewrite_array(d: Path, name: str, arr: np.ndarray) -> None:
    """Replace an array file and update its meta.json record, so only the content itself is wrong."""
    np.save(d / name, arr)
    meta = load_meta(d)
    meta["files"][name] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": sha256_file(d / name)}
    save_meta(d, meta)


def write_lerobot_v3(root: Path, lengths=(14, 11), cams=("top", "wrist"), size=(24, 32), fps=10, subtasks=True) -> dict:
    """A LeRobot v3.0 folder: both episodes in one data parquet and one mp4 per camera (concatenated).

    Frame t of the whole dataset (global index g) is a flat grey of value 20 + 9 * (g % 20) plus a small
    per-camera offset, so a wrong episode offset in the video shows up as a wrong grey level.
    Returns what the importer should reproduce.
    """
    import cv2
    import pyarrow as pa
    import pyarrow.parquet as pq

    H, W = size
    A, P = 6, 5
    rng = np.random.default_rng(0)
    n_total = sum(lengths)
    actions = rng.normal(size=(n_total, A)).astype(np.float32)
    state = rng.normal(size=(n_total, P)).astype(np.float32)
    tasks = ["pick up the red cube", "open the drawer"]
    subtask_texts = ["reach the cube", "grasp the cube", "lift the cube"]
    # ep 0: three labelled subtasks; ep 1: unlabelled (-1), so it falls back to segment events
    sub_idx = [0] * 4 + [1] * 5 + [2] * (lengths[0] - 9) + [-1] * sum(lengths[1:])
    episode_index = np.repeat(np.arange(len(lengths)), lengths)
    frame_index = np.concatenate([np.arange(n) for n in lengths])
    grey = lambda g, c: 20 + 9 * (g % 20) + 5 * c  # noqa: E731

    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    features = {
        "action": {"dtype": "float32", "shape": [A], "names": [f"j{i}" for i in range(A)]},
        "observation.state": {"dtype": "float32", "shape": [P], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    for c in cams:
        features[f"observation.images.{c}"] = {
            "dtype": "video", "shape": [3, H, W], "names": ["channels", "height", "width"],
            "info": {"video.fps": float(fps), "video.height": H, "video.width": W, "video.codec": "mp4v"},
        }
    if subtasks:
        features["subtask_index"] = {"dtype": "int64", "shape": [1], "names": None}
    info = {
        "codebase_version": "v3.0", "robot_type": "so101", "total_episodes": len(lengths), "total_frames": n_total,
        "total_tasks": len(tasks), "chunks_size": 1000, "fps": fps, "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=1))
    # pandas writes the text as the index; here as a named column "task" (the importer takes either)
    pq.write_table(pa.table({"task": tasks, "task_index": [0, 1]}), root / "meta" / "tasks.parquet")
    if subtasks:
        pq.write_table(pa.table({"__index_level_0__": subtask_texts, "subtask_index": [0, 1, 2]}), root / "meta" / "subtasks.parquet")
    data = {
        "action": [list(map(float, a)) for a in actions],
        "observation.state": [list(map(float, s)) for s in state],
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": episode_index,
        "index": np.arange(n_total),
        "task_index": episode_index,
    }
    if subtasks:
        data["subtask_index"] = sub_idx
    pq.write_table(pa.table(data), root / "data" / "chunk-000" / "file-000.parquet")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ep_rows = {
        "episode_index": list(range(len(lengths))),
        "tasks": [[t] for t in tasks[: len(lengths)]],
        "length": list(lengths),
        "data/chunk_index": [0] * len(lengths),
        "data/file_index": [0] * len(lengths),
        "dataset_from_index": starts.tolist(),
        "dataset_to_index": (starts + np.array(lengths)).tolist(),
    }
    for ci, c in enumerate(cams):
        key = f"observation.images.{c}"
        vdir = root / "videos" / key / "chunk-000"
        vdir.mkdir(parents=True)
        w = cv2.VideoWriter(str(vdir / "file-000.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
        assert w.isOpened()
        for g in range(n_total):
            w.write(np.full((H, W, 3), grey(g, ci), np.uint8))
        w.release()
        ep_rows[f"videos/{key}/chunk_index"] = [0] * len(lengths)
        ep_rows[f"videos/{key}/file_index"] = [0] * len(lengths)
        ep_rows[f"videos/{key}/from_timestamp"] = (starts / fps).tolist()
        ep_rows[f"videos/{key}/to_timestamp"] = ((starts + np.array(lengths)) / fps).tolist()
    pq.write_table(pa.table(ep_rows), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    return {
        "actions": actions, "state": state, "lengths": lengths, "starts": starts, "tasks": tasks,
        "subtasks": subtask_texts, "sub_idx": sub_idx, "grey": grey, "cams": cams, "size": size,
    }
