"""Small valid episodes made with numpy alone (no MuJoCo): for tests and for quick pipeline checks.

Every field follows the contract, so `data check` passes on them; tests corrupt one thing at a time.
"""

from __future__ import annotations

import numpy as np

from wallwm_edge.calibration.rig import Camera, Rig
from wallwm_edge.data.episode import Episode, Event


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-base pose (4, 4), OpenCV camera axes (z forward, y down), looking from eye to target."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight along `up`
        x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T


def synthetic_rig(views=("corner", "top", "gripper"), image_size=(32, 32)) -> Rig:
    H, W = image_size
    f = 0.9 * W
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    cams = []
    for i, name in enumerate(views):
        wrist = name == "gripper"
        eye = (0.0, 0.6, 0.3) if wrist else (1.0 * np.cos(i), 1.0 * np.sin(i) + 0.6, 0.8 + 0.1 * i)
        T = look_at(eye, (0.0, 0.6, 0.0))
        cams.append(Camera(name, W, H, K, np.zeros(5), T, "wrist" if wrist else "fixed", np.eye(4) if wrist else None))
    return Rig(tuple(cams))


def synthetic_events(T: int, task: str = "pick-place") -> tuple[Event, ...]:
    """task ⊃ 2 subtasks ⊃ 2 actions each ⊃ 1 segment each; spans tile [0, T)."""
    cut = T // 2
    q = [0, cut // 2, cut, cut + (T - cut) // 2, T]

    def ev(track, s, e, key, caption, parent):
        return Event(track, s, e, key, caption, (caption + ", please", "now " + caption), ("could you " + caption,), parent)

    events = [ev("task", 0, T, f"task:{task}", f"do the {task} task", None)]
    events += [ev("subtask", 0, cut, "grasp:puck", "grasp the puck", 0), ev("subtask", cut, T, "place:puck", "place the puck", 0)]
    acts = [("reach:puck", "move to the puck", 1), ("close:gripper", "close the gripper", 1), ("move:goal", "move to the goal", 2), ("open:gripper", "open the gripper", 2)]
    for i, (key, cap, parent) in enumerate(acts):
        events.append(ev("action", q[i], q[i + 1], key, cap, parent))
    for i in range(4):
        events.append(ev("segment", q[i], q[i + 1], f"segment:{i}", f"segment {i}", 3 + i))
    return tuple(events)


def synthetic_episode(
    episode_id: str = "pick-place-v3_s00000",
    task: str = "pick-place-v3",
    T: int = 12,
    views=("corner", "top", "gripper"),
    image_size=(32, 32),
    action_dim: int = 4,
    proprio_dim: int = 4,
    fps: float = 10.0,
    seed: int = 0,
) -> Episode:
    rng = np.random.default_rng(seed)
    H, W = image_size
    V = len(views)
    rig = synthetic_rig(views, image_size)
    cam_poses = np.stack([c.T_base_cam for c in rig.cameras])[None].repeat(T, axis=0)  # (T, V, 4, 4)
    for v, c in enumerate(rig.cameras):
        if c.mount == "wrist":  # the wrist camera follows the hand along y
            cam_poses[:, v, 1, 3] += np.linspace(0, 0.1, T)
    return Episode(
        episode_id=episode_id,
        task=task,
        frames=rng.integers(0, 256, (T, V, H, W, 3), dtype=np.uint8),
        actions=rng.uniform(-1, 1, (T, action_dim)).astype(np.float32),
        proprio=rng.normal(0, 0.1, (T, proprio_dim)).astype(np.float32),
        timestamps=np.arange(T, dtype=np.float64) / fps,
        cam_poses=cam_poses,
        rig=rig,
        events=synthetic_events(T, task.removesuffix("-v3")),
        seed=seed,
        fps=fps,
        success=bool(seed % 2 == 0),
        split_tags=("train",),
    )
