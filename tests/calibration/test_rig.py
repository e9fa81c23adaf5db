import json

import numpy as np
import pytest

from wallwm_edge.calibration.rig import Camera, Rig
from wallwm_edge.errors import DataError


def _cam(name="c0", **kw):
    K = np.array([[100.0, 0, 48], [0, 100.0, 48], [0, 0, 1]])
    T = np.eye(4)
    T[:3, 3] = [0.1, -0.2, 1.0]
    args = dict(name=name, width=96, height=96, K=K, T_base_cam=T)
    args.update(kw)
    return Camera(**args)


def test_round_trip(tmp_path):
    rig = Rig((_cam("a"), _cam("b", mount="wrist", T_flange_cam=np.eye(4))), np.array([-1, -1, 0.0]), np.array([1, 1, 1.0]))
    p = rig.save(tmp_path / "rig.json")
    back = Rig.load(p)
    assert back.names == ["a", "b"]
    np.testing.assert_allclose(back.camera("b").T_flange_cam, np.eye(4))
    np.testing.assert_allclose(back.workspace_max, [1, 1, 1])


def test_project_then_ray_recovers_point():
    cam = _cam()
    pts = np.array([[0.1, -0.2, 2.0], [0.3, 0.1, 3.0]])
    uv, z = cam.project(pts)
    rays = cam.pixel_rays(uv)
    back = cam.center + rays * (np.linalg.norm(pts - cam.center, axis=1, keepdims=True))
    np.testing.assert_allclose(back, pts, atol=1e-9)
    np.testing.assert_allclose(z, [1.0, 2.0])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["cameras"][0]["K"][0].__setitem__(0, -5.0), "non-positive focal length"),
        (lambda d: d["cameras"][0]["T_base_cam"][0].__setitem__(0, 2.0), "not orthonormal"),
        (lambda d: d["cameras"][0].pop("K"), "missing field 'K'"),
        (lambda d: d.__setitem__("format", "other"), "field 'format'"),
    ],
)
def test_bad_rig_names_file_and_field(tmp_path, mutate, message):
    d = Rig((_cam("a"),)).to_json()
    mutate(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(DataError, match=message) as e:
        Rig.load(path)
    assert "bad.json" in str(e.value)


def test_missing_camera_is_named():
    with pytest.raises(DataError, match="no camera 'gripperPOV'"):
        Rig((_cam("a"),)).select(["a", "gripperPOV"])
