"""Closed-loop evaluation in Meta-World from the multi-view renders.

    results = evaluate(actor, EvalConfig(splits=("seen", "heldout_task"), episodes=5))

One episode: reset the env at the split's seed, then repeatedly give the actor the current observation
and an instruction, execute the chunk it returns, and feed every observation to the Task Progress
tracker. The episode ends at task success, at max_steps, or (event mode, plan_end="stop") when the
planner has run out of events: the policy has said it finished the last one.

- Event mode: the planner holds the task's events (from the registry or a plan file) and hands out the
  next event's text. Each chunk comes from a fresh observation; the end-of-event rule
  (wallwm_edge.events.end_rule) reads its p_end: "done" -> the planner advances and nothing of the chunk
  runs (the next event is asked on the same observation); otherwise the chunk runs up to its forecast
  end, at most `max_exec` steps. The planner also advances after `event_cap` steps (a hard bound).
- Unified mode: the task's instruction for the whole episode, fixed-length chunks, of which the same
  `max_exec` steps run before the next observation (both modes re-plan equally often).

Paired: the actor's noise restarts per (task, scene seed, cfg.seed) at every episode, so two conditions
evaluated with the same config see the same scenes AND the same noise (`noise_seed`).
"""

from __future__ import annotations

import functools
import random
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from wallwm_edge.events.end_rule import EndRule

from wallwm_edge.errors import ConfigError
from wallwm_edge.eval.report import EpisodeResult
from wallwm_edge.eval.splits import SPLITS, Split, make_splits, scene_seed
from wallwm_edge.runtime import planner as runtime_planner
from wallwm_edge.runtime.planner import EventPlanner, registry_catalog
from wallwm_edge.runtime.progress import ProgressTracker


@dataclass(frozen=True)
class EvalConfig:
    splits: tuple[str, ...] = SPLITS
    tasks: tuple[str, ...] | None = None  # None: every task of each split
    episodes: int = 5  # per task and split
    max_steps: int = 300  # per episode (Meta-World allows 500)
    event_cap: int = 120  # safety cap, env steps per event (experts' longest subtask here is ~100)
    # Event mode, once the policy has declared the plan's last event over without task success:
    # "stop" ends the episode (the literal protocol: the policy said it is done); "hold" keeps
    # re-issuing the last event until max_steps, the same time budget unified mode always gets.
    plan_end: str = "stop"
    # The end-of-event rule (wallwm_edge.events.end_rule.EndRule): done_threshold on p_end[0] of a fresh
    # observation ends the event; the chunk runs to its forecast end (cut_threshold), at most max_exec
    # steps. end_confirm / min_event_steps go to the planner (k "done" verdicts in a row; none before m steps).
    done_threshold: float = 0.5
    cut_threshold: float = 0.5
    max_exec: int = 8
    end_confirm: int = 1
    min_event_steps: int = 0
    views: tuple[str, ...] = ("corner", "topview", "gripperPOV")
    image_size: tuple[int, int] = (96, 96)
    jitter_pos_m: float = 0.02  # novel_scene camera jitter
    jitter_rot_deg: float = 3.0
    train_seed: int = 0  # the generator seed of the training data (the seen split replays its scenes)
    seed: int = 0  # instruction paraphrase draws
    exclude_seeds: frozenset = field(default_factory=frozenset)  # training seeds unseen scenes must avoid


INDEPENDENT_PHRASINGS = Path(__file__).with_name("independent_phrasings.json")


@functools.cache
def independent_phrasings() -> dict[str, tuple[str, ...]]:
    """Event key -> wordings written without the training templates (evaluation only, never trained on)."""
    import json

    doc = json.loads(INDEPENDENT_PHRASINGS.read_text())
    return {k: tuple(v) for k, v in doc["phrasings"].items()}


def task_catalog():
    """Every subtask event of the registry as planner texts (caption, paraphrases, held-out, independent)."""
    return registry_catalog(independent_phrasings())


def registry_plans(style: str = "caption", seed: int = 0):
    """A plan for every task of the event registry: its subtask events in order (any instruction style)."""
    return runtime_planner.registry_plans(style, seed, task_catalog())


def task_instruction(task: str, style: str, rng: random.Random) -> str:
    """Unified mode's instruction: the task-track caption (or one of its held-out paraphrases)."""
    from wallwm_edge.events.vocab import caption

    c = caption(f"task:{task}")
    if style == "independent":
        raise ConfigError("the independent_phrasing split words events only: evaluate an event-mode checkpoint on it")
    return c.text if style == "caption" else rng.choice(c.heldout_paraphrases)


def _step_quiet(env, action) -> dict:
    """env.step without rendering: frames between chunk starts are never looked at (~7 ms per view saved)."""
    renderer, env.renderer = env.renderer, None
    try:
        return env.step(action)
    finally:
        env.renderer = renderer


def noise_seed(task: str, seed: int, cfg: EvalConfig) -> int:
    """The actor's noise seed for one episode: a function of the scene and the config's seed only."""
    return zlib.crc32(f"{task}/{seed}/{cfg.seed}".encode())


def end_rule(cfg: EvalConfig) -> EndRule:
    return EndRule(cfg.done_threshold, cfg.cut_threshold, cfg.max_exec)


