"""`wallwm-edge eval`: closed-loop success rate and Task Progress per task and split, as a table and JSON."""

from __future__ import annotations

import argparse

from wallwm_edge.eval.closed_loop import EvalConfig

EXAMPLES = """\
examples:
  wallwm-edge eval checkpoints/teacher --episodes 5 --out runs/teacher_eval.json
  wallwm-edge eval runs/fixed --splits novel_scene,heldout_task --episodes 3     (a unified-mode run)
  wallwm-edge eval expert --episodes 2        (the scripted expert: validates the metric, ~100 TP)
  wallwm-edge eval noop --episodes 2          (a do-nothing policy: ~0 TP)
  wallwm-edge eval runs/teacher --plan plans.yaml --splits seen --tasks pick-place-v3
  wallwm-edge eval checkpoints/teacher --splits seen,independent_phrasing --episodes 10   (own captions vs others' words)

splits: seen (seen tasks, training scenes), novel_scene (unseen seeds + camera jitter),
        heldout_paraphrase (training scenes, held-out instruction paraphrases),
        heldout_task (tasks never seen whole, built from seen events),
        independent_phrasing (the seen split's scenes and noise, events worded by people who never saw the
        training templates: wallwm_edge/eval/independent_phrasings.json; event mode only)
Paired: the policy's noise restarts per (task, scene, --seed), so splits and checkpoints compare pairwise.
Task Progress = % of the task's subtask events completed in order, judged from simulator state
(wallwm_edge/runtime/progress.py); success = Meta-World's success flag.
"""


