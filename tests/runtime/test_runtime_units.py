"""The runtime's parts one by one: EE mapping, the student engine's feeds, masks, sources, scheduler maths."""

import json

import numpy as np

from wallwm_edge.events.end_rule import DEFAULT_END_RULE
import pytest

from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.runtime.actuation import ACTION_SCALE, ee_targets, env_action, hold_targets
from wallwm_edge.runtime.engine import Student, find_student
from wallwm_edge.runtime.loop import Faults, RunConfig, run
from wallwm_edge.runtime.masks import MaskProvider, pose_from_ee
from wallwm_edge.runtime.scheduler import LeadEstimate, align
from wallwm_edge.runtime.sources import FolderSource, make_source

LO, HI = np.array([-0.5, 0.4, 0.05]), np.array([0.5, 1.0, 0.5])


def test_ee_targets_integrate_actions_and_clip():
    a = np.array([[1.0, 0, 0, -1], [1.0, 0.5, 0, 1], [2.0, 0, -1, 0]])  # 2.0 is clipped to 1
    t = ee_targets(a, np.array([0.0, 0.6, 0.2]), LO, HI)
    assert t.shape == (3, 7)
    np.testing.assert_allclose(t[:, 0], [0.01, 0.02, 0.03])
    np.testing.assert_allclose(t[:, 1], [0.6, 0.605, 0.605])
    np.testing.assert_allclose(t[:, 2], [0.2, 0.2, 0.19])
    np.testing.assert_allclose(t[:, 3:6], 0)
    np.testing.assert_allclose(t[:, 6], [0.0, 1.0, 0.5])
    low = ee_targets(np.tile([0, 0, -1.0, 0], (20, 1)), np.array([0.0, 0.6, 0.1]), LO, HI)
    assert low[:, 2].min() == pytest.approx(0.05)  # never below the hand's box
    with pytest.raises(ConfigError, match=r"\(L, 4\)"):
        ee_targets(np.zeros((3, 7)), np.zeros(3), LO, HI)


def test_env_action_puts_the_mocap_on_the_firmware_pose():
    mocap = np.array([0.0, 0.6, 0.2])
    target = hold_targets(mocap + [0.004, -0.007, 0.002], 1.0)[0]
    a = env_action(target, mocap)
    np.testing.assert_allclose(mocap + ACTION_SCALE * a[:3], target[:3], atol=1e-6)
    assert a[3] == 1.0
    far = env_action(hold_targets(mocap + [0.5, 0, 0], 0.0)[0], mocap)
    assert far[0] == 1.0 and far[3] == -1.0  # at most 1 cm per step: the firmware's pace, never faster


def test_pose_from_ee_rotation_vector():
    T = pose_from_ee([0.1, 0.2, 0.3, 0, 0, np.pi / 2])
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(pose_from_ee(np.zeros(6)), np.eye(4))


def test_faults_parse():
    f = Faults.parse(["drop_frame@2", "overrun@3:1.5", "disconnect@4"])
    assert f.drop_frame == (2,) and f.overrun == ((3, 1.5),) and f.disconnect == ((4, 0.6),)
    for bad in ("explode@1", "overrun@x", "drop_frame"):
        with pytest.raises(ConfigError, match="--inject"):
            Faults.parse([bad])


def test_lead_and_align():
    lead = LeadEstimate(rate_hz=20.0, cap=8)
    assert lead.points == 4  # no history yet: floor + 2
    for _ in range(10):
        lead.add(0.120)  # 120 ms pipeline at 20 Hz = 2.4 steps -> 3, + 2 margin
    assert lead.points == 5
    lead.add(5.0)  # one huge outlier: the p99 would ask for 100 points, the cap keeps fresh actions
    assert lead.points == 8
    assert align(16, 3) == 3 and align(4, 9) == 4 and align(8, 0) == 0