def run_episode(env, actor, task: str, seed: int, split: Split, cfg: EvalConfig, plan=None) -> EpisodeResult:
    rule = end_rule(cfg)
    tracker = ProgressTracker(task)
    obs = env.reset(seed)
    tracker.update(obs)
    actor.reset(env, tracker, noise_seed(task, seed, cfg))
    planner = EventPlanner(plan, max_steps_per_event=cfg.event_cap, end_confirm=cfg.end_confirm,
                           min_event_steps=cfg.min_event_steps) if actor.mode == "event" else None
    instruction = None if planner else task_instruction(task, split.style, random.Random(f"{task}/{seed}/{cfg.seed}"))
    needs_images = getattr(actor, "needs_images", True)
    steps = 0
    while steps < cfg.max_steps and not tracker.success:
        holding = planner is not None and planner.done
        if holding and cfg.plan_end == "stop":
            break  # the policy declared the last event over: the task is over
        if planner and not holding:
            instruction = planner.instruction  # ("hold" keeps re-issuing the last event's text after the plan)
        actions, end_prob = actor.act(obs, instruction)
        if planner and not holding and planner.observe(rule.is_done(end_prob)):
            continue  # the event is over on this observation: ask for the next one (bounded by the plan's length)
        n = rule.length(end_prob) if actor.mode == "event" else min(len(actions), cfg.max_exec)
        if planner and not holding:
            n = min(n, planner.cap)
        n = min(n, cfg.max_steps - steps)
        executed = 0
        for i in range(n):
            last = i == n - 1
            obs = env.step(actions[i]) if last and needs_images else _step_quiet(env, actions[i])
            executed += 1
            tracker.update(obs)
            if tracker.success:
                break
        steps += executed
        if planner and not holding:
            planner.executed(executed)
    events = []
    if planner:
        for h in planner.history:
            events.append({"key": h.key, "instruction": h.instruction, "start": h.start, "end": h.end, "reason": h.reason})
    # Plan steps and scored events are matched by key (a plan file may word, order or split them differently).
    done = dict(zip(tracker.keys, tracker.completed_at))
    for e in events:
        if e["key"] in done:
            e["completed_at"] = done.pop(e["key"])
    events += [{"key": k, "completed_at": t} for k, t in done.items()]
    return EpisodeResult(split.name, task, int(seed), bool(tracker.success), tracker.completed, tracker.total, steps, events)


def resolve_config(actor, cfg: EvalConfig) -> EvalConfig:
    """The config as it will run: a checkpoint renders at its own views and image size (cfg's are for the
    reference policies), so what is recorded is what was evaluated."""
    if getattr(actor, "views", None):
        return replace(cfg, views=tuple(actor.views), image_size=tuple(actor.image_size))
    return cfg


def evaluate(actor, cfg: EvalConfig, plans=None, progress: bool = True) -> list[EpisodeResult]:
    """Every (split, task, episode) in a fixed order; returns the episode results."""
    from tqdm import tqdm

    from wallwm_edge.sim.metaworld_env import ACTION_DIM, PROPRIO_DIM, MetaWorldEnv, SimConfig

    if cfg.plan_end not in ("stop", "hold"):
        raise ConfigError(f"plan_end must be 'stop' or 'hold', got {cfg.plan_end!r}")
    if cfg.episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {cfg.episodes}")
    if actor.action_dim != ACTION_DIM:
        raise ConfigError(f"the policy's action dim is {actor.action_dim}, the Meta-World env's is {ACTION_DIM} (dx, dy, dz, gripper)")
    end_rule(cfg)  # a bad rule is refused before any env is built
    resolved = resolve_config(actor, cfg)
    views, image_size = resolved.views, resolved.image_size
    splits = make_splits(cfg.splits, cfg.tasks)
    jobs = [(s, t, i) for s in splits for t in s.tasks for i in range(cfg.episodes)]
    envs: dict = {}
    results = []
    bar = tqdm(total=len(jobs), desc="eval", unit="ep", disable=not progress)
    try:
        for split, task, i in jobs:
            key = (task, split.jitter)
            if key not in envs:
                jp, jr = (cfg.jitter_pos_m, cfg.jitter_rot_deg) if split.jitter else (0.0, 0.0)
                env = MetaWorldEnv(SimConfig(task=task, views=tuple(views), image_size=tuple(image_size), max_steps=cfg.max_steps,
                                             jitter_pos_m=jp, jitter_rot_deg=jr, render=getattr(actor, "needs_images", True)))
                if hasattr(actor, "check_env"):
                    actor.check_env(env.config.views, ACTION_DIM, PROPRIO_DIM, env.config.image_size)
                envs[key] = env
            seed = scene_seed(split, task, i, cfg.train_seed)
            if not split.training_scenes and seed in cfg.exclude_seeds:
                raise ConfigError(f"unseen-scene seed {seed} of {task} #{i} is a training seed; change --train-seed")
            plan = None
            if actor.mode == "event":
                plan = _plan_for(plans, task, split.style, cfg.seed * 100_003 + i)  # wordings drawn per episode
            results.append(run_episode(envs[key], actor, task, seed, split, cfg, plan))
            r = results[-1]
            bar.set_postfix_str(f"{split.name} {task} TP={r.progress:.0f} ok={int(r.success)}")
            bar.update(1)
    finally:
        bar.close()
        for env in envs.values():
            env.close()
    return results


def _plan_for(plans, task: str, style: str, seed: int):
    """The task's plan (from a plan file if given, else the registry), in the split's instruction style."""
    if plans is not None:
        if task not in plans:
            raise ConfigError(f"the plan file has no plan for task {task!r}; it has {sorted(plans)}")
        return plans[task].restyled(task_catalog(), style, seed) if style != "caption" else plans[task]
    return registry_plans(style, seed)[task]