def register(sub) -> None:
    p = sub.add_parser("eval", help="closed-loop evaluation in Meta-World (success rate, Task Progress)",
                       description="Run a policy closed-loop in Meta-World from its multi-view renders; event mode follows the "
                       "event planner, unified mode gets the task instruction.\n\n" + EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", help="checkpoint (model.safetensors or run folder), or 'expert' / 'noop' reference policies")
    p.add_argument("--splits", default="seen,novel_scene,heldout_paraphrase,heldout_task", help="comma-separated splits (default: all four)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks to keep (default: every task of each split)")
    p.add_argument("--episodes", type=int, default=5, help="episodes per task and split (default 5)")
    p.add_argument("--max-steps", type=int, default=300, help="env steps per episode (default 300)")
    p.add_argument("--event-cap", type=int, default=120, help="event mode: safety cap of env steps per event (default 120)")
    p.add_argument("--plan-end", default="stop", choices=["stop", "hold"],
                   help="event mode after the last event is declared over without success: stop the episode (default), "
                   "or hold = keep re-issuing the last event until --max-steps (unified mode's time budget)")
    p.add_argument("--done-threshold", type=float, default=EvalConfig.done_threshold,
                   help=f"event mode: the event is over when p_end[0] of a fresh observation exceeds this (default {EvalConfig.done_threshold})")
    p.add_argument("--cut-threshold", type=float, default=EvalConfig.cut_threshold,
                   help=f"event mode: a chunk runs to its first step whose p_end exceeds this (default {EvalConfig.cut_threshold})")
    p.add_argument("--max-exec", type=int, default=EvalConfig.max_exec,
                   help=f"steps of a chunk executed before the next observation, both modes (default {EvalConfig.max_exec})")
    p.add_argument("--end-confirm", type=int, default=1,
                   help="event mode: fresh observations in a row that must say 'done' before the planner advances (default 1)")
    p.add_argument("--min-event-steps", type=int, default=0,
                   help="event mode: 'done' verdicts before an event has run this many env steps are ignored (default 0)")
    p.add_argument("--plan", default=None, help="plan file (JSON/YAML: task -> event keys or captions); default: the registry's")
    p.add_argument("--data", default=None, help="the training dataset: its generator seed defines the seen scenes, and unseen "
                   "scenes are checked against its seeds")
    p.add_argument("--train-seed", type=int, default=None, help="generator seed of the training data (default: from --data, else 0)")
    p.add_argument("--size", default=None, help="image size for the reference policies (default 96); a checkpoint is always "
                   "evaluated at its own size and views, which the results JSON records")
    p.add_argument("--jitter-pos", type=float, default=0.02, help="novel_scene camera position jitter, metres (default 0.02)")
    p.add_argument("--jitter-rot", type=float, default=3.0, help="novel_scene camera rotation jitter, degrees (default 3)")
    p.add_argument("--flow-steps", type=int, default=None, help="denoising steps (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the paraphrase draws and the policy's noise (default 0)")
    p.add_argument("--text-encoder", default="minilm", choices=["minilm", "hash"],
                   help="instruction encoder the checkpoint was trained with (default minilm; hash for --text-encoder hash runs)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--out", default=None, help="write the results JSON here")
    p.set_defaults(func=run)
    register_dagger(sub)


def _list(s):
    return tuple(x.strip() for x in s.split(",") if x.strip()) if s else None


def run(args) -> int:
    import json
    import sys

    from wallwm_edge.errors import ConfigError
    from wallwm_edge.eval.actors import make_actor
    from wallwm_edge.eval.closed_loop import EvalConfig, evaluate, resolve_config, task_catalog
    from wallwm_edge.eval.report import format_table, summarize, write_json
    from wallwm_edge.eval.splits import SPLITS, plan_splits

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    train_seed, exclude = args.train_seed, frozenset()
    if args.data:
        from wallwm_edge.data.dataset import Dataset

        ds = Dataset.open(args.data)
        exclude = frozenset(int(ep.seed) for ep in ds)  # episodes open memory-mapped: only meta.json is read
        if train_seed is None:
            train_seed = int((ds.info.get("generator") or {}).get("seed", 0))
    size = (args.size or "96").lower().split("x")
    try:
        image_size = (int(size[0]), int(size[-1]))
    except ValueError:
        raise ConfigError(f"--size must be N or HxW, got {args.size!r}") from None
    # Before any model loads: --tasks may empty a requested split (seen tasks only -> no heldout_task);
    # say so, and refuse when nothing is left (plan_splits raises), never a quietly smaller evaluation.
    requested = _list(args.splits) or SPLITS
    kept, dropped = plan_splits(requested, _list(args.tasks))
    for name, why in dropped.items():
        print(f"eval: split {name} not evaluated: {why}", file=sys.stderr)
    plans = None
    if args.plan:
        from wallwm_edge.runtime.planner import load_plans

        plans = load_plans(args.plan, task_catalog())
    cfg = EvalConfig(splits=requested, tasks=_list(args.tasks), episodes=args.episodes, max_steps=args.max_steps,
                     event_cap=args.event_cap, plan_end=args.plan_end,
                     done_threshold=args.done_threshold, cut_threshold=args.cut_threshold, max_exec=args.max_exec, end_confirm=args.end_confirm, min_event_steps=args.min_event_steps, image_size=image_size, jitter_pos_m=args.jitter_pos, jitter_rot_deg=args.jitter_rot,
                     train_seed=train_seed or 0, seed=args.seed, exclude_seeds=exclude)
    actor = make_actor(args.policy, flow_steps=args.flow_steps, seed=args.seed, text_encoder=args.text_encoder)
    resolved = resolve_config(actor, cfg)
    if args.size and resolved.image_size != image_size:
        print(f"eval: --size {args.size} ignored: the checkpoint is evaluated at its own "
              f"{resolved.image_size[0]}x{resolved.image_size[1]}", file=sys.stderr)
    cfg = resolved
    results = evaluate(actor, cfg, plans=plans)
    summary = summarize(results)
    print(format_table(summary))
    if args.out:
        config = {k: (sorted(v) if isinstance(v, frozenset) else v) for k, v in cfg.__dict__.items() if k != "exclude_seeds"}
        # "splits": those evaluated; what was asked for and what --tasks emptied are kept beside them.
        config.update(splits=[s.name for s in kept], splits_requested=list(requested), splits_dropped=dropped)
        meta = {"policy": args.policy, "mode": actor.mode, "config": config}
        path = write_json(args.out, summary, results, meta)
        print(f"wrote {path}")
    if "generalization" in summary:
        g = summary["generalization"]
        print(json.dumps({"generalization_task_progress": round(g["task_progress"], 2), "generalization_splits": g["splits"],
                          "generalization_missing": g["missing"]}))
    return 0


DAGGER_EXAMPLES = """\
examples:
  wallwm-edge dagger checkpoints/teacher --data data/mw --out data/mw_dagger --rollouts 2 --workers 2
  wallwm-edge train data/mw_dagger --out runs/teacher_dg --init checkpoints/teacher --steps 6000 --threads 1

One rollout: a training scene of --data, the policy closed loop (as in eval) for k steps, k uniform in
[--min-takeover, --max-takeover]; then the scripted expert finishes the task and that takeover is recorded
as a new episode (tag "dagger"). --out holds --data's episodes (hard links) plus the takeovers.
"""


def register_dagger(sub) -> None:
    from wallwm_edge.eval.dagger import DaggerConfig

    d = DaggerConfig()
    p = sub.add_parser("dagger", help="on-policy data: the policy drives, the scripted expert takes over (DAgger)",
                       description="Collect DAgger takeovers of a checkpoint on the training scenes of a dataset.\n\n" + DAGGER_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", help="checkpoint (model.safetensors or run folder)")
    p.add_argument("--data", required=True, help="the dataset the policy was trained on (its scenes are replayed)")
    p.add_argument("--out", required=True, help="new dataset folder: --data's episodes plus the takeovers")
    p.add_argument("--rollouts", type=int, default=d.rollouts_per_scene, help=f"takeovers per scene (default {d.rollouts_per_scene})")
    p.add_argument("--min-takeover", type=int, default=d.min_takeover, help=f"fewest policy steps before the takeover (default {d.min_takeover})")
    p.add_argument("--max-takeover", type=int, default=d.max_takeover, help=f"most policy steps before the takeover (default {d.max_takeover})")
    p.add_argument("--seed", type=int, default=d.seed, help="takeover steps, policy noise and instruction draws (default 0)")
    p.add_argument("--workers", type=int, default=1, help="processes, one torch thread each (default 1)")
    p.set_defaults(func=run_dagger)


def run_dagger(args) -> int:
    import json

    from wallwm_edge.eval.dagger import DaggerConfig, collect

    cfg = DaggerConfig(rollouts_per_scene=args.rollouts, min_takeover=args.min_takeover, max_takeover=args.max_takeover, seed=args.seed)
    summary = collect(args.policy, args.data, args.out, cfg, workers=args.workers)
    print(json.dumps(summary))
    print(f"next: wallwm-edge train {args.out} --out runs/dagger --init {args.policy} --steps 6000 --threads 1")
    return 0
