"""Validate a dataset and report EVERY problem with its episode, field, frame and view.

`check_dataset(root)` returns a list of `Problem`s (errors and warnings); `wallwm-edge data check PATH`
prints them; `validate_or_raise(root)` is what training calls before it starts, so a malformed dataset
is rejected up front instead of crashing (or silently learning from NaNs) hours later.

What is checked, per episode (types, ranges and finiteness of every meta.json field first, with the
specs of `wallwm_edge.validate`: a malformed field is reported once and the rest of that episode skipped):
- files: present, readable .npy header, shape/dtype as the contract says (from T, V, H, W, A, P in
  meta.json) and as meta.json's "files" records, size on disk vs header (truncated), sha256 vs meta.
- values: NaN/inf (actions, proprio, timestamps, cam_poses), strictly increasing timestamps,
  orthonormal camera rotations per (frame, view), fixed cameras' per-frame pose equal to the rig.
- rig: every camera parses, focal lengths positive, poses rigid; camera names equal meta "views".
- events: known track, 0 <= start < end <= T, no overlap on one track, caption and key present,
  parent on a coarser track and enclosing the child, paraphrases present (warning).
Dataset-wide: dataset.json well-formed, listed episodes exist, episodes match its views/sizes/dims,
one caption per event key across episodes, stale `.tmp-*` / `.old-*` folders from interrupted writes.
Frames (uint8) are checked for shape, dtype, size and checksum, and 8 sampled frames per view for
being one flat colour (warning: a renderer or camera failure).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from wallwm_edge.calibration.rig import WORKSPACE_SPEC, Camera
from wallwm_edge.data.dataset import INFO, Dataset
from wallwm_edge.data.episode import FIELDS, META, META_FIELDS, META_SPEC, TRACKS, array_specs, load_array, sha256_file
from wallwm_edge.errors import DataError
from wallwm_edge import validate
from wallwm_edge.validate import clip, describe, load_json, one_line, problems as spec_problems, quote, regular_file

ROT_TOL = 1e-4
SHOW_FRAMES = 8  # frames listed in a message before "+N more"


@dataclass(frozen=True)
class Problem:
    """One finding. `frames` lists every bad frame when a problem repeats over frames (frame = first)."""

    kind: str  # short id: missing, meta, shape, dtype, truncated, checksum, nonfinite, timestamps, rotation, ...
    message: str
    episode: str | None = None
    field: str | None = None
    frame: int | None = None
    view: str | None = None
    frames: tuple[int, ...] = ()
    severity: str = "error"  # "error" (check fails) or "warning"

    def __post_init__(self):  # user text (keys, captions, names) reaches the terminal: one bounded, escaped line
        object.__setattr__(self, "message", one_line(self.message))
        for name in ("episode", "field", "view"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, clip(str(v), 100))

    def where(self) -> str:
        parts = []
        if self.episode is not None:
            parts.append(f"episode {self.episode}")
        if self.field is not None:
            parts.append(f"field {self.field}")
        if self.frame is not None:
            parts.append(f"frame {self.frame}")
        if self.view is not None:
            parts.append(f"view {self.view}")
        return ", ".join(parts) if parts else "dataset"

    def __str__(self) -> str:
        return f"{self.severity}: {self.where()}: {self.message}"

    def to_json(self) -> dict:
        return {
            "severity": self.severity,
            "kind": self.kind,
            "episode": self.episode,
            "field": self.field,
            "frame": self.frame,
            "view": self.view,
            "frames": list(self.frames),
            "message": self.message,
        }


def _frames_text(frames: np.ndarray) -> str:
    shown = ", ".join(str(int(f)) for f in frames[:SHOW_FRAMES])
    more = f" (+{len(frames) - SHOW_FRAMES} more)" if len(frames) > SHOW_FRAMES else ""
    return f"frames {shown}{more}" if len(frames) > 1 else f"frame {shown}"


def _per_frame(kind: str, message: str, bad: np.ndarray, ep: str, fld: str, view: str | None = None) -> list[Problem]:
    """One Problem covering every frame where the boolean mask `bad` (T,) is set."""
    idx = np.flatnonzero(bad)
    if len(idx) == 0:
        return []
    return [Problem(kind, f"{message} at {_frames_text(idx)}", ep, fld, int(idx[0]), view, tuple(int(i) for i in idx))]


# --- files --------------------------------------------------------------------------------------------


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from an .npy header without reading the data; DataError if unreadable.
    The size on disk is checked by check_files, which names the frames a short file lacks."""
    return validate.read_npy_header(path)[:3]


