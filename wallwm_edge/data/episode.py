"""One episode on disk: memory-mapped .npy arrays, a meta.json, written atomically.

Layout (see also the dataset contract in `dataset.py`):

    ROOT/episodes/<episode_id>/
        meta.json        ids, sizes, rig (wallwm-rig/1), events, and for every array file its shape,
                         dtype and sha256
        frames.npy       (T, V, H, W, 3) uint8    RGB of every view
        actions.npy      (T, A) float32           end-effector action applied after frame t
        proprio.npy      (T, P) float32           proprio state at frame t
        timestamps.npy   (T,) float64             seconds, strictly increasing
        cam_poses.npy    (T, V, 4, 4) float64     camera-to-base pose of every view at frame t

Why memory-mapped .npy rather than chunked zarr or HDF5:
- Training reads random short windows of one episode (an event, a few frames, a few views). An .npy
  file is a 128-byte-aligned header followed by the raw C-order array, so `np.load(mmap_mode="r")`
  maps it for free and a window read is one contiguous slice of page cache; the OS evicts pages, so a
  dataset larger than RAM streams. DataLoader workers forked after open share the mapping, and
  there is no library-level lock (h5py serialises readers in one process) or per-chunk decompression.
- Frames are small rendered images that compress poorly without lossy codecs, and chunked stores
  buy us compression we would spend CPU on every read; disk is cheaper than the training loop's CPU.
- One folder per episode makes atomic writes trivial: build it under a dot-name, fsync, `os.rename`.
  An interrupted writer leaves only a dot-folder that every reader ignores and `data check` reports.
  zarr/HDF5 would need their own transaction story for the same guarantee.
- No dependency beyond numpy, so the torch-free runtime and any tool can read an episode.
The cost: no compression. A 64x64, 3-view, 100-frame episode is 3.7 MB; fine at our scale, and a
video codec (the LeRobot way) is the right tool if that ever matters, not a chunked array store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wallwm_edge.calibration.rig import Rig
from wallwm_edge.errors import DataError, read_json_object
from wallwm_edge.validate import array, boolean, integer, name_id, npy_header, number, obj, require, string

TRACKS = ("task", "subtask", "action", "segment")  # coarse to fine; each nests in the previous one
META = "meta.json"
ACTION_SPACE = "ee_delta_xyz+gripper"  # Meta-World: (dx, dy, dz) end-effector delta in [-1, 1], gripper in [-1, 1]


@dataclass(frozen=True)
class Event:
    """A captioned time span of an episode on one track. Frames [start, end), end exclusive.

    `key` is the canonical id shared across tasks ("grasp:puck"): same key, same meaning, same caption.
    `parent` is the index (in the episode's event list) of the enclosing event on the next coarser
    track, or None for task events.
    """

    track: str
    start: int
    end: int
    key: str
    caption: str
    paraphrases: tuple[str, ...] = ()
    heldout_paraphrases: tuple[str, ...] = ()
    parent: int | None = None

    @property
    def length(self) -> int:
        return self.end - self.start

    def to_json(self) -> dict:
        return {
            "track": self.track,
            "start": int(self.start),
            "end": int(self.end),
            "key": self.key,
            "caption": self.caption,
            "paraphrases": list(self.paraphrases),
            "heldout_paraphrases": list(self.heldout_paraphrases),
            "parent": None if self.parent is None else int(self.parent),
        }

    @staticmethod
    def from_json(d: dict, where: str = "") -> "Event":
        if not isinstance(d, dict):
            raise DataError(f"{where}event must be an object, got {type(d).__name__}")
        try:
            return Event(
                track=str(d["track"]),
                start=int(d["start"]),
                end=int(d["end"]),
                key=str(d.get("key", "")),
                caption=str(d.get("caption", "")),
                paraphrases=tuple(str(p) for p in d.get("paraphrases", ())),
                heldout_paraphrases=tuple(str(p) for p in d.get("heldout_paraphrases", ())),
                parent=None if d.get("parent") is None else int(d["parent"]),
            )
        except KeyError as e:
            raise DataError(f"{where}event is missing field {e.args[0]!r}") from None
        except (TypeError, ValueError, OverflowError, AttributeError) as e:
            raise DataError(f"{where}event has a malformed field ({e})") from None


def array_specs(T: int, V: int, H: int, W: int, A: int, P: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """The array files of an episode: name -> (shape, dtype). The single source of truth for the layout."""
    return {
        "frames.npy": ((T, V, H, W, 3), "uint8"),
        "actions.npy": ((T, A), "float32"),
        "proprio.npy": ((T, P), "float32"),
        "timestamps.npy": ((T,), "float64"),
        "cam_poses.npy": ((T, V, 4, 4), "float64"),
    }


# Types and ranges of meta.json (and the matching fields of dataset.json), checked where the file is read.
VIEWS_SPEC = array(string(nonempty=True, max_len=200), min_len=1, unique=True)
IMAGE_SIZE_SPEC = array(integer(1, 1 << 16), length=2)
DIM_SPEC = integer(1, 1 << 16)
PROPRIO_DIM_SPEC = integer(0, 1 << 16)  # 0: a LeRobot dataset without observation.state
FPS_SPEC = number(positive=True, hi=1e5)
FILE_SPEC = obj({"shape": array(integer(0, 1 << 40)), "dtype": string(max_len=32), "sha256": string(max_len=64)}, required=("shape", "dtype"))
META_FIELDS = ("episode_id", "task", "num_frames", "fps", "views", "image_size", "action_dim", "proprio_dim", "rig", "events", "files")
META_SPEC = obj({
    "episode_id": name_id,
    "task": string(max_len=10000),
    "seed": integer(),
    "num_frames": integer(1, 1 << 31),
    "fps": FPS_SPEC,
    "views": VIEWS_SPEC,
    "image_size": IMAGE_SIZE_SPEC,
    "action_dim": DIM_SPEC,
    "proprio_dim": PROPRIO_DIM_SPEC,
    "success": boolean(),
    "split_tags": array(string(max_len=200)),
    "rig": obj(),
    "events": array(),
    "files": obj(values=FILE_SPEC),
    "extra": obj(),
}, required=META_FIELDS)

FIELDS = {"frames.npy": "frames", "actions.npy": "actions", "proprio.npy": "proprio", "timestamps.npy": "timestamps", "cam_poses.npy": "cam_poses"}


@dataclass(frozen=True)
class Episode:
    """One recorded episode. Arrays may be np.memmap (read with mmap=True): slice them, don't copy them.

    Views are the rig's cameras, in order: frames[:, v] and cam_poses[:, v] belong to rig.cameras[v].
    """

    episode_id: str
    task: str
    frames: np.ndarray  # (T, V, H, W, 3) uint8 RGB
    actions: np.ndarray  # (T, A) float32
    proprio: np.ndarray  # (T, P) float32
    timestamps: np.ndarray  # (T,) float64 seconds
    cam_poses: np.ndarray  # (T, V, 4, 4) float64 camera -> base
    rig: Rig
    events: tuple[Event, ...] = ()
    seed: int = 0
    fps: float = 10.0
    success: bool = False
    split_tags: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)  # free-form provenance (e.g. {"uncalibrated": [...]}, source)
    path: Path | None = None  # folder it was read from, None if in memory

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def views(self) -> list[str]:
        return self.rig.names

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[3])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def proprio_dim(self) -> int:
        return int(self.proprio.shape[1])

    def events_on(self, track: str) -> list[Event]:
        return [e for e in self.events if e.track == track]

    def arrays(self) -> dict[str, np.ndarray]:
        """file name -> array, in the order of `array_specs`."""
        return {name: getattr(self, attr) for name, attr in FIELDS.items()}

    def specs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Expected (shape, dtype) of each array file, from T, V, H, W, A, P of this episode."""
        T, V, H, W = self.frames.shape[:4] if self.frames.ndim >= 4 else (len(self.frames), len(self.rig), 0, 0)
        A = self.actions.shape[1] if self.actions.ndim == 2 else -1
        P = self.proprio.shape[1] if self.proprio.ndim == 2 else -1
        return array_specs(T, len(self.rig), H, W, A, P)

    def meta(self) -> dict:
        """meta.json content, without the "files" entry (the writer adds it)."""
        return {
            "episode_id": self.episode_id,
            "task": self.task,
            "seed": int(self.seed),
            "num_frames": self.num_frames,
            "fps": float(self.fps),
            "views": self.views,
            "image_size": list(self.image_size),
            "action_dim": self.action_dim,
            "proprio_dim": self.proprio_dim,
            "success": bool(self.success),
            "split_tags": list(self.split_tags),
            "rig": self.rig.to_json(),
            "events": [e.to_json() for e in self.events],
            "extra": self.extra,
        }


def shape_problems(episode: Episode) -> list[str]:
    """Shape/dtype mismatches of the in-memory arrays, as '<field>: ...' strings (empty if fine)."""
    problems = []
    if episode.frames.ndim != 5:
        return [f"frames: expected 5 dims (T, V, H, W, 3), got shape {tuple(episode.frames.shape)}"]
    for name, (shape, dtype) in episode.specs().items():
        arr = getattr(episode, FIELDS[name])
        if tuple(arr.shape) != shape:
            problems.append(f"{FIELDS[name]}: shape {tuple(arr.shape)} != expected {shape}")
        if arr.dtype != np.dtype(dtype):
            problems.append(f"{FIELDS[name]}: dtype {arr.dtype} != expected {dtype}")
    return problems


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def write_episode(root: str | os.PathLike, episode: Episode, overwrite: bool = False) -> Path:
    """Write `episode` to ROOT/episodes/<id>/ atomically and return that folder.

    Everything is written into ROOT/episodes/.tmp-<id>-<pid>/ (fsynced) and then renamed into place, so
    a crash leaves at most a dot-folder, never a folder that looks like a valid episode. Raises
    DataError if the arrays don't have the documented shapes/dtypes or the episode exists (unless
    `overwrite`). Safe to call from several processes at once for different episodes.
    """
    problems = shape_problems(episode)
    if problems:
        raise DataError(f"episode {episode.episode_id}: " + "; ".join(problems))
    eid = episode.episode_id
    if not eid or eid.startswith(".") or "/" in eid or os.sep in eid:
        raise DataError(f"episode id {eid!r} must be non-empty, not start with '.', and contain no '/'")
    episodes_dir = Path(root) / "episodes"
    episodes_dir.mkdir(parents=True, exist_ok=True)
    final = episodes_dir / eid
    if final.exists() and not overwrite:
        raise DataError(f"episode {eid}: {final} already exists (pass overwrite=True to replace it)")
    tmp = episodes_dir / f".tmp-{eid}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        files = {}
        for name, arr in episode.arrays().items():
            _save_npy(tmp / name, arr)
            files[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": sha256_file(tmp / name)}
        meta = episode.meta()
        meta["files"] = files
        with open(tmp / META, "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():  # overwrite: move the old one aside under a dot-name, then swap
            old = episodes_dir / f".old-{eid}-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
        _fsync_dir(episodes_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_meta(path: str | os.PathLike) -> dict:
    """meta.json of an episode folder; DataError naming the file if missing or not JSON."""
    return read_json_object(Path(path) / META, DataError, "missing (not an episode folder, or an interrupted write)")


def load_array(path: Path, mmap: bool = True) -> np.ndarray:
    """np.load an .npy without pickles; DataError naming the file if missing, not a regular file (a FIFO
    would block for ever), or its size on disk does not match its header (truncated, or a header that
    declares far more than the file holds: refused before anything is allocated)."""
    try:
        npy_header(path)
    except DataError as e:
        detail = str(e).removeprefix(f"{path}: ")
        if detail == "missing":
            raise
        raise DataError(f"{path}: unreadable or truncated ({detail})") from None
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: unreadable or truncated ({e})") from None
    return arr


def read_episode(path: str | os.PathLike, mmap: bool = True) -> Episode:
    """Open the episode folder `path`. With mmap=True arrays are read-only np.memmap (nothing loaded yet).

    Checks what is cheap (meta fields, array shapes/dtypes against meta); `wallwm_edge.data.check` does
    the full validation (values, checksums, events).
    """
    path = Path(path)
    meta = read_meta(path)
    where = f"episode {path.name}: "
    for key in META_FIELDS:
        if key not in meta:
            raise DataError(f"{where}meta.json is missing field {key!r}")
    require(meta, META_SPEC, f"{where}meta.json ")
    rig = Rig.from_json(meta["rig"], where=where + "rig: ")
    if rig.names != meta["views"]:
        raise DataError(f"{where}meta.json field 'views' {meta['views']} != the rig's camera names {rig.names}")
    T, (H, W), A, P = meta["num_frames"], meta["image_size"], meta["action_dim"], meta["proprio_dim"]
    expected = array_specs(T, len(meta["views"]), H, W, A, P)
    arrays = {}
    for name, attr in FIELDS.items():
        spec = meta["files"].get(name)
        if spec is None:
            raise DataError(f"{where}meta.json field 'files' has no entry for {name}")
        want_shape, want_dtype = expected[name]
        if tuple(spec["shape"]) != want_shape or spec["dtype"] != want_dtype:
            raise DataError(f"{where}{attr}: meta.json 'files' records {spec['shape']} {spec['dtype']}, but num_frames/views/"
                            f"image_size/dims imply {list(want_shape)} {want_dtype}")
        arr = load_array(path / name, mmap=mmap)
        if list(arr.shape) != list(spec["shape"]) or str(arr.dtype) != spec["dtype"]:
            raise DataError(f"{where}{attr}: file has shape {list(arr.shape)} {arr.dtype}, meta.json says {spec['shape']} {spec['dtype']}")
        arrays[attr] = arr
    events = tuple(Event.from_json(e, where=f"{where}events[{i}]: ") for i, e in enumerate(meta.get("events", [])))
    return Episode(
        episode_id=str(meta["episode_id"]),
        task=str(meta["task"]),
        rig=rig,
        events=events,
        seed=int(meta.get("seed", 0)),
        fps=float(meta.get("fps", 10.0)),
        success=bool(meta.get("success", False)),
        split_tags=tuple(meta.get("split_tags", ())),
        extra=dict(meta.get("extra", {})),
        path=path,
        **arrays,
    )
