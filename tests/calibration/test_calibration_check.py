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
