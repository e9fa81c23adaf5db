"""Import a local LeRobot v3 dataset folder into our episode format: `wallwm-edge data import-lerobot DIR`.

The LeRobot v3.0 layout (lerobot >= 0.4; several episodes share one file, located through metadata):

    meta/info.json                               codebase_version "v3.x", fps, features, data_path and
                                                 video_path templates ({chunk_index}, {file_index}, {video_key})
    meta/tasks.parquet                           task text (a string column, or the pandas index) + task_index
    meta/subtasks.parquet                        optional: subtask text + subtask_index (per-frame labels)
    meta/episodes/chunk-*/file-*.parquet         one row per episode: episode_index, tasks, length,
                                                 data/chunk_index, data/file_index,
                                                 videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp}
    data/chunk-*/file-*.parquet                  one row per frame: episode_index, frame_index, timestamp,
                                                 task_index, observation.state, action, (subtask_index)
    videos/<key>/chunk-*/file-*.mp4              frames of consecutive episodes, concatenated

Mapping:
- views: every feature of dtype "video" (decoded with PyAV: AV1, h264, hevc, see lerobot_video.py) or
  "image" (PNG/JPEG bytes in the parquet), named by the key without "observation.images."; frames resized
  to one common size (--size, else the first camera's).
- actions <- "action", proprio <- "observation.state" (P = 0 if absent), timestamps <- "timestamp".
- events, from per-frame labels, each track in time order (a run of one label is one event, so a task
  change mid-episode gives two task events):
    task     <- "language.task" / "task" text column, else `task_index` (meta/tasks.parquet), else the
                first entry of the episode's `tasks` (LeRobot keeps no order among several)
    subtask  <- "language.subtask" / "subtask" text column, else `subtask_index` (meta/subtasks.parquet)
    action   <- "language.action" / "action" text column (when "action" holds text, not the vectors)
    segment  <- "language.segment" / "segment" text column
  Unlabelled frames (None, "", index -1) belong to no event. A finer event is cut where a coarser one ends
  and nests in it. Without any finer label, task events are cut into segment events at pauses of the
  commanded motion (`motion_segments`). `wallwm-edge data export-lerobot` writes these same columns.
- the import is atomic: it is written into a hidden sibling folder renamed into place at the end.
- rig: LeRobot stores no calibration. Unless a rig file from `wallwm-edge calibrate` is given, each camera
  gets a PLACEHOLDER: pinhole with a 60 degree horizontal field of view, principal point at the centre,
  no distortion, identity camera-to-base pose ("fixed", or "wrist" if the name says wrist/hand/gripper).
  Placeholders are flagged in every episode's meta.json ("extra": {"uncalibrated": [names], ...}) and in
  dataset.json, so sight-cone masks built from them can be recognised as meaningless.
- success: from "next.success" when present, else assumed (demonstrations) and recorded as assumed.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np

from wallwm_edge.calibration.rig import Camera, Rig
from wallwm_edge.data.dataset import INFO, Dataset
from wallwm_edge.data.episode import TRACKS, Episode, Event
from wallwm_edge.data.lerobot_video import VideoCursor
from wallwm_edge.data.staging import staged
from wallwm_edge.errors import ConfigError, DataError

IMAGE_PREFIX = "observation.images."
PLACEHOLDER_HFOV_DEG = 60.0
WRIST_WORDS = ("wrist", "hand", "gripper", "eef")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:60] or "x"


# --- reading the LeRobot folder -----------------------------------------------------------------------


def _read_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        raise DataError(f"{path}: not a readable parquet file ({e})") from None


def _text_index_table(path: Path, index_col: str) -> dict[int, str]:
    """{index: text} from tasks.parquet / subtasks.parquet: the text is the one string column
    (pandas writes it as the index, "__index_level_0__" or named), the integer column is `index_col`."""
    import pyarrow as pa

    t = _read_parquet(path)
    if index_col not in t.column_names:
        raise DataError(f"{path}: missing column {index_col!r} (has {t.column_names})")
    text_cols = [c for c in t.column_names if pa.types.is_string(t.schema.field(c).type) or pa.types.is_large_string(t.schema.field(c).type)]
    if len(text_cols) != 1:
        raise DataError(f"{path}: expected one text column beside {index_col!r}, found {text_cols}")
    return {int(i): str(s) for i, s in zip(t.column(index_col).to_pylist(), t.column(text_cols[0]).to_pylist())}


class LeRobotSource:
    """Read-only view of a local LeRobot v3 dataset folder."""

    def __init__(self, root: str | os.PathLike):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("import-lerobot reads parquet with pyarrow: pip install 'wallwm-edge[train]' (or pyarrow)") from None
        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        from wallwm_edge.validate import load_json_object

        self.info = load_json_object(info_path, DataError, f"not found ({self.root} is not a LeRobot dataset folder)")
        version = str(self.info.get("codebase_version", ""))
        if not version.startswith("v3"):
            raise DataError(
                f"{info_path}: codebase_version {version!r} is not v3.x; convert it first with "
                "`python -m lerobot.datasets.v30.convert_dataset_v21_to_v30`"
            )
        for key in ("fps", "features", "data_path"):
            if key not in self.info:
                raise DataError(f"{info_path}: missing field {key!r}")
        self.fps = float(self.info["fps"])
        self.features: dict = self.info["features"]
        if "action" not in self.features:
            raise DataError(f"{info_path}: no 'action' feature; features are {sorted(self.features)}")
        self.camera_keys = [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]
        if not self.camera_keys:
            raise DataError(f"{info_path}: no camera features (dtype 'video' or 'image')")
        if any(self.features[k]["dtype"] == "video" for k in self.camera_keys) and not self.info.get("video_path"):
            raise DataError(f"{info_path}: video features but no 'video_path' template")
        self.tasks = _text_index_table(self.root / "meta" / "tasks.parquet", "task_index")
        sub = self.root / "meta" / "subtasks.parquet"
        self.subtasks = _text_index_table(sub, "subtask_index") if sub.exists() else None
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DataError(f"{self.root / 'meta' / 'episodes'}: no chunk-*/file-*.parquet episode tables")
        rows = []
        for f in files:
            rows += _read_parquet(f).to_pylist()
        for r in rows:
            if "episode_index" not in r or "length" not in r:
                raise DataError(f"{self.root / 'meta' / 'episodes'}: episode rows need 'episode_index' and 'length'")
        self.episodes = {int(r["episode_index"]): r for r in rows}
        self._data_cache: tuple[Path, object] | None = None
        self._videos: dict[Path, VideoCursor] = {}

    @property
    def camera_names(self) -> list[str]:
        return [k[len(IMAGE_PREFIX):] if k.startswith(IMAGE_PREFIX) else k for k in self.camera_keys]

    def _path(self, template: str, **kw) -> Path:
        try:
            return self.root / template.format(**kw)
        except (KeyError, IndexError, ValueError) as e:
            raise DataError(f"{self.root / 'meta' / 'info.json'}: path template {template!r} cannot be filled ({e})") from None

    def frame_rows(self, ep: int) -> dict[str, list]:
        """Columns of episode `ep`'s rows in its data file, sorted by frame_index."""
        import pyarrow.compute as pc

        row = self.episodes[ep]
        path = self._path(self.info["data_path"], chunk_index=int(row.get("data/chunk_index", 0)), file_index=int(row.get("data/file_index", 0)))
        if self._data_cache is None or self._data_cache[0] != path:
            self._data_cache = (path, _read_parquet(path))
        table = self._data_cache[1]
        for col in ("episode_index", "action"):
            if col not in table.column_names:
                raise DataError(f"{path}: missing column {col!r}")
        t = table.filter(pc.equal(table.column("episode_index"), ep))
        if "frame_index" in t.column_names:
            t = t.take(pc.sort_indices(t, sort_keys=[("frame_index", "ascending")]))
        if t.num_rows != int(row["length"]):
            raise DataError(f"{path}: episode {ep} has {t.num_rows} frame rows, meta/episodes says length {row['length']}")
        return {c: t.column(c).to_pylist() for c in t.column_names}

    def camera_frames(self, ep: int, key: str, cols: dict[str, list]) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames of camera `key` for episode `ep`."""
        import cv2

        T = int(self.episodes[ep]["length"])
        if self.features[key]["dtype"] == "image":
            out = []
            for t, cell in enumerate(cols.get(key) or []):
                data = cell.get("bytes") if isinstance(cell, dict) else cell
                img = None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                if img is None:
                    raise DataError(f"episode {ep}: feature {key!r} frame {t}: image bytes cannot be decoded")
                out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            if len(out) != T:
                raise DataError(f"episode {ep}: feature {key!r} has {len(out)} images for {T} frames")
            return np.stack(out)
        row = self.episodes[ep]
        need = [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
        missing = [c for c in need if row.get(c) is None]
        if missing:
            raise DataError(f"{self.root / 'meta' / 'episodes'}: episode {ep} lacks {missing}")
        path = self._path(self.info["video_path"], video_key=key, chunk_index=int(row[need[0]]), file_index=int(row[need[1]]))
        vfps = float(self.features[key].get("info", {}).get("video.fps", self.fps))
        start = int(round(float(row[need[2]]) * vfps))
        cursor = self._videos.get(path)
        if cursor is None:
            for old in self._videos.values():  # one open decoder at a time
                old.close()
            self._videos = {path: (cursor := VideoCursor(path, vfps))}
        return cursor.read(start, T, f"episode {ep} camera {key!r}")

    def close(self) -> None:
        for c in self._videos.values():
            c.close()
        self._videos = {}


# --- mapping to our format ----------------------------------------------------------------------------


def placeholder_camera(name: str, height: int, width: int) -> Camera:
    """The documented stand-in for an uncalibrated camera (see the module docstring)."""
    f = (width / 2) / math.tan(math.radians(PLACEHOLDER_HFOV_DEG) / 2)
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    wrist = any(w in name.lower() for w in WRIST_WORDS)
    return Camera(name, width, height, K, np.zeros(5), np.eye(4), "wrist" if wrist else "fixed", np.eye(4) if wrist else None)


def scale_camera(cam: Camera, height: int, width: int) -> Camera:
    """Same camera seen at another resolution (intrinsics scaled about pixel centres)."""
    if (cam.height, cam.width) == (height, width):
        return cam
    sx, sy = width / cam.width, height / cam.height
    K = np.array(cam.K, np.float64)
    K[0, 0], K[0, 1], K[0, 2] = K[0, 0] * sx, K[0, 1] * sx, (K[0, 2] + 0.5) * sx - 0.5
    K[1, 1], K[1, 2] = K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5
    return Camera(cam.name, width, height, K, cam.dist, cam.T_base_cam, cam.mount, cam.T_flange_cam)


def _labelled(x) -> bool:
    if x is None:
        return False
    if isinstance(x, str):
        return bool(x.strip())
    return int(x) >= 0


def label_runs(labels: list, T: int, cuts=()) -> list[tuple[int, int, object]]:
    """[(start, end, label)] runs of equal per-frame labels, skipping unlabelled frames (None, negative
    indices, empty strings); a run is also cut at every frame in `cuts` (the coarser track's bounds)."""
    runs, start, cuts = [], 0, set(cuts)
    for t in range(1, T + 1):
        if t == T or labels[t] != labels[start] or t in cuts:
            if _labelled(labels[start]):
                lab = labels[start]
                runs.append((start, t, lab if isinstance(lab, str) else int(lab)))
            start = t
    return runs


def motion_segments(actions: np.ndarray, min_len: int = 5) -> list[tuple[int, int]]:
    """Cut [0, T) at pauses of the commanded motion: local minima of the (3-frame smoothed) speed of the
    action signal (LeRobot actions are usually joint-position targets, so their change is the commanded
    velocity), deepest first, at least `min_len` frames apart. A generic rule for robots we know nothing about;
    the Meta-World data uses the expert's phases instead (wallwm_edge/events/phases.py)."""
    T = len(actions)
    if T < 2 * min_len:
        return [(0, T)]
    speed = np.linalg.norm(np.diff(actions.astype(np.float64), axis=0, prepend=actions[:1]), axis=1)  # (T,)
    speed = np.convolve(np.pad(speed, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    minima = [t for t in range(1, T - 1) if speed[t] < speed[t - 1] and speed[t] <= speed[t + 1]]
    cuts = []
    for t in sorted(minima, key=lambda t: speed[t]):  # deepest pauses first
        if t >= min_len and T - t >= min_len and all(abs(t - c) >= min_len for c in cuts):
            cuts.append(t)
    bounds = [0] + sorted(cuts) + [T]
    return [(a, b) for a, b in zip(bounds, bounds[1:])]


def episode_events(labels: dict[str, list], T: int, actions: np.ndarray) -> tuple[Event, ...]:
    """Events from per-frame text labels {track: [caption or None] * T}, coarse tracks first, each track
    in time order. A run of one label is one event; a finer run is cut where a coarser event ends and
    its parent is the innermost coarser event enclosing it. Without any finer label the task events are
    cut into segment events at pauses of the commanded motion."""
    events: list[Event] = []
    for track in TRACKS:
        if labels.get(track) is None:
            continue
        cuts = {e.start for e in events} | {e.end for e in events}
        for s, e, text in label_runs(labels[track], T, cuts):
            enclosing = [i for i, p in enumerate(events) if p.start <= s and e <= p.end]
            parent = max(enclosing, key=lambda i: TRACKS.index(events[i].track)) if enclosing else None
            events.append(Event(track, s, e, f"{track}:{slug(text)}", text, parent=parent))
    if not any(e.track != "task" for e in events):
        for i, task in enumerate(list(events)):
            for k, (s, e) in enumerate(motion_segments(actions[task.start : task.end])):
                events.append(Event("segment", task.start + s, task.start + e, f"segment:{slug(task.caption)}:{k}",
                                    f"part {k + 1} of: {task.caption}", parent=i))
    return tuple(events)


def frame_labels(source: "LeRobotSource", ep: int, cols: dict, T: int) -> dict[str, list]:
    """Per-frame captions of each track found in the frame rows (see the module docstring)."""
    labels: dict[str, list] = {}
    for track in TRACKS:
        for col in (f"language.{track}", track):
            if col in cols and all(x is None or isinstance(x, str) for x in cols[col]):
                labels[track] = [x or None for x in cols[col]]
                break
    where = f"{source.root}: episode {ep}"
    if "task" not in labels and cols.get("task_index") is not None:
        unknown = sorted({int(i) for i in cols["task_index"] if i is not None and int(i) >= 0 and int(i) not in source.tasks})
        if unknown:
            raise DataError(f"{where}: field task_index has {unknown[:5]}, not in meta/tasks.parquet")
        labels["task"] = [None if i is None or int(i) < 0 else source.tasks[int(i)] for i in cols["task_index"]]
    if "task" not in labels:  # no per-frame task: the episode's listed task (LeRobot keeps no order among several)
        tasks = source.episodes[ep].get("tasks")
        if not (isinstance(tasks, list) and tasks):
            raise DataError(f"{where}: has no task (no task_index column, no 'tasks' in meta/episodes)")
        labels["task"] = [str(tasks[0])] * T
    if not any(labels["task"]):
        raise DataError(f"{where}: no frame has a task (task_index or task column all unlabelled)")
    if "subtask" not in labels and source.subtasks is not None and cols.get("subtask_index") is not None:
        unknown = sorted({int(i) for i in cols["subtask_index"] if i is not None and int(i) >= 0 and int(i) not in source.subtasks})
        if unknown:
            raise DataError(f"{where}: field subtask_index has {unknown[:5]}, not in meta/subtasks.parquet")
        labels["subtask"] = [None if i is None or int(i) < 0 else source.subtasks[int(i)] for i in cols["subtask_index"]]
    return labels


def import_lerobot(
    src: str | os.PathLike,
    out: str | os.PathLike,
    episodes: list[int] | None = None,
    image_size: tuple[int, int] | None = None,
    rig: str | os.PathLike | None = None,
    progress: Callable | None = None,
) -> Dataset:
    """Convert the LeRobot v3 folder `src` into a new dataset at `out`; returns it (finalized)."""
    source = LeRobotSource(src)
    names = source.camera_names
    ids = sorted(source.episodes) if episodes is None else list(episodes)
    for ep in ids:
        if ep not in source.episodes:
            raise DataError(f"{src}: no episode {ep} (has {min(source.episodes)}..{max(source.episodes)})")
    if image_size is None:  # the first camera's size; others are resized to it
        shape = source.features[source.camera_keys[0]].get("shape", [])
        names_ = source.features[source.camera_keys[0]].get("names") or []
        if len(shape) == 3 and list(names_)[:1] in (["channels"], ["c"], ["channel"]):
            image_size = (int(shape[1]), int(shape[2]))
        elif len(shape) == 3:
            image_size = (int(shape[0]), int(shape[1]))
        else:
            raise DataError(f"{src}: feature {source.camera_keys[0]!r} has no (C, H, W) or (H, W, C) shape; pass --size")
    H, W = image_size
    if rig is not None:
        cams = tuple(scale_camera(c, H, W) for c in Rig.load(rig).select(names).cameras)
        uncalibrated: list[str] = []
    else:
        cams = tuple(placeholder_camera(n, H, W) for n in names)
        uncalibrated = list(names)
    the_rig = Rig(cams)
    A = int(np.prod(source.features["action"]["shape"]))
    P = int(np.prod(source.features["observation.state"]["shape"])) if "observation.state" in source.features else 0
    robot = source.info.get("robot_type") or "unknown"
    calibration = f"placeholder pinhole, {PLACEHOLDER_HFOV_DEG:.0f} deg hfov, identity pose (uncalibrated)" if uncalibrated else f"rig file {rig}"
    out = Path(out)
    if (out / INFO).exists():
        raise DataError(f"{out / INFO}: a dataset already exists here (choose another --out or remove it)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not an empty folder (choose another --out)")
    # Everything goes into a hidden sibling folder that is renamed into place at the end: a failed or
    # interrupted import leaves no half dataset behind, so the same command can simply be run again.
    try:
        with staged(out) as tmp:
            ds = Dataset.create(
                tmp,
                name=out.name,
                views=names,
                image_size=(H, W),
                action_dim=A,
                proprio_dim=P,
                fps=source.fps,
                action_space=f"lerobot:{robot}:" + ",".join(map(str, _names(source.features["action"]) or [f"a{i}" for i in range(A)])),
                generator={"source": "lerobot", "path": str(Path(src).resolve()), "codebase_version": source.info.get("codebase_version"),
                           "episodes": ids, "uncalibrated": uncalibrated, "calibration": calibration},
            )
            dname = slug(Path(src).resolve().name)
            for ep in progress(ids) if progress else ids:
                ds.append(_episode(source, ep, f"{dname}_e{ep:05d}", the_rig, (H, W), A, P, uncalibrated, calibration))
            ds.finalize()
    finally:
        source.close()
    return Dataset.open(out)


def _episode(source: LeRobotSource, ep: int, episode_id: str, rig: Rig, size: tuple[int, int], A: int, P: int,
             uncalibrated: list[str], calibration: str) -> Episode:
    """LeRobot episode `ep` as one of ours."""
    import cv2

    H, W = size
    cols = source.frame_rows(ep)
    T = int(source.episodes[ep]["length"])
    where = f"{source.root}: episode {ep}"
    actions = _matrix(cols["action"], T, A, f"{where} field action")
    proprio = _matrix(cols["observation.state"], T, P, f"{where} field observation.state") if P else np.zeros((T, 0), np.float32)
    ts = np.asarray(cols.get("timestamp") or (np.arange(T) / source.fps), np.float64)
    views = []
    for key in source.camera_keys:
        fr = source.camera_frames(ep, key, cols)  # (T, h, w, 3)
        if fr.shape[1:3] != (H, W):
            fr = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in fr])
        views.append(fr)
    events = episode_events(frame_labels(source, ep, cols, T), T, actions)
    succ = cols.get("next.success")
    return Episode(
        episode_id=episode_id,
        task=next(e.caption for e in events if e.track == "task"),  # the first task in time
        frames=np.stack(views, axis=1),  # (T, V, H, W, 3)
        actions=actions,
        proprio=proprio,
        timestamps=ts,
        cam_poses=np.stack([c.T_base_cam for c in rig.cameras])[None].repeat(T, axis=0),
        rig=rig,
        events=events,
        seed=ep,
        fps=source.fps,
        success=bool(any(bool(np.any(x)) for x in succ)) if succ is not None else True,
        split_tags=("lerobot",),
        extra={"source": "lerobot", "lerobot_episode_index": ep, "uncalibrated": uncalibrated,
               "calibration": calibration, "success_source": "next.success" if succ is not None else "assumed (demonstration)"},
    )


def _names(feature: dict) -> list | None:
    n = feature.get("names")
    if isinstance(n, dict):  # {"motors": [...]} in older datasets
        n = next(iter(n.values()), None)
    return list(n) if isinstance(n, list) else None


def _matrix(col: list, T: int, D: int, where: str) -> np.ndarray:
    try:
        m = np.asarray(col, np.float32).reshape(T, D)
    except (ValueError, TypeError) as e:
        raise DataError(f"{where}: expected {T} rows of {D} numbers ({e})") from None
    return m
