"""Export one of our datasets as a LeRobot v3.0 dataset folder: `wallwm-edge data export-lerobot DATASET --out DIR`.

So LeRobot users can train their policies on our event data with `LeRobotDataset(repo_id, root=DIR)`.
What is written (the layout LeRobot's own writer produces; one data file and one video per camera, since
our datasets are far below LeRobot's 100 MB / 200 MB file sizes):

    meta/info.json                        codebase_version "v3.0", fps, features, path templates, totals
    meta/stats.json                       min / max / mean / std / count of every numeric feature and camera
    meta/tasks.parquet                    task text (the pandas index, as LeRobot writes it) + task_index
    meta/subtasks.parquet                 subtask text + subtask_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, where its rows and frames are
    data/chunk-000/file-000.parquet       one row per frame: action, observation.state, timestamp, frame_index,
                                          episode_index, index, task_index, subtask_index, language.* text
    videos/observation.images.<view>/chunk-000/file-000.mp4   all episodes' frames, one after the other

Events become per-frame language columns, so each track survives the trip: `task_index` (every task event,
so a task change mid-episode changes it), `subtask_index` (-1 where no subtask), and the text columns
`language.subtask`, `language.action`, `language.segment` ("" where no event). `import-lerobot` reads them
back into events. Lost on the way: paraphrases, event keys (rebuilt from captions), the rig (LeRobot has
no place for calibration), and two adjacent events with the same caption (they read back as one).
Timestamps are written as frame_index / fps, which is how LeRobot finds a frame in the video.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.data.episode import TRACKS, Episode
from wallwm_edge.data.lerobot_video import ENCODERS, encode_video
from wallwm_edge.data.staging import staged
from wallwm_edge.errors import ConfigError, DataError

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
TEXT_TRACKS = tuple(t for t in TRACKS if t != "task")  # written as language.<track> text columns (tasks: task_index)


def frame_captions(ep: Episode, track: str) -> list[str]:
    """The caption of the `track` event covering each frame ("" where none does)."""
    out = [""] * ep.num_frames
    for e in sorted(ep.events_on(track), key=lambda e: e.start):
        out[e.start : e.end] = [e.caption] * (e.end - e.start)
    return out


def _scalar(dtype: str) -> dict:
    return {"dtype": dtype, "shape": [1], "names": None}


def _stats(x: np.ndarray) -> dict:
    """LeRobot's per-feature statistics over axis 0 (frames)."""
    x = x.astype(np.float64)
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "count": [len(x)]}


