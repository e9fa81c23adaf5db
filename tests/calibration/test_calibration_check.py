"""`calibrate check`: a bumped camera is found, its motion measured and only it refined."""

import numpy as np
import pytest

from wallwm_edge.calibration import se3
from wallwm_edge.calibration import synthetic as S
from wallwm_edge.calibration.board import Board
from wallwm_edge.calibration.check import check
from wallwm_edge.calibration.rig import Rig

BOARD = Board.load("charuco_a3")
BUMP = se3.make_T(se3.rotvec_to_R(np.deg2rad([0.6, -0.5, 0.4])), [0.004, -0.006, 0.003])  # 0.88 deg, 7.8 mm


def _bumped(scene, name):
    moved = Rig(tuple(c.with_pose(c.T_base_cam @ BUMP) if c.name == name else c for c in scene.rig.cameras))
    return moved, S.Scene(moved, scene.board, scene.board_mount, scene.T_base_board, scene.flange, scene.T_flange_board, scene.targets)


@pytest.mark.parametrize("layout, mount", [("overlap", "free"), ("none", "gripper")])
def test_bumped_camera_is_found_and_refined(layout, mount):
    scene = S.make_scene(S.SceneConfig(n_cameras=4, layout=layout, board_mount=mount, n_frames=12, seed=5), BOARD)
    moved, bumped_scene = _bumped(scene, "cam2")
    res = check(scene.rig, [S.project_views(bumped_scene, sigma=0.5)])
    assert res.moved == ["cam2"]
    c2 = next(c for c in res.cameras if c.name == "cam2")
    true_rot, true_t = se3.pose_error(moved.camera("cam2").T_base_cam, scene.rig.camera("cam2").T_base_cam)
    assert abs(c2.rot_deg - true_rot) < 0.3 and abs(c2.trans_mm - 1000 * true_t) < 3.0
    assert c2.rms_before_px > 3 and c2.rms_after_px < 1.0
    r, t = se3.pose_error(res.rig.camera("cam2").T_base_cam, moved.camera("cam2").T_base_cam)
    assert r < 0.2 and t < 1.5e-3  # refined from a few frames
    for name in ("cam0", "cam1", "cam3"):  # the others are untouched
        np.testing.assert_array_equal(res.rig.camera(name).T_base_cam, scene.rig.camera(name).T_base_cam)


def test_nothing_moved():
    scene = S.make_scene(S.SceneConfig(n_cameras=3, layout="none", board_mount="gripper", n_frames=9, seed=6), BOARD)
    res = check(scene.rig, [S.project_views(scene, sigma=0.5)])
    assert res.moved == []


@pytest.mark.parametrize("layout, mount", [("overlap", "free"), ("none", "gripper")])
def test_capture_of_another_rig_is_a_mismatch_not_a_bump(layout, mount):
    """Another rig's capture (focals up to 13 % apart) must not pass as 'ok' or as a refined bump."""
    scene = S.make_scene(S.SceneConfig(n_cameras=4, layout=layout, board_mount=mount, n_frames=12, seed=5), BOARD)
    other = S.make_scene(S.SceneConfig(n_cameras=4, layout=layout, board_mount=mount, n_frames=12, seed=7), BOARD)
    res = check(scene.rig, [S.project_views(other, sigma=0.5)])
    assert len(res.mismatch) >= 2, res.mismatch
    assert all("px" in why for why in res.mismatch.values())


def test_a_bump_verifies_clean():
    scene = S.make_scene(S.SceneConfig(n_cameras=3, layout="none", board_mount="gripper", n_frames=9, seed=6), BOARD)
    res = check(scene.rig, [S.project_views(S.bump(scene, "cam1", 1.0, 5.0), sigma=0.5)])
    assert res.moved == ["cam1"] and res.mismatch == {}
    assert all(c.residual_px < 1.0 and c.pnp_px < 1.0 for c in res.cameras)


def test_check_cli_bump_nothing_moved_and_another_rig(tmp_path, capsys):
    """README's loop on rendered captures: a bumped camera is refined into --out; nothing moved still
    writes --out (the rig unchanged) and says so; another rig's capture writes nothing and names the remedy."""
    from wallwm_edge.cli import main

    common = ["--cameras", "2", "--frames", "4"]
    assert main(["calibrate", "synth", "--out", str(tmp_path / "cap"), *common]) == 0
    assert main(["calibrate", "synth", "--out", str(tmp_path / "bumped"), "--bump", "cam1:1.5,6", *common]) == 0
    assert "cam1 bumped by 1.5 deg and 6 mm" in capsys.readouterr().out
    rig = tmp_path / "cap" / "rig_truth.json"
    truth = Rig.load(tmp_path / "bumped" / "rig_truth.json")
    r, t = se3.pose_error(truth.camera("cam1").T_base_cam, Rig.load(rig).camera("cam1").T_base_cam)
    assert abs(r - 1.5) < 1e-6 and abs(1000 * t - 6) < 1e-6

    assert main(["calibrate", "check", str(rig), str(tmp_path / "bumped"), "--out", str(tmp_path / "fixed.json")]) == 0
    out = capsys.readouterr().out
    assert "moved: cam1" in out and "MOVED" in out
    r, t = se3.pose_error(Rig.load(tmp_path / "fixed.json").camera("cam1").T_base_cam, truth.camera("cam1").T_base_cam)
    assert r < 0.1 and t < 1e-3

    assert main(["calibrate", "check", str(rig), str(tmp_path / "cap"), "--out", str(tmp_path / "same.json")]) == 0
    assert f"nothing moved: {tmp_path / 'same.json'} is {rig} unchanged" in capsys.readouterr().out
    assert Rig.load(tmp_path / "same.json").to_json() == Rig.load(rig).to_json()

    assert main(["calibrate", "synth", "--out", str(tmp_path / "other"), "--seed", "1", *common]) == 0
    capsys.readouterr()
    assert main(["calibrate", "check", str(rig), str(tmp_path / "other"), "--out", str(tmp_path / "wrong.json")]) == 2
    cap = capsys.readouterr()
    assert "MISMATCH" in cap.out
    err = cap.err.strip().splitlines()[-1]
    assert "does not fit" in err and "another rig" in err and "calibrate run" in err
    assert not (tmp_path / "wrong.json").exists()


