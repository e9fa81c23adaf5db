"""Meta-World with several calibrated cameras: the one simulated robot everything else talks to.

Used by data generation, by closed-loop evaluation and by the on-board runtime's simulated camera
source. It wraps a metaworld 3.x task (goal observable), renders V cameras with MuJoCo's own renderer
at fast settings, and reads every camera's true intrinsics and pose from the MuJoCo model each step.

Conventions (see wallwm_edge/calibration/rig.py):
- base frame = MuJoCo world frame. The Sawyer's `base` body sits at the origin with identity rotation,
  and Meta-World's actions and hand positions are already in this frame.
- MuJoCo cameras look down their -z axis with +y up; our cameras are OpenCV's (z forward, y down), so
  R_base_cam = R_world_mjcam @ diag(1, -1, -1).
- Intrinsics come from the vertical field of view `fovy` (MuJoCo's convention, square pixels):
  fy = fx = (H / 2) / tan(fovy / 2), principal point at the image centre ((W - 1) / 2, (H - 1) / 2) in
  the pixel-centre convention of the rig file.
- The moving "gripperPOV" camera is a wrist camera: its flange is Meta-World's `hand` body.

Rendering: shadows, reflections and multisampling off (~7 ms per 96x96 view on osmesa instead of
~80 ms with Meta-World's defaults, see MEASUREMENTS.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")  # must precede the first `import mujoco`
if os.environ["MUJOCO_GL"] == "osmesa":
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

from wallwm_edge.calibration.rig import Camera, Rig  # noqa: E402
from wallwm_edge.errors import ConfigError  # noqa: E402

# metaworld's scripted policies warn on every step that their gains saturate; the env clips, as intended.
warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high", category=UserWarning)

DEFAULT_VIEWS = ("corner", "topview", "gripperPOV")
WRIST_BODY = "hand"  # the flange of the Meta-World Sawyer; cameras attached to it are wrist cameras
CV_FROM_MJ = np.diag([1.0, -1.0, -1.0])  # MuJoCo camera axes -> OpenCV camera axes
# The table top and the space above it where the arm works (base frame, metres); used by sight cones.
WORKSPACE_MIN = np.array([-0.5, 0.3, -0.05])
WORKSPACE_MAX = np.array([0.5, 1.0, 0.5])
# Radius (m) at which the goal marker (Meta-World's visual-only "goal" site, 0.02 m) is rendered. At 64x64
# Meta-World's marker covers 2-4 px of a fixed view and none of the wrist view (measured over 8 reach
# scenes); at 0.05 m it covers 15-25 px: the policy can see where the goal is. Physics and success are
# untouched (a site has no collision). 0 keeps Meta-World's own size.
GOAL_MARKER_M = 0.05
ACTION_DIM = 4  # dx, dy, dz in [-1, 1] (x 1 cm per step), gripper effort in [-1, 1] (+1 closes)
PROPRIO_DIM = 4  # hand x, y, z (m, base frame), gripper opening (Meta-World's normalised finger distance)


@dataclass(frozen=True)
class SimConfig:
    """What a MetaWorldEnv renders and how it randomises. Frozen: one config, one kind of episode."""

    task: str = "pick-place-v3"
    views: tuple[str, ...] = DEFAULT_VIEWS
    image_size: tuple[int, int] = (96, 96)  # (H, W)
    max_steps: int = 300  # Meta-World allows at most 500
    # Fixed-camera pose jitter for the "novel scene" split: position std (m) and rotation std (deg),
    # drawn once per reset from the episode seed. 0 = Meta-World's cameras exactly.
    jitter_pos_m: float = 0.0
    jitter_rot_deg: float = 0.0
    render: bool = True  # False: physics and poses only (fast expert rollouts, tests)
    goal_marker_m: float = GOAL_MARKER_M  # rendered radius of the goal site; 0 = Meta-World's


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _axis_angle_quat(v: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) of the rotation vector v (radians)."""
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    axis = v / angle
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def intrinsics_from_fovy(fovy_deg: float, height: int, width: int) -> np.ndarray:
    """(3, 3) K of a MuJoCo camera with vertical field of view `fovy_deg` rendered at height x width."""
    f = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def task_names() -> list[str]:
    """Every Meta-World v3 task that has a scripted expert."""
    from metaworld.policies import ENV_POLICY_MAP

    return sorted(ENV_POLICY_MAP)


