"""Joint adjustment against ground truth: projected board corners through known cameras (distortion,
noise sigma = 0.5 px, outliers). Goals: rotation <= 0.1 deg, translation <= 1 mm, focal within 0.3%,
RMS close to the noise; 5% outliers of 10-50 px move the focal length by <= 0.5%; degenerate captures
are reported as insufficient."""

import numpy as np
import pytest

from wallwm_edge.calibration import se3
from wallwm_edge.calibration import synthetic as S
from wallwm_edge.calibration.board import Board
from wallwm_edge.calibration.solve import calibrate
from wallwm_edge.errors import DataError

BOARD = Board.load("charuco_a3")
GOOD = dict(board_distance=(0.3, 0.55), tilt_deg=(20, 55))


def errors(cal, truth, reference=None):
    """Per camera (rotation deg, translation mm, focal %) of the calibrated rig against the truth."""
    out = {}
    T_ref = np.linalg.inv(truth.camera(reference).T_base_cam) if reference else np.eye(4)
    for c in truth.cameras:
        e = cal.rig.camera(c.name)
        if c.mount == "wrist":
            r, t = se3.pose_error(e.T_flange_cam, c.T_flange_cam)
        else:
            r, t = se3.pose_error(e.T_base_cam, T_ref @ c.T_base_cam)
        out[c.name] = (r, 1000 * t, 100 * abs(e.K[0, 0] / c.K[0, 0] - 1))
    return out


@pytest.fixture(scope="module")
def gripper_scene():
    # 3 fixed cameras that never see the board together: linked only through the arm's poses
    return S.make_scene(S.SceneConfig(n_cameras=3, layout="none", board_mount="gripper", n_frames=150, seed=1, **GOOD), BOARD)


@pytest.fixture(scope="module")
def gripper_clean(gripper_scene):
    return calibrate([S.project_views(gripper_scene, sigma=0.5, seed=7)])


def test_non_overlapping_cameras_meet_goals(gripper_scene, gripper_clean):
    cal = gripper_clean
    assert cal.absolute and cal.ok, cal.verdict
    for name, (r, t, f) in errors(cal, gripper_scene.rig).items():
        assert r <= 0.1 and t <= 1.0 and f <= 0.3, (name, r, t, f)
    # RMS close to the noise: per-axis sigma 0.5 px
    assert 0.45 <= cal.result.sigma <= 0.55
    for q in cal.cameras:
        assert 0.6 <= q.rms_px <= 0.8  # RMS of the 2-D residual norm: 0.5 * sqrt(2) = 0.71
        assert q.status == "good", (q.name, q.advice)


def test_outliers_barely_move_focal(gripper_scene, gripper_clean):
    sess = S.project_views(gripper_scene, sigma=0.5, outlier_frac=0.05, outlier_px=(10, 50), seed=7)
    cal = calibrate([sess])
    for c in gripper_scene.rig.cameras:
        f_clean, f_out = gripper_clean.rig.camera(c.name).K[0, 0], cal.rig.camera(c.name).K[0, 0]
        assert abs(f_out / f_clean - 1) <= 0.005, (c.name, f_clean, f_out)
    assert (~cal.result.inlier).mean() >= 0.04  # the outliers were found and dropped
    for name, (r, t, f) in errors(cal, gripper_scene.rig).items():
        assert r <= 0.1 and t <= 1.0 and f <= 0.3, (name, r, t, f)


def test_wrist_camera_hand_eye_in_the_same_adjustment():
    cfg = dict(n_cameras=2, layout="none", wrist=True, seed=3, **GOOD)
    held = S.make_scene(S.SceneConfig(board_mount="gripper", n_frames=100, **cfg), BOARD)
    table = S.make_scene(S.SceneConfig(board_mount="static", n_frames=60, **cfg), BOARD)
    s1, s2 = S.project_views(held, sigma=0.5, seed=1), S.project_views(table, sigma=0.5, seed=2)
    s2.name = "table"
    cal = calibrate([s1, s2])
    assert cal.ok, cal.verdict
    for name, (r, t, f) in errors(cal, table.rig).items():
        assert r <= 0.1 and t <= 1.0 and f <= 0.3, (name, r, t, f)


def test_wrist_camera_only_in_the_table_capture():
    """README's `calibrate run capture_gripper/ capture_table/`: the fixed cameras see only the gripper-held
    board, the wrist camera appears only in the second capture, over a board lying on the table that no fixed
    camera sees. Each capture gets its own hand-eye (AX = XB), then one joint adjustment ties them."""
    cfg = dict(n_cameras=2, layout="none", wrist=True, seed=3, **GOOD)
    held = S.make_scene(S.SceneConfig(board_mount="gripper", n_frames=60, **cfg), BOARD)
    table = S.make_scene(S.SceneConfig(board_mount="static", n_frames=30, table_seen_by_fixed=False, **cfg), BOARD)
    s1, s2 = S.project_views(held, sigma=0.5, seed=1), S.project_views(table, sigma=0.5, seed=2)
    s1.name, s2.name = "capture_gripper", "capture_table"
    assert set(s1.sizes) == {"cam0", "cam1"} and set(s2.sizes) == {"wrist"} and s2.wrist == ("wrist",)
    cal = calibrate([s1, s2])
    assert cal.absolute and cal.ok, cal.verdict
    for name, (r, t, f) in errors(cal, table.rig).items():
        assert r <= 0.1 and t <= 1.0 and f <= 0.3, (name, r, t, f)
    assert cal.rig.camera("wrist").mount == "wrist"


