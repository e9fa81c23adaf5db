"""A dataset: a folder of episodes plus `dataset.json` that describes them all.

    ROOT/dataset.json   {"format": "wallwm-dataset/1", "name", "created", "generator": {...options, seed},
                         "views": [names], "image_size": [H, W], "action_dim": A, "proprio_dim": P,
                         "fps": float, "action_space": "ee_delta_xyz+gripper", "episodes": [ids...]}
    ROOT/episodes/<id>/ one episode each (see `episode.py`); dot-folders are in-progress or stale writes

Writers: `Dataset.create(...)`, then `append(episode)` per episode (or, from worker processes,
`write_episode(root, ep)` directly) and `finalize()` once, which records the episodes found on disk.
Readers: `Dataset.open(root)`, `len(ds)`, `ds[i]` / `ds.episode(id)` (memory-mapped), `ds.episode_ids`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Iterator

from wallwm_edge.data.episode import (ACTION_SPACE, DIM_SPEC, FPS_SPEC, IMAGE_SIZE_SPEC, META, PROPRIO_DIM_SPEC, VIEWS_SPEC, Episode,
                                      read_episode, shape_problems, write_episode)
from wallwm_edge.errors import DataError, read_json_object
from wallwm_edge.validate import array, name_id, obj, optional, require, string

FORMAT = "wallwm-dataset/1"
INFO = "dataset.json"
REQUIRED = ("format", "views", "image_size", "action_dim", "proprio_dim", "fps", "episodes")
INFO_SPEC = obj({
    "name": optional(string(max_len=1000)),
    "views": VIEWS_SPEC,
    "image_size": IMAGE_SIZE_SPEC,
    "action_dim": DIM_SPEC,
    "proprio_dim": PROPRIO_DIM_SPEC,
    "fps": FPS_SPEC,
    "action_space": optional(string(max_len=200)),
    "generator": optional(obj()),
    "episodes": array(name_id, unique=True),  # ids become folder names: no '/', no '..', no control characters
}, required=REQUIRED)


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def scan_episode_ids(root: str | os.PathLike) -> list[str]:
    """Episode folders on disk (with a meta.json), sorted; dot-folders (in-progress writes) excluded."""
    d = Path(root) / "episodes"
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / META).is_file())


class Dataset:
    """Handle on a dataset folder. `info` is the content of dataset.json."""

    def __init__(self, root: str | os.PathLike, info: dict):
        self.root = Path(root)
        self.info = info

    # --- create / open -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        *,
        views: list[str],
        image_size: tuple[int, int],
        action_dim: int,
        proprio_dim: int,
        fps: float,
        name: str | None = None,
        generator: dict | None = None,
        action_space: str = ACTION_SPACE,
        exist_ok: bool = False,
    ) -> "Dataset":
        """Make ROOT/ and write dataset.json (no episodes yet). With exist_ok, reopen a matching one."""
        root = Path(root)
        if (root / INFO).exists():
            if not exist_ok:
                raise DataError(f"{root / INFO}: a dataset already exists here (choose another --out or remove it)")
            ds = cls.open(root)
            for key, want in (("views", list(views)), ("image_size", list(image_size)), ("action_dim", action_dim), ("proprio_dim", proprio_dim)):
                if ds.info[key] != want:
                    raise DataError(f"{root / INFO}: field {key!r} is {ds.info[key]!r}, but {want!r} was asked for")
            return ds
        root.mkdir(parents=True, exist_ok=True)
        (root / "episodes").mkdir(exist_ok=True)
        info = {
            "format": FORMAT,
            "name": name or root.name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "generator": generator or {},
            "views": list(views),
            "image_size": [int(image_size[0]), int(image_size[1])],
            "action_dim": int(action_dim),
            "proprio_dim": int(proprio_dim),
            "fps": float(fps),
            "action_space": action_space,
            "episodes": [],
        }
        ds = cls(root, info)
        ds.save()
        return ds

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Dataset":
        """Open ROOT/dataset.json; DataError naming the file and field if it is missing or malformed."""
        root = Path(root)
        p = root / INFO
        info = read_json_object(p, DataError, f"not found ({root} is not a wallwm dataset; make one with `wallwm-edge data generate`)")
        for key in REQUIRED:
            if key not in info:
                raise DataError(f"{p}: missing field {key!r}")
        if info["format"] != FORMAT:
            raise DataError(f"{p}: field 'format' is {info['format']!r}, expected {FORMAT!r}")
        require(info, INFO_SPEC, f"{p}: ")
        return cls(root, info)

    def save(self) -> None:
        _write_json_atomic(self.root / INFO, self.info)

    # --- write ---------------------------------------------------------------------------------------

    def compatible(self, ep: Episode) -> list[str]:
        """Reasons `ep` does not fit this dataset (views, image size, dims), empty if it fits."""
        problems = shape_problems(ep)
        for key, got in (("views", ep.views), ("image_size", list(ep.image_size)), ("action_dim", ep.action_dim), ("proprio_dim", ep.proprio_dim)):
            if self.info[key] != got:
                problems.append(f"{key}: episode has {got!r}, dataset.json says {self.info[key]!r}")
        return problems

    def append(self, ep: Episode, overwrite: bool = False) -> Path:
        """Write one episode (atomically) and record it in dataset.json. Single-process writers only;
        parallel writers call `write_episode(ds.root, ep)` and the parent calls `finalize()`."""
        problems = self.compatible(ep)
        if problems:
            raise DataError(f"episode {ep.episode_id}: " + "; ".join(problems))
        path = write_episode(self.root, ep, overwrite=overwrite)
        if ep.episode_id not in self.info["episodes"]:
            self.info["episodes"].append(ep.episode_id)
            self.save()
        return path

    def finalize(self, generator: dict | None = None) -> "Dataset":
        """Record every complete episode folder on disk in dataset.json (sorted)."""
        self.info["episodes"] = scan_episode_ids(self.root)
        if generator is not None:
            self.info["generator"] = generator
        self.save()
        return self

    # --- read ----------------------------------------------------------------------------------------

    @property
    def episode_ids(self) -> list[str]:
        return list(self.info["episodes"])

    @property
    def views(self) -> list[str]:
        return list(self.info["views"])

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.info["image_size"])

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    def episode_path(self, episode_id: str) -> Path:
        return self.root / "episodes" / episode_id

    def episode(self, episode_id: str, mmap: bool = True) -> Episode:
        p = self.episode_path(episode_id)
        if not p.is_dir():
            raise DataError(f"{self.root}: episode {episode_id!r} is listed in dataset.json but {p} does not exist")
        return read_episode(p, mmap=mmap)

    def __len__(self) -> int:
        return len(self.info["episodes"])

    def __getitem__(self, i: int) -> Episode:
        return self.episode(self.info["episodes"][i])

    def __iter__(self) -> Iterator[Episode]:
        for eid in self.info["episodes"]:
            yield self.episode(eid)

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r}, episodes={len(self)}, views={self.views}, image_size={self.image_size})"
