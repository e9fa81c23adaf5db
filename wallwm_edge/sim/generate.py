"""Generate a multi-view Meta-World dataset from the scripted experts, with events on four tracks.

    generate_dataset("data/mw", tasks=["pick-place-v3", "push-v3"], episodes_per_task=10)

One job per (task, episode index). Its seed is derived from (seed, task, index, attempt) only, so the
arrays are identical whatever the number of workers or the order jobs finish in. A job retries
with the next attempt's seed when the expert fails (up to `max_attempts`), and only successful
episodes are written; the failed attempts are counted and reported. Workers are spawned processes
(MuJoCo's GL context and fork do not mix), each keeps one env per task, and writes its episodes
itself with `write_episode` (atomic); the parent then records them in dataset.json.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError
from wallwm_edge.sim.metaworld_env import GOAL_MARKER_M

DEFAULT_TASKS = ("pick-place-v3", "push-v3", "bin-picking-v3", "shelf-place-v3", "button-press-topdown-v3",
                 "drawer-open-v3", "reach-v3", "pick-place-wall-v3", "push-wall-v3")


@dataclass(frozen=True)
class GenConfig:
    tasks: tuple[str, ...] = DEFAULT_TASKS
    episodes_per_task: int = 4
    image_size: tuple[int, int] = (96, 96)
    views: tuple[str, ...] = ("corner", "topview", "gripperPOV")
    seed: int = 0
    max_steps: int = 300
    max_attempts: int = 3  # expert tries per episode before the episode is given up
    jitter_pos_m: float = 0.0  # fixed-camera jitter ("novel scene" split); 0 = Meta-World's cameras
    jitter_rot_deg: float = 0.0
    split_tags: tuple[str, ...] = field(default_factory=tuple)  # extra tags for every episode
    goal_marker_m: float = GOAL_MARKER_M  # rendered radius of the goal marker (recorded in dataset.json)


def episode_seed(seed: int, task: str, index: int, attempt: int) -> int:
    """A 31-bit seed from the dataset seed, the task name, the episode index and the attempt."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(task.encode()), int(index), int(attempt)])
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)


def rollout(env, seed: int):
    """Run the expert from reset(seed) to success (or max_steps). Returns arrays, trace and success."""
    return record_expert(env, env.reset(seed))


def record_expert(env, obs: dict):
    """Run the expert from the env's current state (observation `obs`) to success or max_steps, recording
    every frame. From reset this is an expert episode; from a state a policy drove the arm into, it is an
    on-policy takeover (wallwm_edge.eval.dagger). Returns arrays, trace and success."""
    from wallwm_edge.events.phases import Trace

    frames, actions, proprio, poses, states = [], [], [], [], []
    grip_cmd = []
    render = env.renderer is not None
    while True:
        done = obs["success"] or env.done
        if done:  # the last frame shows the result; its action holds the hand where it is
            a = np.array([0.0, 0.0, 0.0, grip_cmd[-1] if grip_cmd else -1.0], np.float32)
        else:
            a = env.expert_action()
        if render:
            frames.append(obs["images"])
        actions.append(a)
        proprio.append(obs["proprio"])
        poses.append(obs["cam_poses"])
        states.append(obs["state"])
        grip_cmd.append(float(a[3]))
        if done:
            break
        obs = env.step(a)
    states = np.stack(states)
    trace = Trace(hand=states[:, :3], grip=states[:, 3], grip_cmd=np.asarray(grip_cmd), obj=states[:, 4:7])
    arrays = {
        "frames": np.stack(frames) if render else None,  # (T, V, H, W, 3) uint8
        "actions": np.stack(actions).astype(np.float32),  # (T, 4)
        "proprio": np.stack(proprio).astype(np.float32),  # (T, 4)
        "cam_poses": np.stack(poses),  # (T, V, 4, 4)
    }
    return arrays, trace, bool(obs["success"])


def build_episode(env, task: str, episode_id: str, seed: int, arrays: dict, trace, split_tags=(), extra=None):
    """A successful recording as an `Episode` (events derived from its trace; not written)."""
    from wallwm_edge.data.episode import Episode
    from wallwm_edge.events.phases import derive_events
    from wallwm_edge.events.vocab import task_spec

    T = len(arrays["actions"])
    rig = env.rig.with_poses(arrays["cam_poses"][0])  # the wrist camera's pose at the first recorded frame
    tags = ("heldout_task" if task_spec(task).heldout else "seen_task",)
    if env.config.jitter_pos_m > 0 or env.config.jitter_rot_deg > 0:
        tags += ("novel_scene",)
    return Episode(
        episode_id=episode_id,
        task=task,
        frames=arrays["frames"],
        actions=arrays["actions"],
        proprio=arrays["proprio"],
        timestamps=np.arange(T, dtype=np.float64) / env.fps,
        cam_poses=arrays["cam_poses"],
        rig=rig,
        events=tuple(derive_events(trace, task)),
        seed=int(seed),
        fps=env.fps,
        success=True,
        split_tags=tags + tuple(split_tags),
        extra=dict(extra or {}),
    )


