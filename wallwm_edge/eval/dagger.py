"""On-policy data (DAgger): the policy drives, the scripted expert takes over, and the takeover is recorded.

    summary = collect("checkpoints/teacher", "data/mw64b", "data/mw64b_dagger")

Expert-only data never shows the states a trained policy drives itself into: a hand hovering 3 cm
beside the puck, a puck nudged off its spot, an event the policy declared over too early. DAgger
(Ross et al., 2011) labels exactly those states with the expert's actions. Here one rollout is:

1. reset a training scene (the source dataset's seeds; no evaluation-only scene is ever touched),
2. run the policy closed loop, exactly as `eval` does (planner, end-of-event rule, paired noise seed),
   for a takeover step k drawn uniformly from [min_takeover, max_takeover],
3. from that state the scripted expert finishes the task; its frames, actions and the events derived
   from its trace (`wallwm_edge.events.phases`) become one new episode. Its first event is whatever
   the task truly still needs, so the "done" signal learns what an unfinished event looks like.

A rollout is dropped when the policy has already succeeded by step k (nothing to correct) or when the
expert cannot finish from there (e.g. the object fell off the table). The output dataset holds the
source episodes (hard links, no copies) plus the takeovers, tagged "dagger", so training uses one folder.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wallwm_edge.data.staging import staged
from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.eval.closed_loop import EvalConfig, registry_plans, run_episode
from wallwm_edge.eval.splits import make_splits


@dataclass(frozen=True)
class DaggerConfig:
    rollouts_per_scene: int = 1  # takeovers per training scene of the source dataset
    min_takeover: int = 8  # env steps the policy drives before the expert takes over, uniform in [min, max]
    max_takeover: int = 160
    min_frames: int = 4  # a takeover shorter than this (the expert was nearly done) teaches nothing
    seed: int = 0  # takeover steps, policy noise and instruction draws
    max_steps: int = 300  # env steps per rollout, policy and expert together


def takeover_step(cfg: DaggerConfig, task: str, scene: int, r: int) -> int:
    ss = np.random.SeedSequence([cfg.seed, zlib.crc32(task.encode()), int(scene), int(r)])
    return int(np.random.default_rng(ss).integers(cfg.min_takeover, cfg.max_takeover + 1))


# --- worker ------------------------------------------------------------------------------------------
_W: dict = {}


def _init_worker(policy: str, views, image_size, max_steps: int, goal_marker_m: float) -> None:
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    import torch

    from wallwm_edge.eval.actors import CheckpointActor

    torch.set_num_threads(1)  # one core per worker process (two processes share a 2-core machine)
    _W.update(actor=CheckpointActor(policy), views=tuple(views), image_size=tuple(image_size), max_steps=max_steps,
              goal_marker_m=goal_marker_m, envs={})


def _env(task: str):
    from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

    if task not in _W["envs"]:
        _W["envs"][task] = MetaWorldEnv(SimConfig(task=task, views=_W["views"], image_size=_W["image_size"], max_steps=_W["max_steps"],
                                                    goal_marker_m=_W["goal_marker_m"]))
    return _W["envs"][task]


def _job(args) -> dict:
    """One takeover: returns a status dict; writes the episode itself (atomic) when there is one."""
    from wallwm_edge.data.episode import write_episode
    from wallwm_edge.sim.generate import build_episode, record_expert

    cfg, out, task, scene, index, r, policy_sha = args
    actor, env = _W["actor"], _env(task)
    k = takeover_step(cfg, task, scene, r)
    split = make_splits(("seen",), (task,))[0]
    ecfg = EvalConfig(max_steps=k, seed=cfg.seed * 1000 + r)  # the eval loop, stopped at step k
    plan = registry_plans("caption", ecfg.seed)[task] if actor.mode == "event" else None
    res = run_episode(env, actor, task, scene, split, ecfg, plan)
    status = {"task": task, "scene": scene, "takeover": k, "policy_steps": res.steps, "policy_progress": res.progress,
              "episode_id": None}
    if res.success:
        return status | {"status": "policy_succeeded"}
    arrays, trace, success = record_expert(env, env.observe())
    if not success:
        return status | {"status": "expert_failed"}
    if len(arrays["actions"]) < cfg.min_frames:
        return status | {"status": "too_short"}
    eid = f"{task}_d{index:05d}"
    ep = build_episode(env, task, eid, scene, arrays, trace, ("dagger",),
                       {"source": "dagger", "policy_sha256": policy_sha, "takeover_step": k, "policy_steps": res.steps,
                        "policy_progress": res.progress})
    write_episode(out, ep, overwrite=True)
    return status | {"status": "recorded", "episode_id": eid, "frames": ep.num_frames}


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of src into dst (copy where the filesystem cannot link)."""
    for dirpath, _, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            try:
                os.link(Path(dirpath) / f, dst / rel / f)
            except OSError:
                shutil.copy2(Path(dirpath) / f, dst / rel / f)


