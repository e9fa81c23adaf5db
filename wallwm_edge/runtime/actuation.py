"""How policy actions become firmware targets, and how the simulated firmware's arm moves the Meta-World hand.

The student outputs Meta-World actions: per control step (dx, dy, dz) in [-1, 1] (x 1 cm, Meta-World's
`action_scale`) and a gripper effort g in [-1, 1] (+1 closes). The firmware takes absolute targets, so
the runtime sends chunks in the firmware's end-effector ("ee") space, 6 + 1 columns:

    x, y, z   (m, base frame)  = anchor + 0.01 * cumsum(clip(d, -1, 1)), clipped to the hand's box
    rx ry rz  (rad)            = 0: the Sawyer hand keeps its orientation in Meta-World
    gripper   ([0, 1])         = (clip(g, -1, 1) + 1) / 2

one point per control step, played at the control rate (the chunk's point rate). The anchor is where
the previous chunk ends (its last target): the committed prefix is never moved (see scheduler.py).

The other direction closes the loop in simulation: each control step the runtime reads the simulated
arm's measured EE pose from the firmware's STATE and steps Meta-World with the action that puts the
mocap (the body the Sawyer hand follows) on it:

    action_xyz = clip((x_fw - x_mocap) / 0.01, -1, 1),   action_g = 2 * gripper_fw - 1

So the hand moves exactly as the firmware's interpolated, velocity-limited arm moves (within Meta-World's
1 cm per step), stops when the firmware holds, and ignores nothing the firmware did.
"""

from __future__ import annotations

import numpy as np

from wallwm_edge.errors import ConfigError

ACTION_SCALE = 0.01  # metres per unit action and step (Meta-World's action_scale)
EE_COLS = 7  # x y z rx ry rz gripper


def ee_targets(actions: np.ndarray, anchor: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(L, 4) Meta-World actions -> (L, 7) absolute EE targets starting from `anchor` (3,), clipped to [lo, hi]."""
    a = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ConfigError(f"the policy's chunk has shape {a.shape}; the ee mapping takes (L, 4) = (dx, dy, dz, gripper)")
    xyz = np.asarray(anchor, np.float64) + ACTION_SCALE * np.cumsum(a[:, :3], axis=0)
    xyz = np.clip(xyz, lo, hi)  # the hand cannot leave its box; a target outside would only wind up the error
    out = np.zeros((len(a), EE_COLS))
    out[:, :3] = xyz
    out[:, 6] = (a[:, 3] + 1.0) / 2.0
    return out


def hold_targets(xyz: np.ndarray, gripper01: float, n: int = 1) -> np.ndarray:
    """(n, 7) targets that stay at xyz with the gripper at gripper01 (homing, holds)."""
    out = np.zeros((n, EE_COLS))
    out[:, :3] = xyz
    out[:, 6] = gripper01
    return out


def env_action(ee_pos: np.ndarray, mocap_xyz: np.ndarray) -> np.ndarray:
    """(4,) Meta-World action that moves the mocap onto the firmware's measured EE pose (7,)."""
    a = np.empty(4, np.float32)
    a[:3] = np.clip((np.asarray(ee_pos[:3], np.float64) - mocap_xyz) / ACTION_SCALE, -1.0, 1.0)
    a[3] = np.clip(2.0 * float(ee_pos[6]) - 1.0, -1.0, 1.0)
    return a


class SimWorld:
    """The simulated robot cell: a Meta-World task whose hand follows the simulated firmware's arm.

        world = SimWorld("pick-place-v3", views, (96, 96), seed=0)
        world.step(state.pos)        # one control step toward the firmware's measured EE pose
        world.proprio, world.success, world.progress
    """

    def __init__(self, task: str, views, image_size, seed: int = 0, max_steps: int = 500):
        from wallwm_edge.runtime.progress import ProgressTracker
        from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

        self.env = MetaWorldEnv(SimConfig(task=task, views=tuple(views), image_size=tuple(image_size), max_steps=max_steps))
        self.task = task
        self.obs = self.env.reset(seed)
        self.tracker = ProgressTracker(task)
        self.tracker.update(self.obs)
        raw = self.env.env
        self.lo, self.hi = np.asarray(raw.mocap_low, np.float64), np.asarray(raw.mocap_high, np.float64)

    @property
    def mocap(self) -> np.ndarray:
        return np.asarray(self.env.env.data.mocap_pos[0], np.float64).copy()

    @property
    def proprio(self) -> np.ndarray:
        return self.obs["proprio"]

    @property
    def success(self) -> bool:
        return self.tracker.success

    @property
    def progress(self) -> float:
        return self.tracker.progress

    @property
    def steps(self) -> int:
        return int(self.obs["step"])

    @property
    def done(self) -> bool:
        return self.env.done

    def flange_pose(self) -> np.ndarray:
        return self.env.flange_pose()

    def step(self, ee_pos: np.ndarray) -> np.ndarray:
        """One control step toward the firmware's measured EE pose (7,); returns the Meta-World action used."""
        return self.step_action(env_action(ee_pos, self.mocap))

    def step_action(self, a: np.ndarray) -> np.ndarray:
        """Step the physics with a Meta-World action (no rendering: the camera source renders when it captures)."""
        renderer, self.env.renderer = self.env.renderer, None
        try:
            self.obs = self.env.step(a)
        finally:
            self.env.renderer = renderer
        self.tracker.update(self.obs)
        return a

    def close(self) -> None:
        self.env.close()
