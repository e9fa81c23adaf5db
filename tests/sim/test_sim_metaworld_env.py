"""The simulated rig: conventions checked against MuJoCo's own rendering, determinism, jitter."""

import numpy as np
import pytest

from wallwm_edge.errors import ConfigError
from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

VIEWS = ("corner", "topview", "corner2", "gripperPOV")


@pytest.fixture(scope="module")
def env():
    e = MetaWorldEnv(SimConfig(task="pick-place-v3", views=VIEWS, image_size=(96, 96)))
    yield e
    e.close()


def _centroid_error(env, view: int, geom: str, offset=(0.0, 0.0, 0.0)) -> float:
    """Pixel distance between the projected geom centre (+ offset, base frame) and the centroid of its
    segmentation mask, both from the same MuJoCo state."""
    gid = env.model.geom(geom).id
    seg = env.render_segmentation(view)
    rows, cols = np.nonzero(seg == gid)
    assert len(rows) >= 4, f"{geom} not visible in view {VIEWS[view]}"
    cam = env.rig.cameras[view]
    uv, z = cam.project((env.data.geom_xpos[gid] + offset)[None])
    assert z[0] > 0
    return float(np.hypot(uv[0, 0] - cols.mean(), uv[0, 1] - rows.mean()))


def test_rig_projects_object_onto_its_pixels_in_fixed_views(env):
    import mujoco

    env.reset(seed=5)
    env.env._set_obj_xyz(np.array([0.15, 0.8, 0.02]))  # out from under the arm, so the top view sees it
    mujoco.mj_forward(env.model, env.data)
    for v in range(3):  # corner, topview, corner2
        assert _centroid_error(env, v, "objGeom") < 2.0, VIEWS[v]


def test_wrist_camera_pose_follows_flange_and_projects(env):
    obs = env.reset(seed=5)
    for _ in range(25):  # the expert moves above the puck and lowers: it is then in the gripper's view
        obs = env.step(env.expert_action())
    rig = env.rig
    wrist = rig.camera("gripperPOV")
    assert wrist.mount == "wrist" and rig.camera("corner").mount == "fixed"
    np.testing.assert_allclose(env.flange_pose() @ wrist.T_flange_cam, obs["cam_poses"][3], atol=1e-9)
    # Seen from 15 cm above, the visible part of the puck is its top face: project that face's centre.
    top = (0.0, 0.0, float(env.model.geom_size[env.model.geom("objGeom").id][1]))
    assert _centroid_error(env, 3, "objGeom", top) < 3.0


def test_intrinsics_from_fovy(env):
    K = env.rig.camera("gripperPOV").K  # fovy 90 -> f = H / 2
    assert K[0, 0] == pytest.approx(48.0) and K[1, 1] == pytest.approx(48.0)
    assert K[0, 2] == pytest.approx(47.5)
    env.rig.validate()


def test_reset_is_deterministic_and_seeds_differ(env):
    a = env.reset(seed=11)
    b = env.reset(seed=11)
    assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["state"], b["state"])
    c = env.reset(seed=12)
    assert not np.array_equal(a["state"][4:7], c["state"][4:7])
    assert a["images"].shape == (4, 96, 96, 3) and a["images"].dtype == np.uint8
    assert a["proprio"].shape == (4,) and a["cam_poses"].shape == (4, 4, 4)


def test_camera_jitter_moves_fixed_cameras_only():
    e = MetaWorldEnv(SimConfig(task="pick-place-v3", views=("corner", "gripperPOV"), render=False,
                               jitter_pos_m=0.03, jitter_rot_deg=3.0))
    try:
        p0 = e.reset(seed=1)["cam_poses"]
        p1 = e.reset(seed=2)["cam_poses"]
        p0b = e.reset(seed=1)["cam_poses"]
        assert np.array_equal(p0, p0b)
        assert np.linalg.norm(p0[0, :3, 3] - p1[0, :3, 3]) > 1e-3  # corner moved between seeds
        np.testing.assert_allclose(p0[1], p1[1], atol=1e-6)  # wrist camera: same hand start, same pose
    finally:
        e.close()


def test_bad_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown Meta-World task"):
        MetaWorldEnv(SimConfig(task="fly-to-moon-v3"))
    with pytest.raises(ConfigError, match="unknown camera"):
        MetaWorldEnv(SimConfig(views=("corner", "nope"), render=False))


@pytest.mark.parametrize("drop", ["close", "garbage-collect"])
def test_closing_one_env_leaves_another_envs_images_intact(drop):
    # mujoco.Renderer.close() freed its GL objects under another live renderer's context: that env then
    # rendered noise (found when a second env replaced the first in a loop)
    cfg = SimConfig(task="reach-v3", image_size=(48, 48))
    keep = MetaWorldEnv(cfg)
    before = keep.reset(3)["images"].copy()
    other = MetaWorldEnv(SimConfig(task="push-v3", image_size=(48, 48)))
    other.reset(1)
    np.testing.assert_array_equal(keep.observe()["images"], before)  # keep's context is now the current one
    if drop == "close":
        other.close()
    del other
    import gc

    gc.collect()
    after = keep.observe()["images"]
    keep.close()
    np.testing.assert_array_equal(after, before)


def _goal_pixels(env, view: int) -> int:
    return int((env.render_segmentation(view, obj="site") == env.model.site("goal").id).sum())


def test_goal_marker_is_rendered_large_enough_to_see_and_changes_no_physics():
    sizes = {}
    states = {}
    for r in (0.0, 0.05):
        e = MetaWorldEnv(SimConfig(task="reach-v3", views=("corner", "topview"), image_size=(64, 64), goal_marker_m=r))
        obs = e.reset(5)
        sizes[r] = [_goal_pixels(e, v) for v in range(2)]
        for _ in range(5):
            obs = e.step(e.expert_action())
        states[r] = obs["state"]
        e.close()
    assert max(sizes[0.0]) <= 6 and min(sizes[0.05]) >= 12, sizes  # 64x64: Meta-World's marker is a few px
    np.testing.assert_array_equal(states[0.0], states[0.05])


@pytest.mark.parametrize("r", [-0.01, 0.5, float("nan")])
def test_bad_goal_marker_is_refused(r):
    with pytest.raises(ConfigError, match="goal_marker_m"):
        MetaWorldEnv(SimConfig(task="reach-v3", goal_marker_m=r, render=False))