def collect(policy, data, out, cfg: DaggerConfig = DaggerConfig(), workers: int = 1, progress: bool = True) -> dict:
    """Takeovers of `policy` on every training scene of dataset `data`, written with data's episodes to `out`."""
    from tqdm import tqdm

    from wallwm_edge.data.check import validate_or_raise
    from wallwm_edge.data.dataset import Dataset
    from wallwm_edge.data.episode import sha256_file
    from wallwm_edge.events.vocab import SEEN_TASKS
    from wallwm_edge.model.checkpoint import model_path, read_header

    if not 0 <= cfg.min_takeover <= cfg.max_takeover < cfg.max_steps:
        raise ConfigError(f"takeover steps need 0 <= min ({cfg.min_takeover}) <= max ({cfg.max_takeover}) < max_steps ({cfg.max_steps})")
    if cfg.rollouts_per_scene < 1 or workers < 1:
        raise ConfigError(f"rollouts per scene and workers must be >= 1, got {cfg.rollouts_per_scene} and {workers}")
    ckpt = model_path(policy)
    mcfg = read_header(ckpt)["config"]  # ConfigError naming the file if it is not a checkpoint
    src = validate_or_raise(data)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not an empty folder (choose another --out)")
    # Scenes: the source's expert episodes of seen tasks (takeovers of an earlier round are not re-used).
    scenes = []
    for eid in src.episode_ids:
        ep = src.episode(eid)
        if ep.task in SEEN_TASKS and ep.extra.get("source") != "dagger":
            scenes.append((ep.task, int(ep.seed)))
    if not scenes:
        raise DataError(f"{src.root}: no expert episodes of seen tasks to start takeovers from")
    if list(mcfg["views"]) != src.views or list(mcfg["image_size"]) != list(src.image_size):
        raise ConfigError(f"{ckpt}: the policy sees views {mcfg['views']} at {mcfg['image_size']}, dataset {src.root} has "
                          f"{src.views} at {list(src.image_size)}")
    policy_sha = sha256_file(ckpt)
    t0 = time.perf_counter()
    results = []
    # takeovers render the scene as the source's episodes were rendered (datasets from before the goal
    # marker was enlarged record none: Meta-World's own marker)
    init = (str(ckpt), src.views, src.image_size, cfg.max_steps, float(src.info.get("generator", {}).get("goal_marker_m", 0.0)))
    with staged(out) as tmp:  # nothing half-written at --out
        _link_tree(src.root, tmp)
        jobs = []
        for t in sorted({t for t, _ in scenes}):
            seeds = [s for tt, s in scenes if tt == t]
            for i, s in enumerate(seeds):
                for r in range(cfg.rollouts_per_scene):
                    jobs.append((cfg, str(tmp), t, s, i * cfg.rollouts_per_scene + r, r, policy_sha))
        with tqdm(total=len(jobs), desc="dagger", unit="rollout", disable=not progress) as bar:
            if workers == 1:
                _init_worker(*init)
                for j in jobs:
                    results.append(_job(j))
                    bar.update(1)
            else:
                ctx = mp.get_context("spawn")  # MuJoCo's GL context and fork do not mix
                with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=init) as pool:
                    for r in pool.imap_unordered(_job, jobs):
                        results.append(r)
                        bar.update(1)
                        bar.set_postfix_str(f"recorded {sum(x['status'] == 'recorded' for x in results)}")
        ds = Dataset.open(tmp)
        ds.info["name"] = out.name
        # The source generator's fields stay on top ("seed" defines the seen scenes for `eval --data`).
        ds.finalize({**src.info.get("generator", {}), "dagger": {"source": str(src.root), "policy": str(ckpt),
                                                                "policy_sha256": policy_sha, **dataclasses.asdict(cfg)}})
    counts = {k: sum(r["status"] == k for r in results) for k in ("recorded", "policy_succeeded", "expert_failed", "too_short")}
    return {"out": str(out), "source_episodes": len(src), "rollouts": len(jobs), **counts,
            "frames": int(sum(r.get("frames", 0) for r in results)), "seconds": time.perf_counter() - t0,
            "mean_policy_progress": float(np.mean([r["policy_progress"] for r in results]))}
