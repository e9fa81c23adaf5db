"""`wallwm-edge distill`: teacher -> student (quantizing the exported student is `wallwm-edge quantize`, in export/cli.py)."""

from __future__ import annotations

import argparse
import json


DISTILL_EXAMPLES = """\
examples:
  wallwm-edge distill --teacher checkpoints/teacher --data data/mw --out runs/student
  wallwm-edge distill --teacher runs/teacher --data data/mw --out runs/student --steps 2000 --student-steps 1
  wallwm-edge distill --teacher runs/student --data data/mw --out runs/student --resume --steps 3000
  wallwm-edge distill --teacher ext.pt --teacher-config teacher --key-map keymap.json --data data/mw --out runs/s
  wallwm-edge distill --teacher ws://gpu-box:8000 --data data/mw --out runs/student    (a served teacher: `wallwm-edge serve`)

writes RUN/model.safetensors (a normal checkpoint: eval, export and Policy take it), RUN/distill_state.safetensors
(resume), RUN/{train,eval}_teacher_targets.safetensors (the teacher's labels, reused on resume).
A key map is JSON {"rules": [[regex, replacement], ...], "drop": [regex, ...]} or python:module:function.
"""

def register(sub) -> None:
    p = sub.add_parser("distill", help="distill a teacher checkpoint into a 1-2 step student",
                       description="Trajectory distillation: the teacher's K Euler steps -> the student's S steps, with the "
                                   "width/depth reduction to the student preset.\n\n" + DISTILL_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="teacher checkpoint (model.safetensors or run folder; external with --teacher-config), "
                   "or ws://HOST:PORT of a teacher served by `wallwm-edge serve` (labels over the network)")
    p.add_argument("--data", required=True, help="dataset the teacher labels (validated first)")
    p.add_argument("--out", required=True, help="run folder of the student")
    p.add_argument("--preset", default="auto", help="student preset (default auto: student when it fits the teacher, else the "
                   "teacher's own preset, e.g. tiny for a tiny teacher)")
    p.add_argument("--student-steps", type=int, default=None, help="student flow steps S (default: 2 for a teacher of 4 or more "
                   "steps, else 1); fewer than the teacher's")
    p.add_argument("--teacher-steps", type=int, default=None, help="teacher Euler steps K (default: the teacher's flow_steps)")
    p.add_argument("--samples", type=int, default=2048, help="dataset samples labelled by the teacher (default 2048; more labels beat more steps)")
    p.add_argument("--eval-samples", type=int, default=64, help="held-out labelled samples for the error report (default 64)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default 1000; on --resume: the saved total)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "muon"])
    p.add_argument("--init", default=None, help="student init: slice (default for a checkpoint: cut from the teacher's weights), "
                   "scratch (default for a served teacher, whose weights stay on its server), or a student checkpoint to "
                   "warm-start from (e.g. re-distilling from a newer teacher)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--stop-at", type=int, default=None, help="stop (and checkpoint) at this step; --resume later")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--teacher-config", default=None, help="external teacher: preset name or config JSON")
    p.add_argument("--key-map", default=None, help="external teacher: key-map JSON or python:module:function")
    p.add_argument("--text-encoder", default="minilm", choices=["minilm", "hash"], help="must match the teacher's training (default minilm)")
    p.add_argument("--track", default="subtask")
    p.add_argument("--split", default="auto", help="episodes with this split tag (default auto: the teacher's training split; 'all' for every episode)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--label-batch", type=int, default=32, help="samples per teacher call (one request to a served teacher; default 32)")
    p.add_argument("--teacher-timeout", type=float, default=60.0, help="served teacher: seconds to wait for one answer (default 60)")
    p.add_argument("--teacher-retries", type=int, default=2, help="served teacher: retries of a failed connect or request (default 2)")
    p.set_defaults(func=run_distill)


def run_distill(args) -> int:
    import torch

    from wallwm_edge.errors import ConfigError
    from wallwm_edge.serve.client import ClientConfig
    from wallwm_edge.train.distill import DistillConfig, Distiller, KeyMap
    from wallwm_edge.train.samples import default_embedder, hash_embedder

    if args.threads:
        torch.set_num_threads(args.threads)
    remote = args.teacher.startswith(("ws://", "wss://"))
    if remote and (args.teacher_config or args.key_map):
        raise ConfigError(f"--teacher-config and --key-map apply to a teacher checkpoint, not to a served teacher ({args.teacher})")
    if args.label_batch < 1 or args.teacher_retries < 0 or not args.teacher_timeout > 0:
        raise ConfigError("--label-batch must be >= 1, --teacher-retries >= 0 and --teacher-timeout > 0")
    client_cfg = ClientConfig(timeout_s=args.teacher_timeout, connect_timeout_s=min(10.0, args.teacher_timeout), retries=args.teacher_retries)
    teacher_cfg = None
    if args.teacher_config:
        teacher_cfg = _teacher_config(args.teacher_config, args.data)
    if args.resume:
        dcfg = DistillConfig(steps=args.steps) if args.steps else None
    else:
        dcfg = DistillConfig(student_preset=args.preset, student_steps=args.student_steps, teacher_steps=args.teacher_steps,
                             samples=args.samples, eval_samples=args.eval_samples, steps=args.steps or 1000,
                             batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, optimizer=args.optimizer,
                             init=args.init or ("scratch" if remote else "slice"), seed=args.seed, track=args.track, ckpt_every=args.ckpt_every,
                             split=None if args.split == "all" else args.split, label_batch=args.label_batch)
    embed = hash_embedder() if args.text_encoder == "hash" else default_embedder()
    d = Distiller(args.teacher, args.data, args.out, dcfg, embed=embed, key_map=KeyMap.load(args.key_map),
                  teacher_config=teacher_cfg, resume=args.resume, text_encoder=args.text_encoder, client_cfg=client_cfg)
    s = d.run(until=args.stop_at)
    print(json.dumps({"step": s["step"], "teacher_steps": s["teacher_steps"], "student_steps": s["student_steps"],
                      "error_before": s["initial"], "error_after": s["final"], "sec_per_step": round(s["sec_per_step"], 4), "out": s["out"]}))
    return 0


def _teacher_config(spec: str, data: str):
    """A preset name or a ModelConfig JSON, resolved to the dataset's views and sizes."""
    from pathlib import Path

    from wallwm_edge.data.dataset import Dataset
    from wallwm_edge.errors import ConfigError
    from wallwm_edge.model.presets import ModelConfig, resolve

    ds = Dataset.open(data)
    fields = dict(views=ds.views, image_size=ds.image_size, action_dim=ds.info["action_dim"], proprio_dim=ds.info["proprio_dim"])
    if Path(spec).exists() and not Path(spec).is_dir():  # a file (or a FIFO, refused unread); else a preset name
        from wallwm_edge.validate import describe, load_json

        d = load_json(spec, ConfigError)
        if not isinstance(d, dict):
            raise ConfigError(f"{spec}: teacher config must be a JSON object, got {describe(d)}")
        from wallwm_edge.model.checkpoint import CONFIG_SPEC
        from wallwm_edge.validate import require

        require(d, CONFIG_SPEC, f"{spec}: ", ConfigError)
        try:
            return ModelConfig.from_json(d)
        except ConfigError as e:
            raise ConfigError(f"{spec}: {e}") from None
        except (TypeError, ValueError, ZeroDivisionError) as e:
            raise ConfigError(f"{spec}: teacher config is malformed ({e})") from None
    return resolve(spec, **fields)
