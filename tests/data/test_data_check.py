"""Every validator error: build a valid dataset, corrupt one thing, check the report names it exactly."""

import json
import shutil

import numpy as np
import pytest
from wwdata_helpers import T, ep_dir, load_meta, make_dataset, rewrite_array, save_meta

from wallwm_edge.data.check import check_dataset, errors, validate_or_raise
from wallwm_edge.errors import DataError

EP0, EP1 = "pick-place-v3_s00000", "pick-place-v3_s00001"


@pytest.fixture
def root(tmp_path):
    make_dataset(tmp_path / "ds", n=2)
    return tmp_path / "ds"


def arr(d, name):
    return np.load(d / name).copy()


def edit_meta(d, fn):
    m = load_meta(d)
    fn(m)
    save_meta(d, m)


def _nan_actions(r):
    a = arr(ep_dir(r), "actions.npy")
    a[5, 2] = np.nan
    a[9, 0] = np.nan
    rewrite_array(ep_dir(r), "actions.npy", a)


def _inf_proprio(r):
    p = arr(ep_dir(r, 1), "proprio.npy")
    p[2, 1] = np.inf
    rewrite_array(ep_dir(r, 1), "proprio.npy", p)


def _nan_pose(r):
    c = arr(ep_dir(r), "cam_poses.npy")
    c[6, 2, 0, 3] = np.nan
    rewrite_array(ep_dir(r), "cam_poses.npy", c)


def _timestamps(r):
    ts = arr(ep_dir(r), "timestamps.npy")
    ts[7] = ts[6]
    rewrite_array(ep_dir(r), "timestamps.npy", ts)


def _rotation(r):
    c = arr(ep_dir(r), "cam_poses.npy")
    c[4, 2, :3, :3] *= 1.1  # gripper (wrist) camera, frame 4
    rewrite_array(ep_dir(r), "cam_poses.npy", c)


def _fixed_pose_moves(r):
    c = arr(ep_dir(r), "cam_poses.npy")
    c[3:, 1, 0, 3] += 0.05  # the fixed "top" camera drifts from frame 3 on
    rewrite_array(ep_dir(r), "cam_poses.npy", c)


def _shape(r):
    rewrite_array(ep_dir(r), "actions.npy", np.zeros((T, 5), np.float32))


def _dtype(r):
    rewrite_array(ep_dir(r), "proprio.npy", arr(ep_dir(r), "proprio.npy").astype(np.float64))


def _meta_file_record(r):
    edit_meta(ep_dir(r), lambda m: m["files"]["actions.npy"].update(shape=[T, 7]))


def _truncated(r):
    p = ep_dir(r) / "frames.npy"
    p.write_bytes(p.read_bytes()[:-100])


def _trailing(r):
    p = ep_dir(r) / "proprio.npy"
    p.write_bytes(p.read_bytes() + b"\0" * 8)


def _bad_header(r):
    (ep_dir(r) / "timestamps.npy").write_bytes(b"\x93NUMPY garbage")


def _checksum(r):
    p = ep_dir(r) / "frames.npy"
    b = bytearray(p.read_bytes())
    b[-1] ^= 0xFF
    p.write_bytes(bytes(b))


def _missing_file(r):
    (ep_dir(r, 1) / "proprio.npy").unlink()


def _focal(r):
    edit_meta(ep_dir(r), lambda m: m["rig"]["cameras"][0]["K"][0].__setitem__(0, -50.0))


def _rig_rotation(r):
    edit_meta(ep_dir(r), lambda m: m["rig"]["cameras"][1]["T_base_cam"][0].__setitem__(0, 3.0))


def _event_range(r):
    edit_meta(ep_dir(r), lambda m: m["events"][3].update(end=T + 5))


def _event_empty(r):
    edit_meta(ep_dir(r), lambda m: m["events"][8].update(start=4, end=4))


def _event_overlap(r):
    edit_meta(ep_dir(r), lambda m: m["events"][4].update(start=2))  # action [3, 6) now starts inside [0, 3)


def _caption(r):
    edit_meta(ep_dir(r), lambda m: m["events"][1].update(caption=""))


def _key(r):
    edit_meta(ep_dir(r), lambda m: m["events"][2].update(key=" "))