def check_files(ep_dir: Path, eid: str, meta: dict, specs: dict, checksums: bool) -> tuple[list[Problem], set[str]]:
    """Problems with the array files, and the names of the files whose data can be trusted for value checks."""
    problems, good = [], set()
    recorded = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    for name, (shape, dtype) in specs.items():
        fld, path = FIELDS[name], ep_dir / name
        if not path.is_file():
            if os.path.lexists(path):
                try:
                    regular_file(path)
                    why = "cannot be read"
                except DataError as e:
                    why = str(e).removeprefix(f"{path}: ")
                problems.append(Problem("missing", f"file {name} {why}", eid, fld))
            else:
                problems.append(Problem("missing", f"file {name} is missing", eid, fld))
            continue
        try:
            hshape, hdtype, offset = read_npy_header(path)
        except DataError as e:
            problems.append(Problem("truncated", str(e).replace(str(path) + ": ", f"{name}: "), eid, fld))
            continue
        ok = True
        if hshape != shape:
            problems.append(Problem("shape", f"shape {list(hshape)} != expected {list(shape)}", eid, fld))
            ok = False
        if hdtype != np.dtype(dtype):
            problems.append(Problem("dtype", f"dtype {hdtype} != expected {dtype}", eid, fld))
            ok = False
        rec = recorded.get(name)
        if rec is None:
            problems.append(Problem("meta", f"meta.json 'files' has no entry for {name}", eid, fld))
        elif ok and (list(rec.get("shape", [])) != list(hshape) or rec.get("dtype") != str(hdtype)):
            problems.append(Problem("shape", f"meta.json records {rec.get('shape')} {rec.get('dtype')}, file header says {list(hshape)} {hdtype}", eid, fld))
        want = offset + math.prod(hshape) * hdtype.itemsize
        size = path.stat().st_size
        if not ok:
            pass  # a wrong shape or dtype is the finding; its size follows from it
        elif size != want:
            what = "truncated" if size < want else "has trailing bytes"
            problems.append(Problem("truncated", f"{name} {what}: {size} bytes on disk, header implies {want}", eid, fld))
            ok = False
        elif checksums and rec is not None:
            if "sha256" not in rec:
                problems.append(Problem("checksum", f"meta.json records no sha256 for {name}", eid, fld, severity="warning"))
            elif sha256_file(path) != rec["sha256"]:
                problems.append(Problem("checksum", f"{name} sha256 does not match meta.json (file changed or corrupted)", eid, fld))
                # shape and size are right, so its values are still checked below
        if ok:
            good.add(name)
    return problems, good


# --- values -------------------------------------------------------------------------------------------