def scene_goals(episodes) -> np.ndarray:
    """(E, 3) float32: each episode's goal position (Meta-World obs[36:39] after reset(seed)), scaled to
    [-1, 1] over WORKSPACE_MIN..MAX. The goal depends on the task and scene seed only, so it is recomputed
    from the episode's metadata (no rendering) rather than stored in the dataset. For the trainer's
    auxiliary goal probe; episodes from anywhere but this simulator are refused."""
    from wallwm_edge.errors import DataError

    envs: dict = {}
    out = np.empty((len(episodes), 3), np.float32)
    try:
        for i, ep in enumerate(episodes):
            if ep.task not in envs:
                try:
                    envs[ep.task] = MetaWorldEnv(SimConfig(task=ep.task, render=False))
                except ConfigError as e:
                    raise DataError(f"{ep.path or ep.episode_id}: no simulated scene to take a goal from ({e})") from None
            g = envs[ep.task].reset(int(ep.seed))["state"][36:39]
            out[i] = 2.0 * (g - WORKSPACE_MIN) / (WORKSPACE_MAX - WORKSPACE_MIN) - 1.0
    finally:
        for e in envs.values():
            e.close()
    return out


class MetaWorldEnv:
    """A Meta-World task with V calibrated cameras.

        env = MetaWorldEnv(SimConfig(task="pick-place-v3"))
        obs = env.reset(seed=3)                      # same seed -> same scene, same images
        while not obs["success"]:
            obs = env.step(env.expert_action())       # or your policy's (4,) action
        env.rig                                       # Rig for this episode (wrist pose at reset)

    obs: {"images": (V, H, W, 3) uint8 (absent if render=False), "proprio": (4,) float32,
          "cam_poses": (V, 4, 4) float64 camera -> base, "success": bool, "state": (39,) Meta-World obs,
          "grab_contact": bool (both finger pads touch the task's main object), "step": int}
    """

    def __init__(self, config: SimConfig = SimConfig()):
        import metaworld
        import mujoco
        from metaworld.policies import ENV_POLICY_MAP

        self.config = config
        key = f"{config.task}-goal-observable"
        if key not in metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE or config.task not in ENV_POLICY_MAP:
            raise ConfigError(f"unknown Meta-World task {config.task!r}; known: {', '.join(task_names())}")
        if not 1 <= config.max_steps <= 500:
            raise ConfigError(f"max_steps must be in 1..500 (Meta-World's limit), got {config.max_steps}")
        H, W = config.image_size
        if H < 8 or W < 8:
            raise ConfigError(f"image_size must be at least 8x8, got {H}x{W}")
        self._mj = mujoco
        self.env = metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[key](seed=0)
        self.policy = ENV_POLICY_MAP[config.task]()
        self.model, self.data = self.env.model, self.env.data
        names = [self.model.camera(i).name for i in range(self.model.ncam)]
        missing = [v for v in config.views if v not in names]
        if missing or not config.views:
            raise ConfigError(f"unknown camera(s) {missing or '(none given)'}; Meta-World has {names}")
        if len(set(config.views)) != len(config.views):
            raise ConfigError(f"views must be distinct, got {list(config.views)}")
        self.cam_ids = [names.index(v) for v in config.views]
        if not (np.isfinite(config.goal_marker_m) and 0 <= config.goal_marker_m <= 0.2):
            raise ConfigError(f"goal_marker_m must be in [0, 0.2] m, got {config.goal_marker_m}")
        site_names = [self.model.site(i).name for i in range(self.model.nsite)]
        if config.goal_marker_m > 0 and "goal" in site_names:
            self.model.site_size[site_names.index("goal")][0] = config.goal_marker_m  # a sphere: size[0] is its radius
        self.wrist_body = self.model.body(WRIST_BODY).id
        self._cam_pos0 = self.model.cam_pos.copy()
        self._cam_quat0 = self.model.cam_quat.copy()
        self.K = [intrinsics_from_fovy(float(self.model.cam_fovy[i]), H, W) for i in self.cam_ids]
        self.fps = 1.0 / (self.env.frame_skip * self.model.opt.timestep)
        self.renderer = None
        if config.render:
            # Cheap visuals: these must be set before the GL context (and its shadow map) is made.
            self.model.vis.quality.offsamples = 0
            self.model.vis.quality.shadowsize = 0
            self.renderer = mujoco.Renderer(self.model, height=H, width=W)
            self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._obs = None
        self._step = 0
        self.seed = None

    # --- episode -------------------------------------------------------------------------------------

    def reset(self, seed: int) -> dict:
        """New episode: object/goal placement and camera jitter drawn from `seed` only."""
        self.seed = int(seed)
        env = self.env
        env._freeze_rand_vec = False  # let reset draw a new placement, from env.np_random
        env.seeded_rand_vec = True
        env.seed(self.seed)
        self._jitter_cameras(np.random.default_rng([self.seed, 7]))
        state, _ = env.reset()
        env._freeze_rand_vec = True
        # Meta-World's reset observation can predate the object placement (drawer handles, for one):
        # recompute it from the settled simulator state, keeping the frame-stacked half consistent.
        self._mj.mj_forward(self.model, self.data)
        state = np.asarray(env._get_obs(), np.float64)
        state[18:36] = state[:18]
        env._prev_obs = state[:18].copy()
        self._state = state
        self._step = 0
        self._success = False
        self._obs = self._observe()
        return self._obs

    def step(self, action: np.ndarray) -> dict:
        """Apply a (4,) action (dx, dy, dz, gripper) in [-1, 1]; returns the next observation."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(ACTION_DIM), -1.0, 1.0)
        if self._obs is None:
            raise RuntimeError("call reset(seed) before step()")
        if self._step >= self.config.max_steps:
            raise ConfigError(f"episode is over: max_steps={self.config.max_steps} reached; call reset()")
        state, _, _, _, info = self.env.step(a.astype(np.float32))
        self._state = state
        self._step += 1
        self._success = bool(info["success"])
        self._obs = self._observe()
        return self._obs

    def observe(self) -> dict:
        """The observation of the current state, rendered afresh (after steps taken without images)."""
        if self._obs is None:
            raise RuntimeError("call reset(seed) before observe()")
        self._obs = self._observe()
        return self._obs

    def expert_action(self) -> np.ndarray:
        """The metaworld scripted expert's action for the current state, clipped to [-1, 1], (4,) float32."""
        return np.clip(self.policy.get_action(self._state), -1.0, 1.0).astype(np.float32)

    @property
    def done(self) -> bool:
        return self._step >= self.config.max_steps

    # --- cameras -------------------------------------------------------------------------------------

    def _jitter_cameras(self, rng: np.random.Generator) -> None:
        """Perturb the fixed cameras' poses (model.cam_pos/quat); restores Meta-World's when jitter is 0."""
        self.model.cam_pos[:] = self._cam_pos0
        self.model.cam_quat[:] = self._cam_quat0
        c = self.config
        for i in self.cam_ids:
            dp = rng.normal(0.0, 1.0, 3) * c.jitter_pos_m
            dr = rng.normal(0.0, 1.0, 3) * np.deg2rad(c.jitter_rot_deg)
            if self.model.cam_bodyid[i] == self.wrist_body:
                continue  # the wrist camera stays bolted to the hand
            self.model.cam_pos[i] = self._cam_pos0[i] + dp
            self.model.cam_quat[i] = _quat_mul(_axis_angle_quat(dr), self._cam_quat0[i])

    def cam_poses(self) -> np.ndarray:
        """(V, 4, 4) camera -> base poses in the OpenCV camera convention, from the current MuJoCo data."""
        T = np.tile(np.eye(4), (len(self.cam_ids), 1, 1))
        for v, i in enumerate(self.cam_ids):
            T[v, :3, :3] = self.data.cam_xmat[i].reshape(3, 3) @ CV_FROM_MJ
            T[v, :3, 3] = self.data.cam_xpos[i]
        return T

    def flange_pose(self) -> np.ndarray:
        """(4, 4) pose of the hand body (the flange) in the base frame."""
        T = np.eye(4)
        T[:3, :3] = self.data.xmat[self.wrist_body].reshape(3, 3)
        T[:3, 3] = self.data.xpos[self.wrist_body]
        return T

    @property
    def rig(self) -> Rig:
        """The rig at the current step: true K from fovy, pose from MuJoCo; wrist cameras carry T_flange_cam."""
        H, W = self.config.image_size
        poses = self.cam_poses()
        T_base_flange = self.flange_pose()
        cams = []
        for v, i in enumerate(self.cam_ids):
            wrist = self.model.cam_bodyid[i] == self.wrist_body
            T_flange_cam = None
            if wrist:
                T_flange_cam = np.linalg.inv(T_base_flange) @ poses[v]
                T_flange_cam[3] = [0, 0, 0, 1]
            cams.append(Camera(name=self.config.views[v], width=W, height=H, K=self.K[v], dist=np.zeros(5),
                               T_base_cam=poses[v], mount="wrist" if wrist else "fixed", T_flange_cam=T_flange_cam))
        return Rig(tuple(cams), WORKSPACE_MIN.copy(), WORKSPACE_MAX.copy())

    def render(self) -> np.ndarray:
        """(V, H, W, 3) uint8 RGB of every view at the current state."""
        if self.renderer is None:
            raise ConfigError("this env was made with render=False")
        H, W = self.config.image_size
        out = np.empty((len(self.cam_ids), H, W, 3), np.uint8)
        for v, i in enumerate(self.cam_ids):
            self.renderer.update_scene(self.data, camera=i)
            self.renderer.scene.flags[self._mj.mjtRndFlag.mjRND_SHADOW] = 0
            self.renderer.scene.flags[self._mj.mjtRndFlag.mjRND_REFLECTION] = 0
            out[v] = self.renderer.render()
        return out

    def render_segmentation(self, view: int, obj: str = "geom") -> np.ndarray:
        """(H, W) id of the `obj` ("geom" or "site") visible at each pixel of view `view` (-1 elsewhere);
        for tests and masks."""
        self.renderer.enable_segmentation_rendering()
        try:
            self.renderer.update_scene(self.data, camera=self.cam_ids[view])
            seg = self.renderer.render()
        finally:
            self.renderer.disable_segmentation_rendering()
        ids = seg[..., 0].astype(np.int64)
        kind = {"geom": self._mj.mjtObj.mjOBJ_GEOM, "site": self._mj.mjtObj.mjOBJ_SITE}[obj]
        return np.where(seg[..., 1] == int(kind), ids, -1)

    # --- observation ---------------------------------------------------------------------------------

    def _observe(self) -> dict:
        s = self._state
        obs = {
            "proprio": np.asarray(s[:4], np.float32).copy(),  # hand xyz, gripper opening
            "cam_poses": self.cam_poses(),
            "success": self._success,
            "state": np.asarray(s, np.float64).copy(),
            "grab_contact": self._touching_main_object(),
            "step": self._step,
        }
        if self.renderer is not None:
            obs["images"] = self.render()
        return obs

    def _touching_main_object(self) -> bool:
        try:
            return bool(self.env.touching_main_object)
        except (KeyError, NotImplementedError, AttributeError):
            return False  # tasks without an "objGeom" (buttons, drawers...) have no graspable object

    def close(self) -> None:
        if self.renderer is not None:
            # mujoco.Renderer.close() frees its GL context first and its MjrContext (textures, buffers)
            # after, under whichever context is current then: another live env's, whose GL objects of the
            # same ids it deletes, so that env rendered garbage from then on. Free ours under our context.
            r = self.renderer
            if getattr(r, "_gl_context", None) is not None and getattr(r, "_mjr_context", None) is not None:
                r._gl_context.make_current()
                r._mjr_context.free()
                r._mjr_context = None
            r.close()
            self.renderer = None
        self.env.close()

    def __del__(self) -> None:
        try:  # an env dropped without close() would otherwise free its renderer the broken way (above)
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit the GL bindings may already be gone
            pass

    def __enter__(self) -> "MetaWorldEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