@pytest.mark.slow
def test_hand_held_board_overlapping_cameras():
    scene = S.make_scene(S.SceneConfig(n_cameras=3, layout="overlap", board_mount="free", n_frames=150, seed=4, **GOOD), BOARD)
    cal = calibrate([S.project_views(scene, sigma=0.5)])
    assert not cal.absolute and cal.reference == "cam0"
    for name, (r, t, f) in errors(cal, scene.rig, reference="cam0").items():
        assert r <= 0.1 and t <= 1.0 and f <= 0.3, (name, r, t, f)


def test_degenerate_capture_is_insufficient_not_fitted():
    # board always far (2.5 m) and frontal: focal length and distance trade off
    scene = S.make_scene(S.SceneConfig(n_cameras=2, layout="none", board_mount="gripper", n_frames=30, degenerate=True, seed=2), BOARD)
    cal = calibrate([S.project_views(scene, sigma=0.5, min_corners=6)])
    assert not cal.ok
    assert cal.verdict.startswith("INSUFFICIENT")
    for q in cal.cameras:
        assert q.status == "insufficient"
        assert any("focal length is not determined" in a for a in q.advice), q.advice
        assert any("far or nearly frontal" in a for a in q.advice), q.advice


def test_camera_without_detections_is_named(gripper_scene):
    sess = S.project_views(gripper_scene, sigma=0.5)
    sess.views = [v for v in sess.views if v.camera != "cam1"]
    sess.n_images["cam1"] = 50
    with pytest.raises(DataError, match=r"camera 'cam1': the board was not detected in any of its 50 images"):
        calibrate([sess])


def test_too_few_views_names_camera_and_images(gripper_scene):
    sess = S.project_views(gripper_scene, sigma=0.5)
    few = [v for v in sess.views if v.camera == "cam2"][:3]
    sess.views = [v for v in sess.views if v.camera != "cam2"] + few
    with pytest.raises(DataError, match=r"camera 'cam2': the board was found in only 3 image\(s\).*synthetic:cam2/"):
        calibrate([sess])


def test_unlinked_cameras_are_named():
    # hand-held board, cameras never share a frame and no arm pose: no way to relate them
    scene = S.make_scene(S.SceneConfig(n_cameras=3, layout="none", board_mount="free", n_frames=30, seed=5, **GOOD), BOARD)
    with pytest.raises(DataError, match=r"cameras \['cam1', 'cam2'\] share no board view"):
        calibrate([S.project_views(scene, sigma=0.5)])


def test_missing_arm_pose_names_frame(gripper_scene):
    sess = S.project_views(gripper_scene, sigma=0.5)
    sess.flange = dict(sess.flange)
    del sess.flange["0005"]
    with pytest.raises(DataError, match=r"no arm pose for frame '0005'"):
        calibrate([sess])


def test_analytic_jacobian_matches_finite_differences():
    """Problem.jacobian (analytic, sparse) against central differences, on every kind of block at once: fixed
    cameras, a gripper-held board, a wrist camera over a board on the table, strong barrel distortion."""
    from scipy.optimize._numdiff import approx_derivative

    cfg = dict(n_cameras=2, layout="none", wrist=True, seed=3, k1=(-0.3, -0.12), **GOOD)
    held = S.make_scene(S.SceneConfig(board_mount="gripper", n_frames=20, **cfg), BOARD)
    table = S.make_scene(S.SceneConfig(board_mount="static", n_frames=10, **cfg), BOARD)
    prob = calibrate([S.project_views(held, seed=1), S.project_views(table, seed=2)]).problem
    x = prob.pack() + np.random.default_rng(0).normal(0, 1e-3, len(prob.pack()))
    keep = np.random.default_rng(1).random(len(prob.uv)) < 0.9
    Ja = prob.jacobian(x, keep)
    pattern = prob.sparsity(keep)
    assert Ja.shape == pattern.shape and (abs(Ja).astype(bool).astype(int) - pattern.astype(bool).astype(int)).max() <= 0  # inside the pattern
    Jn = approx_derivative(prob.residuals, x, method="3-point", args=(keep,), rel_step=1e-7)
    rel = np.abs(Ja.toarray() - Jn).max(0) / (np.abs(Jn).max(0) + 1e-9)  # per parameter
    assert rel.max() < 1e-3, rel.max()