def test_student_feeds_and_chunk(tiny_student):
    st = Student.load(tiny_student)
    assert st.views == ("corner", "topview", "gripperPOV") and st.mode == "event"
    Vn = len(st.views) * (96 // st.patch) ** 2
    vm = np.eye(Vn, dtype=bool)
    feeds = st.feeds(np.zeros((3, 96, 96, 3), np.uint8), np.zeros(4), "grasp the puck", vm)
    assert feeds["view_mask"].shape == (1, Vn, Vn) and feeds["view_mask"].dtype == np.bool_
    assert feeds["noise_action"].shape == (1, st.horizon, 4)
    out = st.act(np.zeros((3, 96, 96, 3), np.uint8), np.zeros(4), "grasp the puck", vm)
    assert out.actions.shape == (st.horizon, 4) and np.isfinite(out.actions).all()
    assert out.length == DEFAULT_END_RULE.length(out.end_prob) and out.done == DEFAULT_END_RULE.is_done(out.end_prob)
    with pytest.raises(DataError, match="'dance a jig' is not in the student's caption table"):
        st.embed("dance a jig")


def test_full_mask_matches_the_model(tiny_student):
    """Graphs that take the full token mask get exactly the model's own expansion of the view mask."""
    torch = pytest.importorskip("torch")
    from wallwm_edge.model.attention import expand_view_mask

    st = Student.load(tiny_student)
    Vn = 3 * (96 // st.patch) ** 2
    S = st.n_frames * Vn + 2 + st.horizon
    st.inputs["mask"] = {"name": "mask", "shape": [1, S, S], "dtype": "bool"}
    vm = np.random.default_rng(0).random((Vn, Vn)) < 0.3
    ref = expand_view_mask(torch.from_numpy(vm), st.n_frames, 2 + st.horizon).numpy()
    np.testing.assert_array_equal(st.full_mask(vm), ref)


def test_find_student_errors(tmp_path, tiny_student):
    with pytest.raises(ConfigError, match="not found"):
        find_student(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no exported student"):
        find_student(tmp_path)
    with pytest.raises(ConfigError, match="no int8 export; it has \\['fp32'\\]"):
        find_student(tiny_student, "int8")
    assert find_student(tiny_student).name == "student.sample.json"
    assert find_student(tiny_student / "student.sample.onnx") == tiny_student / "student.sample.json"


def test_changed_onnx_is_refused(tmp_path, tiny_student):
    import shutil

    d = tmp_path / "s"
    shutil.copytree(tiny_student, d)
    with open(d / "student.sample.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(DataError, match="sha256"):
        Student.load(d)


def test_masks_cached_for_fixed_recomputed_for_wrist():
    from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

    with MetaWorldEnv(SimConfig(render=False)) as env:
        env.reset(0)
        rig = env.rig
        flange0 = env.flange_pose()
    mp = MaskProvider(rig, rig.names, 16, 0.05, 2.0, (96, 96))
    assert mp.wrist == [2]
    m0 = mp.view_mask(T_base_flange=flange0)
    np.testing.assert_allclose(mp.poses(flange0)[2], rig.cameras[2].T_base_cam, atol=1e-9)  # T_base_flange @ T_flange_cam
    mp.view_mask(T_base_flange=flange0)
    assert mp.computed == 1  # same pose: cached
    moved = flange0.copy()
    moved[:3, 3] += [0.0, 0.1, -0.08]
    m1 = mp.view_mask(T_base_flange=moved)
    assert mp.computed == 2 and m1.shape == m0.shape
    n = 36  # tokens per view: fixed-fixed pairs are unchanged, the wrist's pairs follow the pose
    np.testing.assert_array_equal(m0[: 2 * n, : 2 * n], m1[: 2 * n, : 2 * n])
    assert (m0[2 * n:, : 2 * n] != m1[2 * n:, : 2 * n]).any()


def test_folder_source(tmp_path):
    import cv2

    for v in ("a", "b"):
        (tmp_path / v).mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / v / f"{i:03d}.png"), np.full((48, 64, 3), 40 * i + (v == "b") * 100, np.uint8))
    (tmp_path / "b" / "001.png").write_bytes(b"not a png")
    src = make_source(f"folder:{tmp_path}", ("a", "b"), (24, 32))
    f0 = src.capture()
    assert f0.images.shape == (2, 24, 32, 3) and f0.ok.all() and f0.images[1].mean() == 100
    f1 = src.capture()
    assert f1.ok.tolist() == [True, False] and f1.images[1].max() == 0  # a broken file is a dropped frame, not a crash
    with pytest.raises(DataError, match="no folder for view 'c'"):
        FolderSource(tmp_path, ("a", "c"), (24, 32))
    with pytest.raises(ConfigError, match="unknown camera source"):
        make_source("kinect", ("a",), (24, 32))


def test_unified_on_event_student_is_a_clear_error(tmp_path, tiny_student):
    with pytest.raises(ConfigError, match="unified mode needs a student exported in unified mode"):
        run(RunConfig(student=str(tiny_student), unified=True, out=str(tmp_path / "u"), status=False))
    log = [json.loads(x) for x in (tmp_path / "u" / "log.jsonl").read_text().splitlines()]
    assert log[0]["kind"] == "error" and log[-1]["kind"] == "end"  # the failure itself is logged
    assert json.loads((tmp_path / "u" / "report.json").read_text())["reason"] == "error"


def test_plan_with_unknown_caption_fails_before_the_arm_moves(tmp_path, tiny_student):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"pick-place-v3": ["reach:puck", "juggle the puck"]}))
    with pytest.raises(DataError, match="event 1: instruction 'juggle the puck' is not in the student's caption table"):
        run(RunConfig(student=str(tiny_student), plan=str(plan), out=str(tmp_path / "p"), status=False))