def _track(r):
    edit_meta(ep_dir(r), lambda m: m["events"][0].update(track="chapter"))


def _parent_not_enclosing(r):
    edit_meta(ep_dir(r), lambda m: m["events"][3].update(parent=2))  # action [0, 3) under subtask [6, 12)


def _parent_wrong_track(r):
    edit_meta(ep_dir(r), lambda m: m["events"][1].update(parent=3))  # subtask under an action


def _key_caption(r):
    edit_meta(ep_dir(r, 1), lambda m: m["events"][1].update(caption="pick up the puck"))


def _listed_missing(r):
    shutil.rmtree(ep_dir(r, 1))


def _episode_id(r):
    edit_meta(ep_dir(r), lambda m: m.update(episode_id="other"))


def _dataset_mismatch(r):
    edit_meta(ep_dir(r, 1), lambda m: m.update(action_dim=7))


def _meta_json(r):
    (ep_dir(r) / "meta.json").write_text("{not json")


def _meta_missing(r):
    (ep_dir(r) / "meta.json").unlink()


# name -> (corrupt, kind, episode, field, frame, view, words in the message)
CASES = {
    "nan": (_nan_actions, "nonfinite", EP0, "actions", 5, None, "frames 5, 9"),
    "inf": (_inf_proprio, "nonfinite", EP1, "proprio", 2, None, "NaN or inf"),
    "nan_pose": (_nan_pose, "nonfinite", EP0, "cam_poses", 6, "gripper", "NaN or inf"),
    "timestamps": (_timestamps, "timestamps", EP0, "timestamps", 7, None, "not strictly increasing"),
    "rotation": (_rotation, "rotation", EP0, "cam_poses", 4, "gripper", "not orthonormal"),
    "fixed_pose": (_fixed_pose_moves, "pose", EP0, "cam_poses", 3, "top", "differs from the rig"),
    "shape": (_shape, "shape", EP0, "actions", None, None, "[12, 5] != expected [12, 4]"),
    "dtype": (_dtype, "dtype", EP0, "proprio", None, None, "float64 != expected float32"),
    "meta_record": (_meta_file_record, "shape", EP0, "actions", None, None, "meta.json records [12, 7]"),
    "truncated": (_truncated, "truncated", EP0, "frames", None, None, "frames.npy truncated"),
    "trailing": (_trailing, "truncated", EP0, "proprio", None, None, "trailing bytes"),
    "bad_header": (_bad_header, "truncated", EP0, "timestamps", None, None, "not a readable .npy header"),
    "checksum": (_checksum, "checksum", EP0, "frames", None, None, "sha256 does not match"),
    "missing_file": (_missing_file, "missing", EP1, "proprio", None, None, "proprio.npy is missing"),
    "focal": (_focal, "focal", EP0, "rig.cameras[corner]", None, "corner", "non-positive focal length"),
    "rig_rotation": (_rig_rotation, "rotation", EP0, "rig.cameras[top]", None, "top", "not orthonormal"),
    "event_range": (_event_range, "event_range", EP0, "events[3]", 0, None, "out of range"),
    "event_empty": (_event_empty, "event_range", EP0, "events[8]", 4, None, "[4, 4) out of range"),
    "event_overlap": (_event_overlap, "event_overlap", EP0, "events[4]", 2, None, "overlap"),
    "caption": (_caption, "caption", EP0, "events[1]", 0, None, "has no caption"),
    "key": (_key, "caption", EP0, "events[2]", 6, None, "has no key"),
    "track": (_track, "events", EP0, "events[0]", None, None, "unknown track 'chapter'"),
    "parent_span": (_parent_not_enclosing, "event_parent", EP0, "events[3]", 0, None, "not inside parent events[2]"),
    "parent_track": (_parent_wrong_track, "event_parent", EP0, "events[1]", 0, None, "not coarser"),
    "key_caption": (_key_caption, "key_caption", EP1, "events", 0, None, "'grasp:puck' has caption 'pick up the puck'"),
    "listed_missing": (_listed_missing, "missing", EP1, None, None, None, "does not exist"),
    "episode_id": (_episode_id, "meta", EP0, "episode_id", None, None, "!= folder name"),
    "dataset_mismatch": (_dataset_mismatch, "meta", EP1, "action_dim", None, None, "!= dataset.json 4"),
    "meta_json": (_meta_json, "meta", EP0, "meta.json", None, None, "not valid JSON"),
    "meta_missing": (_meta_missing, "missing", EP0, "meta.json", None, None, "incomplete episode folder"),
}
# corruptions that legitimately raise a second, different error kind as a consequence
ALSO = {"shape": {"meta"}, "dataset_mismatch": {"shape"}}