def test_synth_help_documents_every_option(capsys):
    from wallwm_edge.cli import main

    with pytest.raises(SystemExit):
        main(["calibrate", "synth", "--help"])
    out = capsys.readouterr().out
    for text in ("board poses per camera (default 15", "default charuco_a4", "--bump CAM[:DEG[,MM]]", "(default 3)", "default 0"):
        assert text in out, text


# ---- every camera is checked, the wrist camera included (its flange-to-camera transform) ---------------------
WRIST = dict(n_cameras=2, layout="none", wrist=True, seed=3, board_distance=(0.3, 0.55), tilt_deg=(20, 55))


@pytest.fixture(scope="module")
def two_captures():
    """Fixed cameras over a gripper-held board; the wrist camera alone over a board lying on the table."""
    held = S.make_scene(S.SceneConfig(board_mount="gripper", n_frames=8, **WRIST), BOARD)
    table = S.make_scene(S.SceneConfig(board_mount="static", n_frames=8, table_seen_by_fixed=False, **WRIST), BOARD)
    return held, table


def _check(rig, *scenes):
    return check(rig, [S.project_views(sc, sigma=0.5, seed=i) for i, sc in enumerate(scenes)])


@pytest.mark.parametrize("name", ["cam1", "wrist"])
def test_small_move_of_any_camera_is_found(two_captures, name):
    """The goal: a 0.5 deg / 2 mm move of any one camera, wrist included, is detected and measured."""
    held, table = two_captures
    scenes = (S.bump(held, name, 0.5, 2.0), table) if name == "cam1" else (held, S.bump(table, name, 0.5, 2.0))
    res = _check(table.rig, *scenes)
    assert res.moved == [name] and res.unchecked == [] and res.mismatch == {}
    c = next(c for c in res.cameras if c.name == name)
    assert abs(c.rot_deg - 0.5) < 0.15 and abs(c.trans_mm - 2.0) < 1.0, (c.rot_deg, c.trans_mm)
    assert c.rms_before_px > 2.0 and c.rms_after_px < 0.8
    if name == "wrist":
        truth = S.bump(table, name, 0.5, 2.0).rig.camera("wrist").T_flange_cam
        r, t = se3.pose_error(res.rig.camera("wrist").T_flange_cam, truth)
        assert r < 0.15 and t < 1e-3
    for other in set(table.rig.names) - {name}:
        np.testing.assert_array_equal(res.rig.camera(other).T_base_cam, table.rig.camera(other).T_base_cam)


def test_wrist_capture_alone_is_checked(two_captures):
    """A wrist capture alone (board lying on the table, the arm moving the camera) is checked by hand-eye."""
    _, table = two_captures
    assert _check(table.rig, S.bump(table, "wrist", 0.5, 2.0)).moved == ["wrist"]
    res = _check(table.rig, table)
    assert res.moved == [] and [c.name for c in res.cameras] == ["wrist"] and res.unchecked == []


def test_nothing_moved_is_said_explicitly(two_captures):
    held, table = two_captures
    res = _check(table.rig, held, table)
    assert res.moved == [] and res.unchecked == [] and [c.name for c in res.cameras] == ["cam0", "cam1", "wrist"]
    for c in res.cameras:  # every camera was refitted: its numbers are there, and small
        assert c.rot_deg < 0.15 and c.trans_mm < 1.5 and c.rms_before_px < 0.8, c


def test_camera_that_cannot_be_checked_is_named_not_ok():
    """Hand-held board, each camera alone in its frames, no arm pose: nothing ties a camera's pose down."""
    scene = S.make_scene(S.SceneConfig(n_cameras=3, layout="none", board_mount="free", n_frames=9, seed=6), BOARD)
    from wallwm_edge.errors import DataError

    with pytest.raises(DataError, match=r"no camera can be checked from this capture \(cam0, cam1, cam2\)"):
        check(scene.rig, [S.project_views(scene, sigma=0.5)])
