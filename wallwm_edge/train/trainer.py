"""The trainer: `wallwm-edge train DATA --out RUN` (one process) or under torchrun (DDP, gloo or nccl).

    validate dataset -> samples (events or fixed chunks) -> fit autoencoder + normalizers (once)
    -> loop: plan global batch -> this rank's rows -> joint flow loss -> Muon + AdamW step
    -> RUN/model.safetensors (policy), RUN/train_state.safetensors (exact resume), RUN/loss.csv

Exactness: every random choice comes from two generators seeded by `seed` (numpy for the batch plan,
torch for flow time and noise), both drawn for the GLOBAL batch on every rank and saved with the
optimizer state. So N steps == N/2 steps + resume + N/2 steps, and P processes compute the same
gradient as one process on the same global batch (tests/train check both).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wallwm_edge.errors import ConfigError
from wallwm_edge.model.checkpoint import MODEL_FILE, load_model, read_header, save_model
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.model.presets import ModelConfig, resolve
from wallwm_edge.sim.metaworld_env import scene_goals
from wallwm_edge.train.optim import lr_factor, make_optimizers, set_lr
from wallwm_edge.train.samples import Embedder, SampleSource, dataset_fingerprint
from wallwm_edge.train.state import STATE_FILE, load_train_state, save_train_state

LOG_FILE = "loss.csv"
LOG_FIELDS = ["step", "loss", "video", "action", "end", "lr", "sec_per_step"]


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "tiny"
    mode: str = "event"  # "event" (events, next-event instruction) or "unified" (fixed chunks, task instruction)
    steps: int = 2000
    batch_size: int = 16  # GLOBAL batch: split evenly over processes
    lr: float = 3e-3  # AdamW (embeddings, heads, norms, biases); best of {1e-3, 3e-3} for student at 200 steps
    muon_lr: float | None = 1e-2  # Muon (match_rms_adamw); None = lr. Chosen by the same sweep (benchmarks/optimizer.py)
    weight_decay: float = 0.01
    warmup: int = 50
    grad_clip: float = 1.0
    optimizer: str = "muon"  # "muon" (Muon on hidden matrices + AdamW) or "adamw"
    ns_dtype: str = "auto"  # Muon's Newton-Schulz dtype: "auto" = bfloat16 only where the hardware has it (optim.py)
    seed: int = 0
    track: str = "subtask"  # event track that defines training events (event mode)
    split: str | None = None  # train only on episodes with this split tag (None: all)
    paraphrases: bool = True
    done_fraction: float = 0.25  # event mode: share of samples drawn AFTER their event's end (samples.py)
    clusters: int = 8  # k-means clusters of captions for cluster-balanced sampling
    ae_frames: int = 256  # random frames the patch autoencoder is fitted on
    log_every: int = 10
    ckpt_every: int = 200
    model_overrides: tuple[tuple[str, object], ...] = ()  # e.g. (("horizon", 24),)
    # Fine-tune: start from this checkpoint's weights, model config, autoencoder and normalizers (fresh
    # optimizers and schedule); preset and model_overrides are then unused. None: train from scratch.
    init: str | None = None
    # Auxiliary goal probe (simulated datasets only): a linear probe on the action tower's instruction token
    # regresses the scene's goal position, weight goal_loss. Measured: a fine-tuned teacher's actions did
    # not change at all when the goal marker moved (it had learned each task's mean path), so the action
    # tower is made to gather where the goal is. The probe is training-only: not in the checkpoint.
    goal_loss: float = 0.0

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["model_overrides"] = [list(kv) for kv in self.model_overrides]
        return d

    @staticmethod
    def from_json(d: dict) -> "TrainConfig":
        d = dict(d)
        d["model_overrides"] = tuple(tuple(kv) for kv in d.get("model_overrides", ()))
        return TrainConfig(**d)


def dist_info() -> tuple[int, int]:
    """(rank, world size) of an initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(device: str) -> torch.device:
    """"auto" -> the local CUDA device when torch sees one (LOCAL_RANK under torchrun), else the CPU."""
    import os

    if device == "auto":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: this torch sees no CUDA GPU (torch {torch.__version__}); use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {device!r}: use cpu, cuda, cuda:N or auto")
    return dev


def unwrap(model: nn.Module) -> WallWM:
    return model.module if hasattr(model, "module") else model