def test_valid_dataset_has_no_problems(root):
    assert check_dataset(root) == []
    assert validate_or_raise(root).episode_ids == [EP0, EP1]


@pytest.mark.parametrize("name", list(CASES))
def test_each_corruption_is_named(root, name):
    corrupt, kind, episode, field, frame, view, words = CASES[name]
    corrupt(root)
    problems = errors(check_dataset(root))
    hits = [p for p in problems if p.kind == kind and p.episode == episode and p.field == field]
    assert hits, f"{name}: no {kind} problem on {episode}/{field} in {[str(p) for p in problems]}"
    p = hits[0]
    assert p.frame == frame and p.view == view and words in p.message, str(p)
    text = str(p)  # the printed line names where
    assert text.startswith("error: ") and (episode is None or episode in text) and (field is None or f"field {field}" in text)
    assert frame is None or f"frame {frame}" in text
    assert view is None or f"view {view}" in text
    # nothing else breaks: the corruption is reported once, as itself
    assert {q.kind for q in problems} <= {kind} | ALSO.get(name, set()), [str(q) for q in problems]
    with pytest.raises(DataError, match="dataset has .* problem"):
        validate_or_raise(root, checksums=True)


def test_every_problem_is_reported_not_just_the_first(root):
    _nan_actions(root)
    _timestamps(root)
    _caption(root)
    _inf_proprio(root)
    (root / "episodes" / ".tmp-pick-place-v3_s00002-999").mkdir()
    problems = check_dataset(root)
    kinds = sorted(p.kind for p in problems)
    assert kinds == ["caption", "nonfinite", "nonfinite", "stale_tmp", "timestamps"], kinds
    stale = [p for p in problems if p.kind == "stale_tmp"][0]
    assert stale.severity == "warning" and stale.episode == "pick-place-v3_s00002"
    with pytest.raises(DataError) as e:
        validate_or_raise(root, show=2)
    msg = str(e.value)
    assert "4 problem(s)" in msg and f"episode {EP0}, field actions, frame 5" in msg and "+2 more" in msg


def test_changed_file_gets_checksum_and_value_errors(root):
    a = arr(ep_dir(root), "actions.npy")
    a[4] = np.nan
    np.save(ep_dir(root) / "actions.npy", a)  # meta.json keeps the old sha256
    assert sorted((p.kind, p.frame) for p in check_dataset(root)) == [("checksum", None), ("nonfinite", 4)]


def test_many_bad_frames_are_listed_compactly(root):
    a = arr(ep_dir(root), "actions.npy")
    a[:, 0] = np.nan
    rewrite_array(ep_dir(root), "actions.npy", a)
    (p,) = errors(check_dataset(root))
    assert p.frames == tuple(range(T)) and "(+4 more)" in p.message


def test_warnings_do_not_fail(root):
    edit_meta(ep_dir(root), lambda m: m["events"][1].update(paraphrases=[]))
    (root / "episodes" / "stray").mkdir()  # on disk, not listed
    problems = check_dataset(root)
    assert problems and not errors(problems)
    assert {p.kind for p in problems} == {"caption", "unlisted"}
    validate_or_raise(root)


def test_blank_view_is_a_warning(root):
    f = np.load(ep_dir(root) / "frames.npy").copy()
    f[:, 1] = 0
    rewrite_array(ep_dir(root), "frames.npy", f)
    (p,) = check_dataset(root)
    assert (p.kind, p.severity, p.episode, p.field, p.view) == ("blank", "warning", EP0, "frames", "top")


def test_dataset_level_problems(tmp_path):
    assert [p.kind for p in check_dataset(tmp_path / "nope")] == ["missing"]
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "other"}))
    (p,) = check_dataset(tmp_path)
    assert p.field == "dataset.json" and "missing field" in p.message
