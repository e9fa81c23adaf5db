"""Muon + AdamW against AdamW alone, at equal steps, same data order, same seed, same learning rate.

Both runs train the same preset on the same dataset with the same sampler sequence and flow noise
(the trainer's generators are seeded identically); only the optimizer differs: torch.optim.Muon on the
hidden weight matrices (+ AdamW on the rest) vs AdamW on everything. Figures: held-out loss after
training (fixed batches and noise, from frames the runs never sampled in order), the mean training
loss over the last 20% of steps, and the step-time ratio. Ratios < 1 favour Muon.

    python benchmarks/optimizer.py --data /path/to/dataset [--preset student] [--steps 300]
    python benchmarks/optimizer.py --quick        (generates a tiny Meta-World dataset, tiny preset)
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def eval_loss(trainer, batches: int, batch_size: int, seed: int = 999) -> dict:
    """Mean loss terms on fixed batches and noise (no gradient)."""
    import torch

    from wallwm_edge.train.trainer import unwrap

    model = unwrap(trainer.model).eval()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    totals: dict[str, float] = {}
    with torch.no_grad():
        for b in range(batches):
            rows = trainer.source.plan(rng, batch_size, position=10_000_019 + b * batch_size)  # far from training positions
            batch = {k: torch.from_numpy(v) for k, v in trainer.source.materialize(rows).items()}
            batch.update(model.draw_noise(batch_size, gen))
            for k, v in model.loss(batch).items():
                totals[k] = totals.get(k, 0.0) + v.item() / batches
    model.train()
    return totals


def train_one(data, out, optimizer: str, args) -> dict:
    import torch

    from wallwm_edge.train.samples import default_embedder, hash_embedder
    from wallwm_edge.train.trainer import LOG_FILE, TrainConfig, Trainer

    torch.set_num_threads(args.threads)
    tcfg = TrainConfig(preset=args.preset, steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=optimizer, muon_lr=args.muon_lr,
                       warmup=max(1, args.steps // 20), seed=args.seed, log_every=1, ckpt_every=10**9)
    embed = hash_embedder() if args.text_encoder == "hash" else default_embedder()
    tr = Trainer(data, out, tcfg, embed=embed, progress=not args.no_progress)
    t0 = time.perf_counter()
    summary = tr.run()
    wall = time.perf_counter() - t0
    with open(Path(out) / LOG_FILE) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    tail = losses[int(0.8 * len(losses)) :]
    ev = eval_loss(tr, args.eval_batches, args.batch_size)
    return {"params": summary["params"], "sec_per_step": wall / args.steps, "train_loss_first": losses[0],
            "train_loss_last20pct": float(np.mean(tail)), "eval": ev, "curve": losses}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="dataset folder (default: generate a tiny Meta-World dataset)")
    p.add_argument("--preset", default=None, help="model preset (default: student; tiny with --quick)")
    p.add_argument("--steps", type=int, default=None, help="steps per optimizer (default 300; 40 with --quick)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate (both runs)")
    p.add_argument("--muon-lr", type=float, default=1e-2, help="Muon learning rate (the trainer's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--text-encoder", default="minilm", choices=["minilm", "hash"])
    p.add_argument("--quick", action="store_true", help="small run that prints the same figures")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.preset = args.preset or ("tiny" if args.quick else "student")
    args.steps = args.steps or (40 if args.quick else 300)
    if args.quick:
        args.eval_batches = min(args.eval_batches, 4)

    from wallwm_edge.bench import write_result

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from wallwm_edge.sim.generate import generate_dataset

            data = Path(tmp) / "mw"
            generate_dataset(data, tasks=["pick-place-v3", "drawer-open-v3"], episodes_per_task=2, image_size=(64, 64),
                             views=("corner", "topview", "gripperPOV"), seed=0, workers=1, progress=False)
        runs = {opt: train_one(data, Path(tmp) / opt, opt, args) for opt in ("adamw", "muon")}

    a, m = runs["adamw"], runs["muon"]
    figures = {
        "preset": args.preset, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "muon_lr": args.muon_lr, "params": a["params"],
        "data": str(args.data or "generated: pick-place-v3, drawer-open-v3 x 2 episodes, 64x64"),
        "adamw_eval_loss": a["eval"]["loss"], "muon_eval_loss": m["eval"]["loss"],
        "muon_over_adamw_eval_loss": m["eval"]["loss"] / a["eval"]["loss"],
        "adamw_eval_action_loss": a["eval"]["action"], "muon_eval_action_loss": m["eval"]["action"],
        "muon_over_adamw_eval_action_loss": m["eval"]["action"] / a["eval"]["action"],
        "adamw_train_loss_last20pct": a["train_loss_last20pct"], "muon_train_loss_last20pct": m["train_loss_last20pct"],
        "muon_over_adamw_train_loss": m["train_loss_last20pct"] / a["train_loss_last20pct"],
        "train_loss_first": a["train_loss_first"],
        "adamw_sec_per_step": a["sec_per_step"], "muon_sec_per_step": m["sec_per_step"],
        "muon_over_adamw_step_time": m["sec_per_step"] / a["sec_per_step"],
        "curves_every_10_steps": {k: [round(x, 4) for x in v["curve"][9::10]] for k, v in runs.items()},
    }
    goals = {"muon_over_adamw_eval_loss": "<= 1.0 (Muon at least as good at equal steps)",
             "muon_over_adamw_step_time": "<= 1.5 (the orthogonalisation is cheap at these widths)"}
    met = {"muon_over_adamw_eval_loss": figures["muon_over_adamw_eval_loss"] <= 1.0,
           "muon_over_adamw_step_time": figures["muon_over_adamw_step_time"] <= 1.5}
    write_result("optimizer", figures, goals, met)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
