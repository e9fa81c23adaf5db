"""`wallwm-edge train`: train the WALL-WM denoiser on a dataset (one process, or DDP under torchrun)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

EXAMPLES = """\
examples:
  wallwm-edge train data/mw --out runs/teacher --preset teacher --steps 2000 --threads 1
  wallwm-edge train data/mw --out runs/fixed --preset teacher --mode unified      (fixed-chunk ablation)
  wallwm-edge train data/mw --out runs/teacher --resume --steps 4000             (exact resume, extend)
  wallwm-edge train data/mw_dagger --out runs/ft --init checkpoints/teacher --steps 6000   (fine-tune, e.g. on DAgger data)
  torchrun --nproc-per-node 2 -m wallwm_edge.cli train data/mw --out runs/ddp    (DDP, gloo on CPU)

writes RUN/model.safetensors (Policy.from_checkpoint), RUN/train_state.safetensors (resume), RUN/loss.csv
"""


def register(sub) -> None:
    p = sub.add_parser("train", help="train the event-grounded video-action denoiser",
                       description="Train WALL-WM (Muon on hidden matrices + AdamW) on a wallwm-dataset/1 folder.\n\n" + EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="dataset folder (validated before training)")
    p.add_argument("--out", required=True, help="run folder for checkpoints and loss.csv")
    p.add_argument("--preset", default="tiny", help="model preset: tiny, student, teacher (default tiny)")
    p.add_argument("--mode", default="event", choices=["event", "unified"],
                   help="event: events + next-event instruction (default); unified: fixed chunks + task instruction")
    p.add_argument("--steps", type=int, default=None, help="total optimizer steps (default 2000; on --resume: the saved total)")
    p.add_argument("--batch-size", type=int, default=16, help="global batch, split over processes (default 16)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default 3e-3)")
    p.add_argument("--muon-lr", type=float, default=1e-2, help="peak Muon learning rate (default 1e-2)")
    p.add_argument("--optimizer", default="muon", choices=["muon", "adamw"], help="muon = Muon + AdamW (default)")
    p.add_argument("--warmup", type=int, default=50, help="warmup steps (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--track", default="subtask", help="event track defining training events (default subtask)")
    p.add_argument("--split", default=None, help="train only on episodes with this split tag")
    p.add_argument("--horizon", type=int, default=None, help="override the preset's L_max / chunk length")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="fine-tune: start from this checkpoint's weights and model (fresh optimizer and schedule; --preset unused)")
    p.add_argument("--goal-loss", type=float, default=None, metavar="W",
                   help="weight of the auxiliary goal probe (simulated datasets: the action tower regresses the scene's goal "
                        "position; training-only). Default: TrainConfig's, 0 = off")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--stop-at", type=int, default=None, help="stop (and checkpoint) at this step; resume later")
    p.add_argument("--ckpt-every", type=int, default=200, help="checkpoint period in steps (default 200)")
    p.add_argument("--log-every", type=int, default=10, help="loss.csv period in steps (default 10)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's). On a shared 2-core machine use 1: 2 threads measured 3-25x slower per step under load")
    p.add_argument("--text-encoder", default="minilm", choices=["minilm", "hash"],
                   help="minilm: the 384-d sentence encoder (default); hash: trigram hashing, for quick checks only")
    p.add_argument("--backend", default=None, help="torch.distributed backend under torchrun (default: nccl on CUDA, else gloo)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto: the GPU when torch sees one)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from wallwm_edge.train.samples import default_embedder, hash_embedder
    from wallwm_edge.train.trainer import TrainConfig, Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group(args.backend or ("nccl" if args.device != "cpu" and torch.cuda.is_available() else "gloo"))
    overrides = (("horizon", args.horizon),) if args.horizon else ()
    tcfg = TrainConfig(preset=args.preset, mode=args.mode, steps=args.steps or 2000, batch_size=args.batch_size, lr=args.lr,
                       muon_lr=args.muon_lr, optimizer=args.optimizer, warmup=args.warmup, seed=args.seed, track=args.track,
                       split=args.split, ckpt_every=args.ckpt_every, log_every=args.log_every, model_overrides=overrides,
                       init=str(args.init) if args.init else None,
                       goal_loss=TrainConfig.goal_loss if args.goal_loss is None else args.goal_loss)
    embed = hash_embedder() if args.text_encoder == "hash" else default_embedder()
    try:
        if args.resume:  # the saved recipe is used; only --steps may extend it
            tcfg = TrainConfig(steps=args.steps) if args.steps else None
        trainer = Trainer(args.data, args.out, tcfg, embed=embed, resume=args.resume, device=args.device)
        summary = trainer.run(until=args.stop_at)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if trainer.rank == 0:
        print(json.dumps({k: summary[k] for k in ("step", "params", "sec_per_step", "out")} | {"loss_first": summary["first"] and summary["first"]["loss"], "loss_last": summary["last"] and summary["last"]["loss"]}))
        print(next_hint(args.data, summary["out"], summary["step"], trainer.tcfg.steps))
    return 0


def next_hint(data: str, out: str, step: int, planned: int) -> str:
    """The `next:` line: resume a run stopped before its planned steps, else evaluate and distill it."""
    if step < planned:
        return f"next: wallwm-edge train {data} --out {out} --resume    (step {step} of {planned})"
    return f"next: wallwm-edge eval {out} --data {data}    then: wallwm-edge distill --teacher {out} --data {data} --out {Path(out).parent / 'student'}"