# --- worker ------------------------------------------------------------------------------------------
_ENVS: dict = {}


def _env_for(cfg: GenConfig, task: str):
    from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

    if task not in _ENVS:
        _ENVS[task] = MetaWorldEnv(SimConfig(task=task, views=tuple(cfg.views), image_size=tuple(cfg.image_size),
                                             max_steps=cfg.max_steps, jitter_pos_m=cfg.jitter_pos_m,
                                             jitter_rot_deg=cfg.jitter_rot_deg, goal_marker_m=cfg.goal_marker_m))
    return _ENVS[task]


def make_episode(cfg: GenConfig, task: str, index: int):
    """One successful expert episode as an `Episode` (not written), plus the number of failed attempts.
    Returns (None, attempts) if every attempt failed."""
    env = _env_for(cfg, task)
    for attempt in range(cfg.max_attempts):
        s = episode_seed(cfg.seed, task, index, attempt)
        arrays, trace, success = rollout(env, s)
        if not success:
            continue
        ep = build_episode(env, task, f"{task}_s{index:05d}", s, arrays, trace, cfg.split_tags,
                           {"source": "metaworld-expert", "attempt": attempt})
        return ep, attempt
    return None, cfg.max_attempts


def _job(args) -> dict:
    from wallwm_edge.data.episode import write_episode

    cfg, out, task, index = args
    ep, failed = make_episode(cfg, task, index)
    if ep is None:
        return {"task": task, "index": index, "episode_id": None, "failed": failed, "frames": 0}
    write_episode(out, ep, overwrite=True)
    return {"task": task, "index": index, "episode_id": ep.episode_id, "failed": failed, "frames": ep.num_frames}


def _init_worker() -> None:
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")


def generate_dataset(out, tasks=DEFAULT_TASKS, episodes_per_task: int = 4, image_size=(96, 96),
                     views=("corner", "topview", "gripperPOV"), seed: int = 0, workers: int = 1,
                     max_steps: int = 300, max_attempts: int = 3, jitter_pos_m: float = 0.0,
                     jitter_rot_deg: float = 0.0, progress: bool = True, exist_ok: bool = False,
                     split_tags=()) -> dict:
    """Generate (or, with exist_ok, complete) a dataset at `out`; returns a summary dict:
    {"episodes", "discarded_attempts", "failed_episodes", "frames", "seconds", "episodes_per_min", "root"}."""
    from tqdm import tqdm

    from wallwm_edge.data.dataset import Dataset
    from wallwm_edge.events.vocab import TASKS
    from wallwm_edge.sim.metaworld_env import ACTION_DIM, PROPRIO_DIM

    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t]
    cfg = GenConfig(tuple(tasks), int(episodes_per_task), (int(image_size[0]), int(image_size[1])), tuple(views),
                    int(seed), int(max_steps), int(max_attempts), float(jitter_pos_m), float(jitter_rot_deg),
                    tuple(split_tags))
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"task(s) {unknown} have no entry in the event registry (wallwm_edge/events/vocab.py); "
                          f"known: {', '.join(TASKS)}")
    if cfg.episodes_per_task < 1 or workers < 1:
        raise ConfigError(f"episodes_per_task and workers must be >= 1, got {cfg.episodes_per_task} and {workers}")
    from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig  # validate views/size once, here

    probe = MetaWorldEnv(SimConfig(task=cfg.tasks[0], views=cfg.views, image_size=cfg.image_size, render=False))
    fps = probe.fps
    probe.close()
    ds = Dataset.create(out, views=list(cfg.views), image_size=cfg.image_size, action_dim=ACTION_DIM,
                        proprio_dim=PROPRIO_DIM, fps=fps, generator={"name": "metaworld-expert", **asdict(cfg)},
                        exist_ok=exist_ok)
    jobs = [(cfg, str(ds.root), t, i) for t in cfg.tasks for i in range(cfg.episodes_per_task)]
    if exist_ok:  # resume: episodes already on disk were made from the same seeds, keep them
        jobs = [j for j in jobs if not (ds.root / "episodes" / f"{j[2]}_s{j[3]:05d}" / "meta.json").is_file()]
    t0 = time.perf_counter()
    results = []
    bar = tqdm(total=len(jobs), desc="generate", unit="ep", disable=not progress)
    if workers == 1:
        for j in jobs:
            results.append(_job(j))
            bar.update(1)
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
            for r in pool.imap_unordered(_job, jobs):
                results.append(r)
                bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    ds.finalize()
    written = [r for r in results if r["episode_id"]]
    summary = {
        "root": str(ds.root),
        "episodes": len(written),
        "failed_episodes": sorted(f"{r['task']}#{r['index']}" for r in results if not r["episode_id"]),
        "discarded_attempts": int(sum(r["failed"] for r in results)),
        "frames": int(sum(r["frames"] for r in results)),
        "seconds": seconds,
        "episodes_per_min": 60.0 * len(written) / max(seconds, 1e-9),
    }
    return summary


if __name__ == "__main__":  # python -m wallwm_edge.sim.generate OUT
    import sys

    print(generate_dataset(Path(sys.argv[1]), episodes_per_task=1, workers=2))