class Trainer:
    def __init__(self, data, out, tcfg: TrainConfig | None = None, embed: Embedder | None = None, resume: bool = False, progress: bool = True,
                 device: str = "cpu"):
        """`device`: "cpu", "cuda", "cuda:N" or "auto" (cuda when available). Random draws stay on the CPU
        generators and batches are moved, so a run is the same sequence of samples and noise on any device."""
        from wallwm_edge.data.check import validate_or_raise
        from wallwm_edge.train.samples import default_embedder

        self.out = Path(out)
        self.rank, self.world = dist_info()
        self.progress = progress and self.rank == 0
        ds = validate_or_raise(data)
        fingerprint = dataset_fingerprint(ds)
        header = init_model = None
        if resume:
            header = read_header(self.out / MODEL_FILE)
            saved = TrainConfig.from_json(header["train_config"])
            # the saved recipe wins; only the total step count may be extended
            tcfg = dataclasses.replace(saved, steps=tcfg.steps if tcfg is not None else saved.steps)
            if header.get("dataset", {}).get("fingerprint") != fingerprint:
                raise ConfigError(f"{self.out}: checkpoint was trained on dataset {header.get('dataset')}, {ds.root} has fingerprint {fingerprint}: resume on the same data")
            cfg = ModelConfig.from_json(header["config"])
            cfg.check_data(views=ds.views, action_dim=ds.info["action_dim"], proprio_dim=ds.info["proprio_dim"], image_size=ds.image_size, where=f"dataset {ds.root}")
        elif tcfg is not None and tcfg.init:
            # its autoencoder and normalizers come with it: they are what the weights learned on
            init_model, init_header = load_model(tcfg.init)
            cfg = init_model.cfg
            if cfg.mode != tcfg.mode:
                raise ConfigError(f"{tcfg.init}: the checkpoint is a {cfg.mode}-mode model, --mode says {tcfg.mode}")
            cfg.check_data(views=ds.views, action_dim=ds.info["action_dim"], proprio_dim=ds.info["proprio_dim"], image_size=ds.image_size,
                           where=f"dataset {ds.root}")
            tcfg = dataclasses.replace(tcfg, preset=cfg.name, model_overrides=())  # record what was trained, not the CLI default
        else:
            tcfg = tcfg or TrainConfig()
            cfg = resolve(tcfg.preset, views=ds.views, image_size=ds.image_size, action_dim=ds.info["action_dim"],
                          proprio_dim=ds.info["proprio_dim"], mode=tcfg.mode, **dict(tcfg.model_overrides))
        if tcfg.batch_size % self.world:
            raise ConfigError(f"batch size {tcfg.batch_size} is not divisible by the {self.world} processes")
        self.tcfg, self.cfg = tcfg, cfg
        if not tcfg.goal_loss >= 0:
            raise ConfigError(f"goal_loss must be >= 0, got {tcfg.goal_loss}")
        if tcfg.goal_loss > 0 and self.world > 1:  # the probe is not wrapped in DDP: its copies would drift apart
            raise ConfigError("goal_loss is single-process only; train with one process or goal_loss 0")
        self.source = SampleSource(ds, cfg, embed or default_embedder(), tcfg.track, tcfg.split, tcfg.paraphrases, tcfg.clusters, tcfg.seed,
                                   done_fraction=tcfg.done_fraction, goals=scene_goals if tcfg.goal_loss > 0 else None)
        self.dataset_meta = {"name": ds.info.get("name"), "root": str(ds.root), "fingerprint": fingerprint,
                             "episodes": len(self.source.episodes), "items": len(self.source.items)}
        self.rig_json = self.source.episodes[0].rig.to_json()

        torch.manual_seed(tcfg.seed)
        self.np_rng = np.random.default_rng(tcfg.seed)
        self.flow_gen = torch.Generator().manual_seed(tcfg.seed)
        if resume:
            model, _ = load_model(self.out / MODEL_FILE)
            self.ae_explained = header.get("autoencoder_explained_variance")
        elif init_model is not None:
            model = init_model
            self.ae_explained = init_header.get("autoencoder_explained_variance")
        else:
            model = WallWM(cfg)
            self.ae_explained = model.ae.fit(self.source.ae_patches(np.random.default_rng(tcfg.seed + 1), tcfg.ae_frames))
            acts, prop = self.source.action_proprio_arrays()
            model.action_norm.fit(acts)
            model.proprio_norm.fit(prop)
        self.device = resolve_device(device)
        model.to(self.device).train()
        self.optimizers = make_optimizers(model, tcfg.optimizer, tcfg.lr, tcfg.weight_decay, tcfg.muon_lr, tcfg.ns_dtype)
        self.base_lr = [tcfg.muon_lr or tcfg.lr, tcfg.lr] if tcfg.optimizer == "muon" else [tcfg.lr]
        self.step = 0
        if resume:
            self.step = int(load_train_state(self.out / STATE_FILE, self.optimizers, self.np_rng, self.flow_gen)["step"])
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = model
        self.params = sum(p.numel() for p in unwrap(model).parameters())
        self.goal_probe = self.probe_opt = None
        if tcfg.goal_loss > 0:
            self.goal_probe = nn.Sequential(nn.LayerNorm(cfg.width), nn.Linear(cfg.width, 3)).to(self.device)
            self.probe_opt = torch.optim.AdamW(self.goal_probe.parameters(), lr=tcfg.lr)

    # ------------------------------------------------------------------ one step
    def global_batch(self) -> tuple[list, dict]:
        """Random choices of the whole global batch (identical on every rank)."""
        B = self.tcfg.batch_size
        rows = self.source.plan(self.np_rng, B, position=self.step * B)
        noise = unwrap(self.model).draw_noise(B, self.flow_gen)
        return rows, noise

    def local_batch(self, rows, noise) -> dict[str, torch.Tensor]:
        sl = slice(self.rank, None, self.world)
        batch = {k: torch.from_numpy(v) for k, v in self.source.materialize(rows[sl]).items()}
        batch.update({k: v[sl] for k, v in noise.items()})
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def train_step(self) -> dict[str, float]:
        factor = lr_factor(self.step, self.tcfg.steps, self.tcfg.warmup)
        set_lr(self.optimizers, self.base_lr, factor)
        batch = self.local_batch(*self.global_batch())
        out = self.model(batch, hidden=self.goal_probe is not None)
        opts = self.optimizers
        if self.goal_probe is not None:
            out["goal"] = F.mse_loss(self.goal_probe(out["instruction_token"]), batch["goal"])
            out["loss"] = out["loss"] + self.tcfg.goal_loss * out["goal"]
            for g in self.probe_opt.param_groups:
                g["lr"] = self.tcfg.lr * factor
            opts = [*opts, self.probe_opt]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if self.tcfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.tcfg.grad_clip)
        for opt in opts:
            opt.step()
        self.step += 1
        logs = torch.stack([out[k].detach() for k in ("loss", "video", "action")] + [out.get("end", torch.zeros(()))]
                           + [out.get("goal", torch.zeros(()))])
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(logs)
            logs /= self.world
        return dict(zip(["loss", "video", "action", "end", "goal"], logs.tolist())) | {"lr": self.tcfg.lr * factor}

    # ------------------------------------------------------------------ loop, checkpoints, logs
    def save(self) -> None:
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        meta = {"step": self.step, "train_config": self.tcfg.to_json(), "dataset": self.dataset_meta, "rig": self.rig_json,
                "autoencoder_explained_variance": self.ae_explained, "params": self.params}
        save_model(self.out / MODEL_FILE, unwrap(self.model), meta)
        save_train_state(self.out / STATE_FILE, self.step, self.optimizers, self.np_rng, self.flow_gen, self.tcfg.to_json())
        (self.out / "config.json").write_text(json.dumps({"model": self.cfg.to_json(), "train": self.tcfg.to_json(), "dataset": self.dataset_meta}, indent=1) + "\n")

    def run(self, until: int | None = None) -> dict:
        """Train to `until` (default: the configured steps), checkpointing on the way and at the end."""
        from tqdm import tqdm

        stop = min(self.tcfg.steps, until if until is not None else self.tcfg.steps)
        log = None
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            new = not (self.out / LOG_FILE).exists() or self.step == 0
            if not new:
                _truncate_log(self.out / LOG_FILE, self.step)  # rows past the checkpoint are re-trained: log them once
            log = open(self.out / LOG_FILE, "w" if new else "a", newline="")
            writer = csv.writer(log)
            if new:
                writer.writerow(LOG_FIELDS)
        bar = tqdm(total=stop, initial=self.step, desc=f"train {self.cfg.name}/{self.cfg.mode}", disable=not self.progress, dynamic_ncols=True)
        first = last = None
        t_start = time.perf_counter()
        steps_done = 0
        try:
            while self.step < stop:
                t0 = time.perf_counter()
                logs = self.train_step()
                dt = time.perf_counter() - t0
                steps_done += 1
                first = first or logs
                last = logs
                if log is not None and (self.step % self.tcfg.log_every == 0 or self.step == stop):
                    writer.writerow([self.step] + [f"{logs[k]:.6g}" for k in ("loss", "video", "action", "end", "lr")] + [f"{dt:.4f}"])
                    log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss']:.4f}", act=f"{logs['action']:.4f}",
                                **({"goal": f"{logs['goal']:.4f}"} if self.goal_probe is not None else {}))
                if self.step % self.tcfg.ckpt_every == 0 and self.step < stop:
                    self.save()
        except KeyboardInterrupt:
            # Ctrl-C: keep every finished step. A step cut mid-way never updated the weights (the optimizer
            # step is the last thing it does), so the saved state is exactly step `self.step`.
            bar.close()
            if log is not None:
                log.close()
                log = None
            self.save()
            if self.rank == 0:
                import sys

                print(f"interrupted: saved step {self.step} to {self.out}; continue with: wallwm-edge train DATA --out {self.out} --resume",
                      file=sys.stderr)
            raise
        finally:
            bar.close()
            if log is not None:
                log.close()
        self.save()
        wall = time.perf_counter() - t_start
        return {"step": self.step, "first": first, "last": last, "params": self.params, "wall_s": wall,
                "sec_per_step": wall / max(1, steps_done), "out": str(self.out)}


def _truncate_log(path: Path, step: int) -> None:
    """Drop loss.csv rows logged after `step` (the checkpoint a resume starts from)."""
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[:1] + [ln for ln in lines[1:] if ln.split(",", 1)[0].strip().isdigit() and int(ln.split(",", 1)[0]) <= step]
    if len(keep) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(keep))
        tmp.replace(path)