def test_inpainting_holds_the_committed_prefix(tiny_student):
    """The on-board Euler loop over the step graph reproduces the sample graph (same noise), and with a
    prefix it holds rows [0, P) at the committed actions while the other rows change to fit them."""
    st = Student.load(tiny_student)
    assert st.can_inpaint
    rng = np.random.default_rng(0)
    Vn = 3 * (96 // st.patch) ** 2
    feeds = st.feeds(rng.integers(0, 255, (3, 96, 96, 3), dtype=np.uint8), np.array([0, 0.6, 0.2, 1.0]), "grasp the puck",
                     rng.random((Vn, Vn)) < 0.4)
    ref = st.engine.run(feeds)
    a, e = st._inpaint(feeds, np.zeros((0, 4), np.float32))
    np.testing.assert_allclose(a, ref["actions"][0], atol=1e-4)
    np.testing.assert_allclose(e, ref["end_prob"][0], atol=1e-4)
    prefix = np.array([[0.9, -0.8, 0.7, 1.0], [0.8, -0.7, 0.6, 1.0], [0.7, -0.6, 0.5, -1.0]], np.float32)
    b, _ = st._inpaint(feeds, prefix)
    np.testing.assert_allclose(b[:3], prefix, atol=1e-5)
    assert np.abs(b[3:] - a[3:]).max() > 1e-3  # the continuation was denoised around the prefix
    out = st.act(np.zeros((3, 96, 96, 3), np.uint8), np.zeros(4), "grasp the puck", None, prefix=prefix)
    assert out.inpainted == 3 and np.allclose(out.actions[:3], prefix, atol=1e-5)


def test_runtime_feeds_match_the_torch_policy():
    """The on-board path (sim capture, MaskProvider, Student feeds, onnxruntime) gives the torch Policy's actions
    for the same observation and noise: the runtime feeds the shipped student exactly what training meant."""
    torch = pytest.importorskip("torch")
    from runtime_helpers import shipped_student

    d = shipped_student()
    if d is None or not (d / "model.safetensors").is_file():
        pytest.skip("no shipped student with its checkpoint in checkpoints/student")
    from wallwm_edge.model.policy import Policy
    from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

    st = Student.load(d)
    with MetaWorldEnv(SimConfig(views=st.views, image_size=st.image_size)) as env:
        obs = env.reset(0)
        for _ in range(5):
            obs = env.step(env.expert_action())
        rig = env.rig
    pol = Policy.from_checkpoint(d / "model.safetensors", rig=rig)
    vm = MaskProvider(rig, st.views, st.patch, st.near, st.far, st.image_size).view_mask(obs["cam_poses"])
    np.testing.assert_array_equal(vm, pol.cone.view_mask(obs["cam_poses"]))
    caption = sorted(st.captions)[0]
    feeds = st.feeds(obs["images"], obs["proprio"], caption, vm)
    got = st.engine.run(feeds)
    x = pol.export_inputs({**obs, "instruction": np.asarray(st.captions[caption], np.float32)})
    with torch.no_grad():
        a, e, _ = pol.model.sample(x["images"], x["proprio"], x["instruction"], pol.model.full_mask(torch.from_numpy(vm)),
                                   torch.from_numpy(feeds["noise_video"]), torch.from_numpy(feeds["noise_action"]), steps=st.steps)
    np.testing.assert_allclose(got["actions"][0], a[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(got["end_prob"][0], e[0].numpy(), atol=1e-3)
