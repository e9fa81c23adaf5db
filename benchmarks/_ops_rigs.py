"""Camera rigs for the ops benchmarks (attention, sightcone_mask): Meta-World's own cameras.

With metaworld installed the rigs come from the simulator (true K from fovy, poses from the MuJoCo model at
reset(0), the sim's workspace box). Without it, a hand-built stand-in: look-at cameras at the positions
and fovy values measured from the same model (MEASUREMENTS.md), aimed at the table centre.
"""

from __future__ import annotations

import numpy as np

from wallwm_edge.calibration.rig import Camera

METAWORLD3 = ("corner", "topview", "gripperPOV")  # the sim's default views
FOUR_CAMERAS = ("corner", "corner2", "corner3", "topview")
# Stand-in only: camera centres (m) and fovy (deg) read from Meta-World 3.1.1's model.
_FALLBACK = {"corner": ([-1.1, -0.4, 0.6], 45), "corner2": ([1.3, -0.2, 1.1], 60), "corner3": ([0.9, 0.0, 1.5], 45),
             "topview": ([0.0, 0.5, 1.5], 45), "gripperPOV": ([0.04, 0.61, 0.25], 90), "behindGripper": ([0.0, 0.11, 0.28], 60)}
_WS = (np.array([-0.5, 0.3, -0.05]), np.array([0.5, 1.0, 0.5]))


def _look_at(name, eye, fovy, size, target=(0.0, 0.6, 0.0)):
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, [0, 0, 1.0])
    x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-6 else np.array([1.0, 0, 0])
    T = np.eye(4)
    T[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    T[:3, 3] = eye
    f = 0.5 * size / np.tan(np.radians(fovy) / 2)
    return Camera(name, size, size, np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1]]), np.zeros(5), T)


def metaworld_rig(views, size: int = 96):
    """(cameras, workspace, source) for these Meta-World views."""
    try:
        from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

        env = MetaWorldEnv(SimConfig(views=tuple(views), image_size=(size, size), render=False))
        env.reset(0)
        rig = env.rig
        env.close()
        return list(rig.cameras), (rig.workspace_min, rig.workspace_max), "wallwm_edge.sim (MuJoCo model)"
    except ImportError:
        return [_look_at(v, *_FALLBACK[v], size) for v in views], _WS, "hand-built from MEASUREMENTS.md"