def _text_table(texts: list[str], text_col: str, index_col: str):
    """tasks.parquet / subtasks.parquet as pandas' `DataFrame({index_col: ...}, index=texts).to_parquet()`
    writes it: LeRobot reads it with `pd.read_parquet` and looks the text up as the index."""
    import pyarrow as pa

    table = pa.table({index_col: pa.array(range(len(texts)), pa.int64()), text_col: pa.array(texts, pa.string())})
    pandas_meta = {
        "index_columns": [text_col],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": index_col, "field_name": index_col, "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": text_col, "field_name": text_col, "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def export_lerobot(src: str | os.PathLike, out: str | os.PathLike, vcodec: str = "libsvtav1", robot_type: str | None = None,
                   progress: Callable | None = None) -> Path:
    """Write dataset `src` as a LeRobot v3.0 folder at `out` (atomically: a hidden folder renamed at the end)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("export-lerobot writes parquet with pyarrow: pip install 'wallwm-edge[train]' (or pyarrow)") from None
    if vcodec not in ENCODERS:
        raise ConfigError(f"--vcodec must be one of {sorted(ENCODERS)} (LeRobot's choices), got {vcodec!r}")
    ds = Dataset.open(src)
    if len(ds) == 0:
        raise DataError(f"{ds.root / 'dataset.json'}: field 'episodes' is empty; nothing to export")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not an empty folder (choose another --out)")
    fps = ds.fps
    fps_out = int(fps) if float(fps).is_integer() else fps
    H, W = ds.image_size
    A, P = int(ds.info["action_dim"]), int(ds.info["proprio_dim"])
    keys = [f"observation.images.{v}" for v in ds.views]

    with staged(out) as tmp:  # all or nothing: a failed export leaves no half dataset at --out
        for sub in ("meta/episodes/chunk-000", "data/chunk-000", *(f"videos/{k}/chunk-000" for k in keys)):
            (tmp / sub).mkdir(parents=True)
        tasks: dict[str, int] = {}
        subtasks: dict[str, int] = {}
        cols: dict[str, list] = {c: [] for c in ("action", "observation.state", "timestamp", "frame_index", "episode_index", "index",
                                                 "task_index", "subtask_index", *(f"language.{t}" for t in TEXT_TRACKS))}
        ep_rows, offset = [], 0
        image_sum = np.zeros((len(keys), 3))
        image_sq = np.zeros((len(keys), 3))
        image_min = np.full((len(keys), 3), 255.0)
        image_max = np.zeros((len(keys), 3))
        episodes = list(ds)
        for i, ep in enumerate(progress(episodes) if progress else episodes):
            T = ep.num_frames
            task_caps = [c or ep.task for c in frame_captions(ep, "task")]
            for c in task_caps:
                tasks.setdefault(c, len(tasks))
            sub_caps = frame_captions(ep, "subtask")
            for c in filter(None, sub_caps):
                subtasks.setdefault(c, len(subtasks))
            cols["action"] += np.asarray(ep.actions, np.float32).tolist()
            cols["observation.state"] += np.asarray(ep.proprio, np.float32).tolist()
            cols["timestamp"] += (np.arange(T) / fps).astype(np.float32).tolist()
            cols["frame_index"] += list(range(T))
            cols["episode_index"] += [i] * T
            cols["index"] += list(range(offset, offset + T))
            cols["task_index"] += [tasks[c] for c in task_caps]
            cols["subtask_index"] += [subtasks[c] if c else -1 for c in sub_caps]
            for t in TEXT_TRACKS:
                cols[f"language.{t}"] += frame_captions(ep, t)
            frames = np.asarray(ep.frames, np.float64) / 255.0  # (T, V, H, W, 3)
            image_sum += frames.sum((0, 2, 3))
            image_sq += (frames**2).sum((0, 2, 3))
            image_min = np.minimum(image_min, frames.min((0, 2, 3)))
            image_max = np.maximum(image_max, frames.max((0, 2, 3)))
            row = {"episode_index": i, "tasks": list(dict.fromkeys(task_caps)), "length": T,
                   "data/chunk_index": 0, "data/file_index": 0, "dataset_from_index": offset, "dataset_to_index": offset + T}
            for k in keys:
                row |= {f"videos/{k}/chunk_index": 0, f"videos/{k}/file_index": 0,
                        f"videos/{k}/from_timestamp": offset / fps, f"videos/{k}/to_timestamp": (offset + T) / fps}
            row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0, "wallwm/episode_id": ep.episode_id}
            ep_rows.append(row)
            offset += T
        for v, k in enumerate(keys):  # one stream per camera: every episode's frames, in episode order
            encode_video(tmp / VIDEO_PATH.format(video_key=k, chunk_index=0, file_index=0),
                         (f for ep in episodes for f in ep.frames[:, v]), fps, vcodec, (H, W))

        features = {k: {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"],
                        "info": {"video.height": H, "video.width": W, "video.codec": ENCODERS[vcodec], "video.pix_fmt": "yuv420p",
                                 "video.is_depth_map": False, "video.fps": fps_out, "video.channels": 3, "has_audio": False}} for k in keys}
        action_names = _action_names(ds.info.get("action_space", ""), A)
        features["action"] = {"dtype": "float32", "shape": [A], "names": action_names}
        if P:  # a dataset imported without observation.state has none to give back
            features["observation.state"] = {"dtype": "float32", "shape": [P], "names": [f"p{j}" for j in range(P)]}
        for c in ("timestamp",):
            features[c] = _scalar("float32")
        for c in ("frame_index", "episode_index", "index", "task_index", "subtask_index"):
            features[c] = _scalar("int64")
        for t in TEXT_TRACKS:
            features[f"language.{t}"] = _scalar("string")
        table = pa.table({
            "action": pa.array(cols["action"], pa.list_(pa.float32(), A)),
            **({"observation.state": pa.array(cols["observation.state"], pa.list_(pa.float32(), P))} if P else {}),
            "timestamp": pa.array(cols["timestamp"], pa.float32()),
            **{c: pa.array(cols[c], pa.int64()) for c in ("frame_index", "episode_index", "index", "task_index", "subtask_index")},
            **{f"language.{t}": pa.array(cols[f"language.{t}"], pa.string()) for t in TEXT_TRACKS},
        })
        pq.write_table(table, tmp / DATA_PATH.format(chunk_index=0, file_index=0))
        pq.write_table(pa.Table.from_pylist(ep_rows), tmp / EPISODES_PATH)
        pq.write_table(_text_table(list(tasks), "task", "task_index"), tmp / "meta" / "tasks.parquet")
        pq.write_table(_text_table(list(subtasks), "subtask", "subtask_index"), tmp / "meta" / "subtasks.parquet")

        n = offset
        mean = image_sum / (n * H * W)
        std = np.sqrt(np.maximum(image_sq / (n * H * W) - mean**2, 0))
        stats = {k: {"min": image_min[v][:, None, None].tolist(), "max": image_max[v][:, None, None].tolist(),
                     "mean": mean[v][:, None, None].tolist(), "std": std[v][:, None, None].tolist(), "count": [n]} for v, k in enumerate(keys)}
        for c in ("action", "observation.state")[: 2 if P else 1]:
            stats[c] = _stats(np.asarray(cols[c], np.float32).reshape(n, -1))
        for c in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
            stats[c] = _stats(np.asarray(cols[c], np.float64).reshape(n, 1))
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type or _robot_type(ds.info.get("action_space", "")),
            "total_episodes": len(episodes),
            "total_frames": n,
            "total_tasks": len(tasks),
            "chunks_size": 1000,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "fps": fps_out,
            "splits": {"train": f"0:{len(episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": features,
        }
        for name, obj in (("info.json", info), ("stats.json", stats)):
            (tmp / "meta" / name).write_text(json.dumps(obj, indent=4) + "\n")
    return out


def _action_names(action_space: str, A: int) -> list[str]:
    """Per-dimension names: from a LeRobot-imported action space ("lerobot:robot:j0,j1,..."), else a0.."""
    names = action_space.rsplit(":", 1)[-1].split(",") if action_space.startswith("lerobot:") else []
    return names if len(names) == A else [f"a{j}" for j in range(A)]


def _robot_type(action_space: str) -> str | None:
    """The robot of a LeRobot-imported dataset ("lerobot:so101:..."), else unknown (None, as LeRobot allows)."""
    parts = action_space.split(":")
    return parts[1] if len(parts) == 3 and parts[0] == "lerobot" and parts[1] != "unknown" else None
