"""Is a miss of the accuracy goal a bias or a lack of information? Issue 15's hard rig (synthetic.field_scenes:
an oblique-only camera, a camera no other ever sees the board with, a wrist camera from a second capture,
k1 -0.30..-0.12 at 640x480, 0.5 px noise): every camera's error must sit within a few of the solver's own
1-sigma, and that 1-sigma must be an angle (the tangent space), not the rotation vector's parameters."""

import numpy as np
import pytest

from wallwm_edge.calibration import se3
from wallwm_edge.calibration import synthetic as S
from wallwm_edge.calibration.adjust import _rotvec_R
from wallwm_edge.calibration.quality import rotation_cov
from wallwm_edge.calibration.solve import calibrate


def test_rotation_cov_is_the_angle_covariance():
    rng = np.random.default_rng(0)
    for r in (np.zeros(3), np.array([0.3, -2.1, 1.2]), np.array([0.0, 0.0, 3.0])):
        # angle between R(r) and R(r + d) for small d is |J_r d|, so the quadratic form of rotation_cov must match
        for _ in range(5):
            d = rng.normal(0, 1e-5, 3)
            angle = np.radians(se3.rotation_deg(_rotvec_R(r[None])[0], _rotvec_R((r + d)[None])[0]))
            C = rotation_cov(r, np.outer(d, d))
            assert np.sqrt(np.trace(C)) == pytest.approx(angle, rel=1e-4)
    # across the axis a 3-rad rotation vector moves the angle by ~2(1 - cos 3) / 9 of its variance
    C = rotation_cov(np.array([0.0, 0.0, 3.0]), np.eye(3))
    assert np.diag(C) == pytest.approx([2 * (1 - np.cos(3.0)) / 9, 2 * (1 - np.cos(3.0)) / 9, 1.0], rel=1e-6)


@pytest.fixture(scope="module")
def field():
    held, table = S.field_scenes(seed=0)
    sessions = [S.project_views(held, sigma=0.5, seed=0), S.project_views(table, sigma=0.5, seed=50)]
    return held, table, sessions


def test_field_scene_is_the_issue_rig(field):
    held, table, (s_held, s_table) = field
    assert sorted(s_held.sizes) == ["lonely", "oblique", "side", "top"] and list(s_table.sizes) == ["wrist"]
    frames = {}
    for v in s_held.views:
        frames.setdefault(v.frame, set()).add(v.camera)
    lonely = [f for f, cams in frames.items() if "lonely" in cams]
    assert len(lonely) >= 8 and all(frames[f] == {"lonely"} for f in lonely)  # never co-visible
    assert any(len(cams) > 1 for cams in frames.values())  # the others do share views
    cam = held.rig.camera("oblique")
    for v in s_held.views_of("oblique"):
        T = held.T_base_board[v.frame]
        centre = T[:3, :3] @ np.r_[np.array(held.board.size_m) / 2, 0] + T[:3, 3]
        to_cam = (cam.center - centre) / np.linalg.norm(cam.center - centre)
        assert np.degrees(np.arccos(np.dot(-T[:3, 2], to_cam))) > 50  # only ever seen obliquely
    assert all(abs(c.dist[0]) >= 0.12 for c in held.rig.cameras if c.mount == "fixed")


def test_field_scene_errors_are_within_the_solvers_sigma(field):
    """No bias: each camera's rotation, centre and focal error within 3 of its reported 1-sigma (measured on
    this seed: at most 1.2); the wrist camera's pose is T_flange_cam, from the second capture."""
    held, _, sessions = field
    cal = calibrate(sessions)
    assert sorted(c.name for c in cal.rig.cameras) == ["lonely", "oblique", "side", "top", "wrist"]
    for q in cal.cameras:
        c, e = held.rig.camera(q.name), cal.rig.camera(q.name)
        Tt, Te = (c.T_flange_cam, e.T_flange_cam) if c.mount == "wrist" else (c.T_base_cam, e.T_base_cam)
        rot = se3.rotation_deg(Te[:3, :3], Tt[:3, :3])
        centre = 1000 * np.linalg.norm(Te[:3, 3] - Tt[:3, 3])  # camera centre in the base (fixed) or flange (wrist) frame
        focal = 100 * abs(e.K[0, 0] / c.K[0, 0] - 1)
        assert rot <= 3 * q.rot_std_deg, (q.name, rot, q.rot_std_deg)
        assert focal <= 3 * q.focal_std_pct, (q.name, focal, q.focal_std_pct)
        assert centre <= max(3 * q.centre_std_mm, 0.5), (q.name, centre, q.centre_std_mm)
        assert rot < 0.3 and centre < 1.0 and focal < 0.3, q.name


def test_badly_fitting_initial_poses_stay_out_of_the_hand_eye_seed():
    """Seed 1 of the field rig: cv2.calibrateCamera leaves two of the top camera's views flipped (12-27 px RMS);
    they are flagged, and the hand-eye seed from the rest is within a degree (4.4 deg and 53 mm off with them)."""
    from wallwm_edge.calibration import initial as I

    held, table = S.field_scenes(seed=1)
    sessions = [S.project_views(held, sigma=0.5, seed=1), S.project_views(table, sigma=0.5, seed=51)]
    refs = [r for r in I.view_refs(sessions) if r.view.camera == "top"]
    K, dist, poses = I.intrinsics(sessions, "top", (640, 480))
    for r in refs:
        r.T_cam_board = poses[id(r.view)]
    X = held.board.corners()
    I.flag_poor_poses(refs, [I.view_rms(r, X, K, dist) for r in refs])
    assert sorted(r.view.frame for r in refs if not r.trusted) == ["0004", "0016"]
    (group,) = I.hand_eye_groups(refs)
    T_base_cam = I.solve_hand_eye(sessions, group)[("cam", "top")]
    truth = held.rig.camera("top").T_base_cam
    assert se3.rotation_deg(T_base_cam[:3, :3], truth[:3, :3]) < 1.0
    assert np.linalg.norm(T_base_cam[:3, 3] - truth[:3, 3]) < 0.01
