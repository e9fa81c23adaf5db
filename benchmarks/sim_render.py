"""Simulated camera cost: ms per rendered view with our fast settings vs Meta-World's visual defaults,
physics ms per step, and expert-episode generation rate.

Side by side in one run, same model, same states (MUJOCO_GL as set, osmesa by default):
  - default: a mujoco.Renderer on Meta-World's model as shipped (shadows, reflections, multisampling),
  - fast: what MetaWorldEnv uses (offsamples = 0, shadowsize = 0, shadow and reflection flags off).
Then the rate of `generate_dataset` (one process, 3 views) on pick-place-v3.

    python benchmarks/sim_render.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wallwm_edge.bench import write_result
from wallwm_edge.sim.generate import generate_dataset
from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

VIEWS = ("corner", "topview", "gripperPOV")


def time_views(render_all, n_views: int, reps: int) -> tuple[float, float]:
    """(median wall ms, mean process-CPU ms) per view over `reps` rounds of rendering every camera.
    CPU time is reported too because the benchmark machines are shared: wall time includes waiting."""
    wall = []
    c0 = time.process_time()
    for _ in range(reps):
        t = time.perf_counter()
        render_all()
        wall.append((time.perf_counter() - t) / n_views)
    cpu = (time.process_time() - c0) / (reps * n_views)
    return 1e3 * float(np.median(wall)), 1e3 * cpu


def main(argv=None) -> int:
    import mujoco

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and episodes")
    args = ap.parse_args(argv)
    reps, n_eps = (10, 2) if args.quick else (40, 6)
    figures = {}
    for size in (64, 96):
        env = MetaWorldEnv(SimConfig(task="pick-place-v3", views=VIEWS, image_size=(size, size), render=False))
        env.reset(seed=0)
        default = mujoco.Renderer(env.model, height=size, width=size)  # Meta-World's visual settings

        def render_default():
            for i in env.cam_ids:
                default.update_scene(env.data, camera=i)
                default.render()

        ms_default, cpu_default = time_views(render_default, len(VIEWS), reps)
        default.close()
        env.close()
        fast_env = MetaWorldEnv(SimConfig(task="pick-place-v3", views=VIEWS, image_size=(size, size)))
        fast_env.reset(seed=0)
        ms_fast, cpu_fast = time_views(fast_env.render, len(VIEWS), reps)
        fast_env.close()
        figures[f"cpu_ms_per_view_default_{size}px"] = cpu_default
        figures[f"cpu_ms_per_view_fast_{size}px"] = cpu_fast
        figures[f"ms_per_view_default_{size}px"] = ms_default
        figures[f"ms_per_view_fast_{size}px"] = ms_fast
        figures[f"speedup_fast_over_default_{size}px"] = ms_default / ms_fast
    env = MetaWorldEnv(SimConfig(task="pick-place-v3", render=False))
    env.reset(seed=0)
    t = time.perf_counter()
    n = 0
    while not env.done and n < 100:
        env.step(env.expert_action())
        n += 1
    figures["ms_per_physics_step_with_expert"] = 1e3 * (time.perf_counter() - t) / n
    env.close()
    with tempfile.TemporaryDirectory() as tmp:
        s = generate_dataset(Path(tmp) / "mw", tasks=["pick-place-v3"], episodes_per_task=n_eps, image_size=(96, 96),
                             views=VIEWS, seed=0, workers=1, progress=False)
    figures["generation_episodes_per_min_1_worker_3x96px"] = s["episodes_per_min"]
    figures["generation_frames_per_s_1_worker_3x96px"] = s["frames"] / s["seconds"]
    goals = {"cpu_ms_per_view_fast_96px": "<= 10 (MEASUREMENTS.md: ~7 wall on an idle machine)", "speedup_fast_over_default_96px": ">= 4"}
    met = {"cpu_ms_per_view_fast_96px": figures["cpu_ms_per_view_fast_96px"] <= 10,
           "speedup_fast_over_default_96px": figures["speedup_fast_over_default_96px"] >= 4}
    write_result("sim_render", figures, goals, met)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