def check_values(ep_dir: Path, eid: str, good: set[str], views: list[str], cameras: dict[str, Camera]) -> list[Problem]:
    problems = []
    arrays = {name: load_array(ep_dir / name, mmap=True) for name in good if name != "frames.npy"}
    for name, arr in arrays.items():
        fin = np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)  # (T,)
        if arr.ndim == 4:  # cam_poses (T, V, 4, 4): name the view
            for v, view in enumerate(views):
                problems += _per_frame("nonfinite", "NaN or inf", ~np.isfinite(arr[:, v]).reshape(len(arr), -1).all(1), eid, FIELDS[name], view)
        else:
            problems += _per_frame("nonfinite", "NaN or inf", ~fin, eid, FIELDS[name])
    if "frames.npy" in good:  # a constant view means the renderer or camera failed; 8 frames tell
        fr = load_array(ep_dir / "frames.npy", mmap=True)  # (T, V, H, W, 3)
        sample = np.asarray(fr[np.unique(np.linspace(0, len(fr) - 1, 8).astype(int))]) if len(fr) else fr
        for v, view in enumerate(views):
            if len(sample) and sample[:, v].min() == sample[:, v].max():
                problems.append(Problem("blank", f"view is one flat colour ({int(sample[:, v].max())}) in every sampled frame (renderer or camera failure?)",
                                        eid, "frames", None, view, severity="warning"))
    ts = arrays.get("timestamps.npy")
    if ts is not None and len(ts) > 1:
        with np.errstate(invalid="ignore"):
            bad = np.concatenate([[False], ~(np.diff(ts) > 0)])  # NaN counts as not increasing
        problems += _per_frame("timestamps", "timestamp not strictly increasing (<= previous frame's)", bad, eid, "timestamps")
    poses = arrays.get("cam_poses.npy")
    if poses is not None:
        poses = np.asarray(poses)  # (T, V, 4, 4)
        R = poses[..., :3, :3]
        with np.errstate(invalid="ignore"):
            err = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max(axis=(-1, -2))  # (T, V)
            det = np.linalg.det(np.nan_to_num(R))
            last = np.abs(poses[..., 3, :] - [0, 0, 0, 1]).max(axis=-1)
        fin = np.isfinite(poses).all(axis=(-1, -2))
        for v, view in enumerate(views):
            bad = fin[:, v] & ((err[:, v] > ROT_TOL) | (det[:, v] < 0))
            problems += _per_frame("rotation", f"camera rotation not orthonormal (max |R^T R - I| = {np.nanmax(np.where(bad, err[:, v], 0)):.2e})", bad, eid, "cam_poses", view)
            problems += _per_frame("rotation", "last row of the pose is not [0, 0, 0, 1]", fin[:, v] & (last[:, v] > 1e-9), eid, "cam_poses", view)
            cam = cameras.get(view)
            if cam is not None and cam.mount == "fixed":
                off = np.abs(poses[:, v] - cam.T_base_cam).max(axis=(-1, -2))
                problems += _per_frame("pose", "fixed camera's pose differs from the rig's T_base_cam", fin[:, v] & (off > 1e-6), eid, "cam_poses", view)
    return problems


# --- rig and events -----------------------------------------------------------------------------------


def check_rig(meta: dict, eid: str) -> tuple[list[Problem], dict[str, Camera]]:
    problems, cameras = [], {}
    rig = meta.get("rig")
    if not isinstance(rig, dict) or not isinstance(rig.get("cameras"), list):
        return [Problem("meta", f"meta.json field 'rig' must be a wallwm-rig/1 object with a 'cameras' list, got {describe(rig)}", eid, "rig")], {}
    if rig.get("workspace") is not None:
        ws = spec_problems(rig["workspace"], WORKSPACE_SPEC, "rig.workspace")
        problems += [Problem("rig", f"field '{at}' {msg}", eid, at) for at, msg in ws]
        if not ws and any(a >= b for a, b in zip(rig["workspace"]["min"], rig["workspace"]["max"])):
            problems.append(Problem("rig", "workspace must have min < max on every axis", eid, "rig.workspace"))
    for i, d in enumerate(rig["cameras"]):
        name = d.get("name") if isinstance(d, dict) and isinstance(d.get("name"), str) else f"#{i}"
        try:
            cameras[name] = Camera.from_json(d, "", f"rig.cameras[{i}]")
        except DataError as e:
            kind = "focal" if "focal" in str(e) else "rotation" if "orthonormal" in str(e) else "rig"
            problems.append(Problem(kind, str(e), eid, f"rig.cameras[{name}]", view=name))
    names = [d.get("name") for d in rig["cameras"] if isinstance(d, dict)]
    if len(names) == len(rig["cameras"]) and names != meta.get("views"):  # (an entry that is no camera is reported above)
        problems.append(Problem("meta", f"rig camera names {names} != meta.json 'views' {meta.get('views')}", eid, "rig"))
    return problems, cameras


