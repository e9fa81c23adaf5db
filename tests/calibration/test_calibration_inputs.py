"""What a field engineer hands in is checked before any image is read: board files (name optional, inline in
capture.json), arm poses (three layouts, every image's frame covered); and what comes back reads right:
recapture advice by how the camera is mounted, per-view chart labels, `check --help`'s exit status."""

import json

import cv2
import numpy as np
import pytest

from wallwm_edge.calibration import detect
from wallwm_edge.calibration.board import Board
from wallwm_edge.calibration.quality import CameraQuality, QualityConfig, _verdict
from wallwm_edge.calibration.report import _short
from wallwm_edge.cli import main
from wallwm_edge.errors import DataError

POSE = np.eye(4).tolist()
BOARD = {"type": "charuco", "squares_x": 7, "squares_y": 5, "square_m": 0.035, "marker_m": 0.026, "dictionary": "DICT_5X5_100"}


def _capture(tmp_path, arm_poses, board=BOARD, mount="gripper", frames=("0000", "0001", "0002")):
    cap = tmp_path / "cap"
    (cap / "cam0").mkdir(parents=True)
    for f in frames:
        cv2.imwrite(str(cap / "cam0" / f"{f}.png"), np.full((48, 64), 128, np.uint8))
    (cap / "capture.json").write_text(json.dumps({"board": board, "board_mount": mount}))
    if arm_poses is not None:
        (cap / "arm_poses.json").write_text(json.dumps(arm_poses))
    return cap


@pytest.fixture
def no_detection(monkeypatch):
    """Fail loudly if detection starts: every check here must come before it."""
    def boom(*a, **k):
        raise AssertionError("detection started before the capture was checked")
    monkeypatch.setattr(detect, "Detector", boom)


def test_board_file_and_inline_board_need_no_name(tmp_path):
    p = tmp_path / "my_board.json"
    p.write_text(json.dumps(BOARD))
    assert Board.load(p).name == "my_board"
    cap = detect.open_capture(_capture(tmp_path, {f: POSE for f in ("0000", "0001", "0002")}))
    assert cap.board.name == "cap_board" and cap.board.square_m == 0.035


@pytest.mark.parametrize("layout", ["mapping", "records", "list"])
def test_arm_pose_layouts(tmp_path, layout):
    frames = ("0000", "0001", "0002")
    poses = [np.eye(4) for _ in frames]
    for i, T in enumerate(poses):
        T[:3, 3] = [0.1 * i, 0, 0.3]
    data = {"mapping": {f: T.tolist() for f, T in zip(frames, poses)},
            "records": [{"frame": f, "T_base_flange": T.tolist()} for f, T in zip(frames, poses)],
            "list": [T.tolist() for T in poses]}[layout]
    cap = detect.open_capture(_capture(tmp_path, data))
    assert sorted(cap.flange) == list(frames)
    np.testing.assert_array_equal(cap.flange["0002"], poses[2])


@pytest.mark.parametrize("poses, match", [
    ([POSE, POSE], r"arm_poses.json: a list of 2 arm poses, but the capture has 3 frames"),
    ({"0000": POSE, "0001": POSE}, r"arm_poses.json: no arm pose for frame '0002' \(image .*cam0/0002"),
    ([{"frame": "0000"}], r"arm_poses.json: field '\[0\].T_base_flange' is missing"),
    (7, r"arm_poses.json: must be one of .*got"),
    (None, r"board_mount 'gripper' .*need arm poses"),
])
def test_bad_arm_poses_are_refused_before_detection(tmp_path, no_detection, poses, match):
    with pytest.raises(DataError, match=match):
        detect.load_session(_capture(tmp_path, poses))


def test_cli_checks_every_capture_before_detecting(tmp_path, no_detection, capsys):
    """With two captures, a bad second one is refused before the first one's images are read."""
    good = _capture(tmp_path, {f: POSE for f in ("0000", "0001", "0002")})
    bad = tmp_path / "second"
    bad.mkdir()
    (bad / "cam1").mkdir()
    cv2.imwrite(str(bad / "cam1" / "0000.png"), np.full((48, 64), 128, np.uint8))
    (bad / "capture.json").write_text(json.dumps({"board": BOARD, "board_mount": "static", "wrist": ["cam1"]}))
    (bad / "arm_poses.json").write_text("[[1, 2]]")
    assert main(["calibrate", "run", str(good), str(bad), "--out", str(tmp_path / "rig.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "second/arm_poses.json" in err[0]


def _quality(mount, shares):
    return CameraQuality("c", 20, 800, 0, 0.5, [], 0.9, [], 0.3, 0.05, 0.5, 5.0, mount=mount, shares_views=shares)


def test_pose_advice_fits_the_mount():
    for mount, shares, want, never in [("wrist", False, "while the wrist camera sees the board lying still", "shared with the other"),
                                       ("fixed", False, "hold the board in the gripper and move the arm", "shared with the other"),
                                       ("fixed", True, "views shared with the other cameras", "wrist")]:
        q = _quality(mount, shares)
        _verdict(q, QualityConfig())
        text = " ".join(q.advice)
        assert want in text and never not in text, (mount, shares, text)


def test_view_labels_name_the_image():
    assert _short("/data/capture/cam0/0003.png") == "cam0/0003"
    assert _short("/data/capture/cam0.mp4#120") == "cam0#120"
    assert _short("synthetic:wrist/0007") == "wrist/0007"


def test_check_help_states_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "check", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 nothing moved" in out and "1 a camera moved and no --out was given" in out