def check_events(meta: dict, eid: str, T: int) -> tuple[list[Problem], list[dict]]:
    """Problems with the events, and the well-formed events (for the dataset-wide key/caption check)."""
    problems, good = [], []
    events = meta.get("events")
    if not isinstance(events, list):
        return [Problem("meta", "meta.json field 'events' must be a list", eid, "events")], []
    if not events:
        problems.append(Problem("events", "episode has no events", eid, "events", severity="warning"))
    parsed: list[dict | None] = []  # events with a valid track and span (content problems aside)
    for i, e in enumerate(events):
        fld = f"events[{i}]"
        if not isinstance(e, dict) or not all(k in e for k in ("track", "start", "end")):
            problems.append(Problem("events", "event must be an object with track, start and end", eid, fld))
            parsed.append(None)
            continue
        track, s, t = e["track"], e["start"], e["end"]
        frame = s if isinstance(s, int) else None
        ok = True
        if track not in TRACKS:
            problems.append(Problem("events", f"unknown track {quote(track, 60)} (expected one of {list(TRACKS)})", eid, fld))
            ok = False
        if not (isinstance(s, int) and isinstance(t, int) and 0 <= s < t <= T):
            problems.append(Problem("event_range", f"span [{s}, {t}) out of range (need 0 <= start < end <= {T})", eid, fld, frame))
            ok = False
        parsed.append(e if ok else None)
        text_ok = True
        if not isinstance(e.get("caption"), str) or not e["caption"].strip():
            problems.append(Problem("caption", f"{track} event [{s}, {t}) has no caption", eid, fld, frame))
            text_ok = False
        if not isinstance(e.get("key"), str) or not e["key"].strip():
            problems.append(Problem("caption", f"{track} event [{s}, {t}) has no key", eid, fld, frame))
            text_ok = False
        if ok and text_ok:
            if not e.get("paraphrases"):
                problems.append(Problem("caption", f"event {quote(e['key'])} has no paraphrases", eid, fld, s, severity="warning"))
            good.append(e)
    # overlap within a track: sort by start, compare neighbours
    for track in TRACKS:
        on = sorted((e["start"], e["end"], i) for i, e in enumerate(parsed) if e is not None and e["track"] == track)
        for (s0, e0, i0), (s1, e1, i1) in zip(on, on[1:]):
            if s1 < e0:
                problems.append(Problem("event_overlap", f"{track} events[{i0}] [{s0}, {e0}) and events[{i1}] [{s1}, {e1}) overlap", eid, f"events[{i1}]", s1))
    # nesting: parent must be an event on a coarser track that encloses the child
    for i, e in enumerate(parsed):
        if e is None or e.get("parent") is None:
            continue
        p = e["parent"]
        fld = f"events[{i}]"
        if not isinstance(p, int) or not 0 <= p < len(parsed):
            problems.append(Problem("event_parent", f"parent {p!r} is not a valid event index", eid, fld, e["start"]))
            continue
        if parsed[p] is None:
            continue  # the parent itself is malformed, and reported as such
        par = parsed[p]
        if TRACKS.index(par["track"]) >= TRACKS.index(e["track"]):
            problems.append(Problem("event_parent", f"parent events[{p}] is on track {par['track']!r}, not coarser than {e['track']!r}", eid, fld, e["start"]))
        elif not (par["start"] <= e["start"] and e["end"] <= par["end"]):
            problems.append(Problem("event_parent", f"span [{e['start']}, {e['end']}) is not inside parent events[{p}] [{par['start']}, {par['end']})", eid, fld, e["start"]))
    return problems, good


# --- episode and dataset ------------------------------------------------------------------------------

def check_episode(ep_dir: Path, info: dict | None = None, checksums: bool = True) -> tuple[list[Problem], list[dict]]:
    """All problems of one episode folder (and its well-formed events). `info` is dataset.json, if any."""
    eid = ep_dir.name
    try:
        meta = load_json(ep_dir / META, missing="missing")
    except DataError as e:
        why = str(e).removeprefix(f"{ep_dir / META}: ")
        if why == "missing":
            return [Problem("missing", "meta.json is missing (incomplete episode folder)", eid, "meta.json")], []
        return [Problem("meta", f"meta.json {why}" if why.startswith("is ") else f"meta.json: {why}", eid, "meta.json")], []
    if not isinstance(meta, dict):
        return [Problem("meta", f"meta.json must hold a JSON object, got {describe(meta)}", eid, "meta.json")], []
    missing = [k for k in META_FIELDS if k not in meta]
    if missing:
        return [Problem("meta", f"meta.json is missing fields {missing}", eid, "meta.json")], []
    bad = spec_problems(meta, META_SPEC)
    if bad:  # types and ranges first: nothing below can trust a field that failed them
        return [Problem("meta", f"meta.json field '{at}' {msg}", eid, at) for at, msg in bad], []
    problems = []
    if meta["episode_id"] != eid:
        problems.append(Problem("meta", f"meta.json episode_id {quote(meta['episode_id'])} != folder name {quote(eid)}", eid, "episode_id"))
    T, (H, W) = meta["num_frames"], meta["image_size"]
    V, A, P = len(meta["views"]), meta["action_dim"], meta["proprio_dim"]
    if info is not None:
        for key, got in (("views", meta["views"]), ("image_size", [H, W]), ("action_dim", A), ("proprio_dim", P)):
            if info.get(key) != got:
                problems.append(Problem("meta", f"{key} {got!r} != dataset.json {info.get(key)!r}", eid, key))
    rig_problems, cameras = check_rig(meta, eid)
    problems += rig_problems
    file_problems, good = check_files(ep_dir, eid, meta, array_specs(T, V, H, W, A, P), checksums)
    problems += file_problems
    problems += check_values(ep_dir, eid, good, list(meta["views"]), cameras)
    ev_problems, events = check_events(meta, eid, T)
    for e in events:
        e["_episode"] = eid
    return problems + ev_problems, events


def check_key_captions(events: Iterable[dict]) -> list[Problem]:
    """Same key must mean the same caption in every episode (that is what makes events recomposable)."""
    first: dict[str, dict] = {}
    problems = []
    for e in events:
        f = first.setdefault(e["key"], e)
        if e["caption"] != f["caption"]:
            problems.append(Problem("key_caption", f"key {quote(e['key'])} has caption {quote(e['caption'])} here but {quote(f['caption'])} in episode {f['_episode']}", e["_episode"], "events", e["start"]))
    return problems


def stale_folders(root: Path) -> list[Problem]:
    d = root / "episodes"
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.iterdir()):
        if p.is_dir() and p.name.startswith((".tmp-", ".old-")):
            eid = p.name.split("-", 1)[1].rsplit("-", 1)[0]
            out.append(Problem("stale_tmp", f"stale temporary folder {p.name} from an interrupted write (delete it)", eid, None, severity="warning"))
    return out


def check_dataset(root: str | os.PathLike, checksums: bool = True, progress: Callable | None = None) -> list[Problem]:
    """Every problem of the dataset at `root`, errors and warnings. `progress` wraps the episode iterable (tqdm)."""
    root = Path(root)
    if not root.is_dir():
        return [Problem("missing", f"{root} is not a folder")]
    try:
        info = Dataset.open(root).info
    except DataError as e:
        return [Problem("meta", str(e), field=INFO)]
    problems = []
    if not isinstance(info["episodes"], list):
        return [Problem("meta", f"{INFO} field 'episodes' must be a list", field=INFO)]
    on_disk = sorted(p.name for p in (root / "episodes").iterdir() if p.is_dir() and not p.name.startswith(".")) if (root / "episodes").is_dir() else []
    listed = [str(e) for e in info["episodes"]]
    for eid in listed:
        if eid not in on_disk:
            problems.append(Problem("missing", f"listed in {INFO} but episodes/{eid} does not exist", eid))
    for eid in on_disk:
        if eid not in listed:
            problems.append(Problem("unlisted", f"episodes/{eid} is not listed in {INFO} (readers skip it; run the generator's finalize)", eid, severity="warning"))
    if not on_disk:
        problems.append(Problem("missing", "dataset has no episodes"))
    all_events = []
    ids = [e for e in listed if e in on_disk]
    for eid in progress(ids) if progress else ids:
        ep_problems, events = check_episode(root / "episodes" / eid, info, checksums)
        problems += ep_problems
        all_events += events
    problems += check_key_captions(all_events)
    problems += stale_folders(root)
    return problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def validate_or_raise(root: str | os.PathLike, checksums: bool = False, show: int = 5) -> Dataset:
    """Open the dataset if it has no errors, else raise DataError naming the first `show` problems.

    Training calls this before it starts. Checksums are off by default because they read every frame
    (size-vs-header still catches truncation); `wallwm-edge data check` verifies them.
    """
    bad = errors(check_dataset(root, checksums=checksums))
    if bad:
        head = "; ".join(f"{p.where()}: {p.message}" for p in bad[:show])
        more = f" (+{len(bad) - show} more; run `wallwm-edge data check {root}`)" if len(bad) > show else ""
        raise DataError(f"{root}: dataset has {len(bad)} problem(s): {head}{more}")
    return Dataset.open(root)
