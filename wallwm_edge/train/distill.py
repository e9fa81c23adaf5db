"""Distillation: a full teacher (10 flow steps, wide) -> a compact student (1-2 steps, `student` preset).

    teacher checkpoint (ours, or external via a key map) -> label dataset samples with the teacher's
    K-step Euler trajectory -> train the student to cover K/S teacher steps in each of its S steps
    -> RUN/model.safetensors (a normal checkpoint: Policy, eval and export take it as is)

The method: trajectory distillation in one round ("progressive distillation" with halving factor K/S).
For each dataset sample we fix the noise and run the teacher's deterministic Euler solver for K steps,
keeping its states x(t_j) at the student's grid t_j = j/S. A student step from x(t_j) must land on
the teacher's x(t_{j+1}): its velocity target is S * (x(t_{j+1}) - x(t_j)). With S = 1 this is the
direct noise -> teacher-sample map (Luhman & Luhman 2021); with S = 2 it is one round of progressive
distillation (Salimans & Ho 2022) from K straight to S.

Why this and not the alternatives named in the issue:
- progressive distillation in rounds (10 -> 5 -> 3 -> 2 -> 1) retrains the student per round: four
  times the compute for the same end point; rectified flow's near-straight paths make one round enough.
- shortcut models condition the network on the step size d: a new input and a different network
  from the teacher's, so teacher and student would no longer share code (DESIGN.md decision 4).
- consistency distillation needs an EMA target network and a self-consistency loss that converges
  slowly; it pays off for 1-step sampling of images, not for 2-step action chunks on a CPU budget.
The width/depth reduction happens in the same training run (the student is a `student`-preset WallWM,
trained from scratch or from a slice of the teacher's weights, `init`); losses cover the three
outputs: action velocity (valid steps of the event), video-latent velocity, and termination (binary
cross-entropy against the teacher's final p_end). Slicing pays: on data/mw64 (teacher width 128 x 4
layers -> student 96 x 3, 300 steps) the student's action MSE against the teacher was 0.011 from a
slice and 0.078 from scratch.

Teacher targets are computed once on the dataset and cached in RUN/teacher_targets.safetensors (keyed
by teacher, dataset and settings), so a resumed run (`resume=True`) does not relabel.

Loading external teachers: `load_teacher(path, key_map=...)` renames keys with a KeyMap (regex rules
from a JSON file, or any Python callable) before a strict load that refuses a shape mismatch naming
the key and both shapes. See docs in `KeyMap`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from wallwm_edge.data.episode import sha256_file
from wallwm_edge.errors import ConfigError
from wallwm_edge.model.checkpoint import FORMAT as CKPT_FORMAT
from wallwm_edge.model.checkpoint import MODEL_FILE, check_finite_tensors, model_config, read_header, save_model
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.model.presets import PRESETS, ModelConfig, get_preset, resolve
from wallwm_edge.serve.backend import teacher_trajectory  # noqa: F401  (the labels; also served, see serve/backend.py)

TARGETS_FILE = "teacher_targets.safetensors"
STATE_FILE = "distill_state.safetensors"
SHARED_BUFFERS = ("ae.", "action_norm.", "proprio_norm.")  # copied from the teacher: same latents, same units


# ---------------------------------------------------------------------------------------------- loading
class KeyMap:
    """Renames checkpoint keys before loading (external checkpoints name things their own way).

    A JSON key-map file:
        {"rules": [["^model\\\\.", ""], ["\\\\.attn\\\\.", ".attention."]],   # re.sub in order
         "drop":  ["^optimizer\\\\.", "\\\\.num_batches_tracked$"]}           # keys to ignore
    or `KeyMap(fn)` with any fn(key) -> new key, or None to drop it. `python:module:function` on the
    command line names such a function.
    """

    def __init__(self, fn: Callable[[str], str | None] | None = None, rules=(), drop=()):
        self.fn = fn
        self.rules = [(re.compile(p), r) for p, r in rules]
        self.drop = [re.compile(p) for p in drop]

    @staticmethod
    def load(spec: str | os.PathLike | None) -> "KeyMap":
        if spec is None:
            return KeyMap()
        spec = str(spec)
        if spec.startswith("python:"):
            import importlib

            mod, _, fn = spec[len("python:"):].partition(":")
            try:
                return KeyMap(getattr(importlib.import_module(mod), fn))
            except (ImportError, AttributeError) as e:
                raise ConfigError(f"key map {spec!r}: cannot import {mod}:{fn} ({e})") from None
        from wallwm_edge.validate import describe, load_json

        d = load_json(spec, ConfigError, "key-map file not found")
        if not isinstance(d, dict):
            raise ConfigError(f"{spec}: a key map must be a JSON object {{\"rules\": [...], \"drop\": [...]}}, got {describe(d)}")
        unknown = sorted(set(d) - {"rules", "drop"})
        if unknown:
            raise ConfigError(f"{spec}: unknown key-map field(s) {unknown}; known: rules, drop")
        try:
            return KeyMap(rules=[tuple(r) for r in d.get("rules", [])], drop=d.get("drop", []))
        except (re.error, TypeError, ValueError) as e:
            raise ConfigError(f"{spec}: bad key-map rule ({e}); rules are [pattern, replacement] pairs") from None

    def __call__(self, key: str) -> str | None:
        if any(p.search(key) for p in self.drop):
            return None
        for p, r in self.rules:
            key = p.sub(r, key)
        return self.fn(key) if self.fn else key

    def apply(self, state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        origin: dict[str, str] = {}
        for k, v in state.items():
            nk = self(k)
            if nk is None:
                continue
            if nk in out:
                raise ConfigError(f"{where}: key map sends both {origin[nk]!r} and {k!r} to {nk!r}")
            out[nk], origin[nk] = v, k
        return out


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load every tensor or refuse: the first shape mismatch names the key and both shapes."""
    own = model.state_dict()
    for k, v in state.items():
        if k in own and tuple(v.shape) != tuple(own[k].shape):
            raise ConfigError(f"{where}: key {k!r} has shape {list(v.shape)} in the checkpoint, "
                              f"the model ({getattr(getattr(model, 'cfg', None), 'name', '?')} preset) expects {list(own[k].shape)}")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ConfigError(f"{where}: keys do not match the model: missing {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                          f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''} (a key map renames them: --key-map)")
    model.load_state_dict(state, strict=True)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise ConfigError(f"{path}: cannot read the checkpoint's tensors ({e})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{path}: cannot read checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    for key in ("state_dict", "model", "module"):  # common wrappers of external checkpoints
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConfigError(f"{path}: expected a state dict of tensors")
    return obj


def load_teacher(path: str | os.PathLike, key_map: KeyMap | None = None, config: ModelConfig | None = None) -> tuple[WallWM, dict]:
    """Teacher model + header. Our checkpoints carry their config; an external one needs `config`."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.is_file():
        raise ConfigError(f"{p}: teacher checkpoint not found")
    header: dict = {}
    try:
        header = read_header(p)
    except ConfigError as e:
        if config is None:
            if "no 'wallwm' header" in str(e) or "not a safetensors" in str(e):
                raise ConfigError(f"{p}: not a wallwm-edge checkpoint (no '{CKPT_FORMAT}' header); pass --teacher-config "
                                  "(a preset name or a config JSON) and, if its keys differ, --key-map") from None
            raise  # a wallwm header that is malformed: its own message names the field
    cfg = config or model_config(header, p)
    model = WallWM(cfg)
    state = _read_tensors(p)
    check_finite_tensors(state, p)  # a NaN or bit-flipped teacher weight would teach a NaN student, silently
    state = (key_map or KeyMap()).apply(state, str(p))
    load_state_strict(model, state, str(p))
    header = dict(header) or {"config": cfg.to_json(), "external": True}
    header["sha256"] = sha256_file(p)[:16]
    header["path"] = str(p)
    return model.eval(), header


# ---------------------------------------------------------------------------------------------- student
def make_student(teacher, preset: str | ModelConfig, steps: int, init: str = "slice", seed: int = 0) -> WallWM:
    """A student of `preset` for the teacher's data; shares the teacher's autoencoder and normalizers.
    `teacher`: anything with `cfg` and `state_dict()` (a WallWM, LocalTeacher, RemoteTeacher)."""
    t = teacher.cfg
    # The interface the student shares with its teacher comes from the teacher, whatever the preset says:
    # the video-latent space (patch, latent_dim: one autoencoder for both) and the chunk length L_max.
    cfg = resolve(preset, views=t.views, image_size=t.image_size, action_dim=t.action_dim, proprio_dim=t.proprio_dim,
                  instruction_dim=t.instruction_dim, mode=t.mode, n_future=t.n_future, flow_steps=steps,
                  patch=t.patch, latent_dim=t.latent_dim, horizon=t.horizon)
    if not fits(cfg, t):
        remedy = f"; pass --preset {t.name} (the teacher's own architecture, fewer steps) or leave --preset at auto" if t.name in PRESETS else ""
        raise ConfigError(f"student preset {cfg.name!r} (width {cfg.width}, depth {cfg.depth}, {cfg.heads} heads) does not fit "
                          f"the teacher (width {t.width}, depth {t.depth}): a student is no wider and no deeper{remedy}")
    torch.manual_seed(seed)
    student = WallWM(cfg)
    tstate = teacher.state_dict()
    sstate = student.state_dict()
    for k in sstate:
        if k.startswith(SHARED_BUFFERS):
            if tuple(tstate[k].shape) != tuple(sstate[k].shape):
                raise ConfigError(f"teacher key {k!r} has shape {list(tstate[k].shape)}, the student expects {list(sstate[k].shape)}")
            sstate[k] = tstate[k].clone()
    if init == "slice":
        sstate.update(slice_init(tstate, sstate, t.depth, cfg.depth))
    elif init != "scratch":  # a previous student's checkpoint: warm start (e.g. a newer teacher of the same data)
        p = Path(init)
        if not (p.is_file() or (p / MODEL_FILE).is_file()):
            raise ConfigError(f"init must be 'scratch', 'slice' or a student checkpoint, got {init!r} (not found)")
        prev, _ = load_teacher(p)
        if prev.cfg.name != cfg.name:
            raise ConfigError(f"{p}: init checkpoint is a {prev.cfg.name!r} model, the student preset is {cfg.name!r}")
        init_state = {k: v for k, v in prev.state_dict().items() if not k.startswith(SHARED_BUFFERS)}
        probe = WallWM(cfg)
        load_state_strict(probe, init_state | {k: v for k, v in sstate.items() if k.startswith(SHARED_BUFFERS)}, str(p))
        sstate.update(init_state)
    student.load_state_dict(sstate)
    return student


def fits(student: ModelConfig, teacher: ModelConfig) -> bool:
    """Whether a student preset can be distilled from `teacher`: no wider and no deeper (the latent space and
    chunk length are the teacher's in any case, see make_student)."""
    return student.width <= teacher.width and student.depth <= teacher.depth and teacher.width % student.heads == 0


def resolve_student(teacher: ModelConfig, preset: str | None, steps: int | None, K: int) -> tuple[str, int]:
    """The student preset and step count for "auto" (None) choices, and a refusal of a no-op distillation.

    preset auto: "student" when it fits the teacher (see `fits`), else the teacher's own preset (a `tiny`
    teacher distils into a `tiny` student with fewer steps). steps auto: 2 when the teacher takes 4 or
    more steps (and 2 divides them), else 1. The same architecture with as many steps as the teacher
    would only copy the teacher less well, so it is refused with the remedy.
    """
    if preset in (None, "auto"):
        if fits(get_preset("student"), teacher):
            preset = "student"
        elif teacher.name in PRESETS:
            preset = teacher.name
        else:
            raise ConfigError(f"no shipped preset fits the teacher {teacher.name!r} (patch {teacher.patch}, latent_dim "
                              f"{teacher.latent_dim}, horizon {teacher.horizon}); pass --preset with a config that matches them")
    S = int(steps) if steps is not None else (2 if K >= 4 and K % 2 == 0 else 1)
    if S >= K and preset == teacher.name:
        raise ConfigError(f"student steps {S} >= teacher steps {K} with the teacher's own preset {preset!r}: nothing to distill "
                          f"(the student would only copy the teacher less well); pass --student-steps {max(1, K // 2)} "
                          f"or let the teacher take more steps (--teacher-steps {2 * S})")
    return preset, S


def slice_init(tstate: dict, sstate: dict, t_depth: int, s_depth: int) -> dict:
    """Student weights cut from the teacher's: layer i <- teacher layer round(i (Dt-1)/(Ds-1)), each
    tensor sliced to the student's shape; fused projections (qkv: 3 parts, adaLN: 6) are sliced per part.
    An approximation (heads regroup), but a far better start than random for the embeddings and heads."""
    out = {}
    for k, v in sstate.items():
        if k.startswith(SHARED_BUFFERS):
            continue
        tk = k
        m = re.match(r"layers\.(\d+)\.(.*)", k)
        if m:
            i = int(m.group(1))
            ti = round(i * (t_depth - 1) / max(1, s_depth - 1)) if s_depth > 1 else 0
            tk = f"layers.{ti}.{m.group(2)}"
        if tk not in tstate or tstate[tk].dim() != v.dim():
            continue
        src = tstate[tk]
        parts = 3 if ".qkv." in k else 6 if ".ada." in k else 1
        if parts > 1 and src.shape[0] % parts == 0 and v.shape[0] % parts == 0:
            chunks = [c[tuple(slice(0, n) for n in (v.shape[0] // parts, *v.shape[1:]))] for c in src.chunk(parts, 0)]
            out[k] = torch.cat(chunks, 0).clone()
        else:
            out[k] = src[tuple(slice(0, n) for n in v.shape)].clone() if all(a >= b for a, b in zip(src.shape, v.shape)) else v
    return out


# ---------------------------------------------------------------------------------------------- teachers
# Who labels: the teacher's weights in this process (LocalTeacher), or a teacher served elsewhere by
# `wallwm-edge serve` (RemoteTeacher: a checkpoint too big for this machine stays on its GPU box). Both
# give the same labels for the same noise: `teacher_trajectory` (serve/backend.py) is the one definition,
# the server runs it too. The labeller interface: cfg, header (path, sha256, step, train_config),
# params, remote, draw_noise(B, gen), trajectory(batch, noise_video, noise_action, K, S), state_dict()
# (a remote teacher gives only the buffers a student shares with it), close().
class LocalTeacher:
    """A teacher whose weights load here: our checkpoint, or an external one through a key map."""

    remote = False

    def __init__(self, path: str | os.PathLike, key_map: KeyMap | None = None, config: ModelConfig | None = None):
        self.model, self.header = load_teacher(path, key_map, config)
        self.cfg = self.model.cfg
        self.params = sum(p.numel() for p in self.model.parameters())

    def draw_noise(self, B: int, generator: torch.Generator) -> dict:
        return self.model.draw_noise(B, generator)

    def trajectory(self, batch: dict, noise_video, noise_action, K: int, S: int):
        return teacher_trajectory(self.model, batch, noise_video, noise_action, K, S)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def close(self) -> None:
        pass


class RemoteTeacher:
    """A teacher served by `wallwm-edge serve` at ws://HOST:PORT. Its weights stay on the server, so a student
    starts from scratch or from a previous student ('slice' needs the weights); the buffers a student shares
    with its teacher (autoencoder, normalizers: a few KB) are fetched once."""

    remote = True

    def __init__(self, url: str, client_cfg=None):
        from wallwm_edge.serve.client import ClientConfig, PolicyClient

        self.url = url
        self.client = PolicyClient(url, client_cfg or ClientConfig())
        self.client.check()  # a wallwm-edge server (protocol), before its metadata is trusted
        meta = self.client.metadata
        try:
            self.cfg = ModelConfig.from_json(meta["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{url}: the server's model config is unusable ({type(e).__name__}: {e})") from None
        ck = meta.get("checkpoint") or {}
        self.header = {"path": url, "sha256": ck.get("sha256"), "step": ck.get("step"), "remote": True,
                       "train_config": ck.get("train_config") or {}, "text_encoder": ck.get("text_encoder")}
        self.params = ck.get("params")
        self._shared: dict[str, torch.Tensor] | None = None

    def draw_noise(self, B: int, generator: torch.Generator) -> dict:
        """The same draws, in the same order, as WallWM.draw_noise: a run labels the same noise locally or remotely."""
        c = self.cfg
        return {"t": torch.rand(B, generator=generator),
                "noise_video": torch.randn(B, c.n_future * c.view_tokens, c.latent_dim, generator=generator),
                "noise_action": torch.randn(B, c.horizon, c.action_dim, generator=generator)}

    def trajectory(self, batch: dict, noise_video, noise_action, K: int, S: int):
        r = self.client.label({"images": batch["images"].numpy(), "proprio": batch["proprio"].float().numpy(),
                               "instruction": batch["instruction"].float().numpy(), "view_mask": batch["view_mask"].numpy(),
                               "noise_video": noise_video.numpy(), "noise_action": noise_action.numpy(), "K": K, "S": S})
        B, c = len(noise_action), self.cfg
        want = {"traj_video": (B, S + 1, *noise_video.shape[1:]), "traj_action": (B, S + 1, c.horizon, c.action_dim), "end_logit": (B, c.horizon)}
        for k, shape in want.items():
            if k not in r or tuple(r[k].shape) != shape:
                raise ConfigError(f"{self.url}: the label reply's {k} has shape {list(getattr(r.get(k), 'shape', []))}, expected {list(shape)}")
        return tuple(torch.from_numpy(np.asarray(r[k], np.float32)) for k in want)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self._shared is None:
            got = self.client.shared_state()
            self._shared = {k: torch.from_numpy(np.asarray(v)) for k, v in got.items() if k.startswith(SHARED_BUFFERS)}
        return self._shared

    def close(self) -> None:
        self.client.close()


def open_teacher(spec: str | os.PathLike, key_map: KeyMap | None = None, config: ModelConfig | None = None, client_cfg=None):
    """LocalTeacher for a checkpoint path, RemoteTeacher for ws://HOST:PORT (or wss://)."""
    if str(spec).startswith(("ws://", "wss://")):
        if config is not None:
            raise ConfigError(f"--teacher-config applies to a teacher checkpoint, not to a served teacher ({spec}: it says its own config)")
        return RemoteTeacher(str(spec), client_cfg)
    return LocalTeacher(spec, key_map, config)


INPUT_KEYS = ("images", "proprio", "instruction", "view_mask", "action_valid")


def label_dataset(teacher, source, n: int, K: int, S: int, seed: int, batch: int = 32, progress: bool = True, desc: str = "teacher targets") -> dict[str, torch.Tensor]:
    """n dataset samples (cluster-balanced, like training) labelled with the teacher's trajectories.
    `teacher`: a LocalTeacher or RemoteTeacher (one request of `batch` samples at a time)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    chunks: dict[str, list] = {}
    with tqdm(total=n, desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        for lo in range(0, n, batch):
            b = min(batch, n - lo)
            raw = {k: torch.from_numpy(v) for k, v in source.materialize(source.plan(rng, b)).items()}
            noise = teacher.draw_noise(b, gen)
            tv, ta, end = teacher.trajectory(raw, noise["noise_video"], noise["noise_action"], K, S)
            for k in INPUT_KEYS:
                chunks.setdefault(k, []).append(raw[k])
            for k, v in (("traj_video", tv), ("traj_action", ta), ("end_logit", end)):
                chunks.setdefault(k, []).append(v)
            bar.update(b)
    return {k: torch.cat(v).contiguous() for k, v in chunks.items()}


def save_targets(path: Path, targets: dict[str, torch.Tensor], key: dict) -> None:
    from wallwm_edge.model.checkpoint import write_safetensors

    write_safetensors(path, targets, {"wallwm_targets": json.dumps(key, sort_keys=True)})


def load_targets(path: Path, key: dict) -> dict[str, torch.Tensor] | None:
    """The cached targets if they were made with exactly `key` (teacher, data, K, S, n, seed), else None."""
    from safetensors.torch import load_file, safe_open

    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        saved = json.loads((f.metadata() or {}).get("wallwm_targets", "{}"))
    if saved != json.loads(json.dumps(key, sort_keys=True)):
        return None
    return load_file(str(path))


# ---------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class DistillConfig:
    student_preset: str = "auto"  # "auto": "student" when it fits the teacher, else the teacher's own preset
    student_steps: int | None = None  # S: flow steps of the student (None: 2 for a teacher of >= 4 steps, else 1)
    teacher_steps: int | None = None  # K: default the teacher's own flow_steps
    samples: int = 2048  # dataset samples labelled by the teacher (the training set of the student)
    eval_samples: int = 64  # a separate labelled set for the student-vs-teacher error
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 50
    grad_clip: float = 1.0
    optimizer: str = "adamw"
    init: str = "slice"  # "slice" (cut the teacher's weights to the student's shapes), "scratch", or a
    #                        student checkpoint to warm-start from (e.g. re-distilling from a newer teacher)
    seed: int = 0
    track: str = "subtask"
    split: str | None = "auto"  # episodes with this split tag only; "auto": the teacher's training split
    ckpt_every: int = 200
    label_batch: int = 32

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def distill_loss(student: WallWM, targets: dict[str, torch.Tensor], idx: torch.Tensor, seg: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss of the student's step from the teacher's state j = seg to j + 1, for samples idx."""
    S = student.cfg.flow_steps
    cfg = student.cfg
    x = {k: targets[k][idx] for k in INPUT_KEYS}
    tv, ta = targets["traj_video"][idx], targets["traj_action"][idx]  # (B, S+1, ...)
    ar = torch.arange(len(idx))
    xv, xa = tv[ar, seg], ta[ar, seg]
    goal_v = (tv[ar, seg + 1] - xv) * S  # the velocity that lands on the teacher's next state in one step
    goal_a = (ta[ar, seg + 1] - xa) * S
    obs_h, cond_h, c = student.prepare(x["images"], x["proprio"].float(), x["instruction"].float())
    vv, va, end_logit = student.denoise_step(obs_h, cond_h, c, xv, xa, seg.float() / S, student.full_mask(x["view_mask"]))
    valid = x["action_valid"].float()  # (B, L)
    per_step = ((va - goal_a) ** 2).mean(-1)
    l_action = ((per_step * valid).sum(1) / valid.sum(1).clamp_min(1.0)).mean()
    l_video = F.mse_loss(vv, goal_v)
    out = {"action": l_action, "video": l_video}
    total = cfg.loss_action * l_action + cfg.loss_video * l_video
    if cfg.mode == "event":
        l_end = F.binary_cross_entropy_with_logits(end_logit, torch.sigmoid(targets["end_logit"][idx]))
        out["end"] = l_end
        total = total + cfg.loss_end * l_end
    out["loss"] = total
    return out


@torch.no_grad()
def student_error(student: WallWM, targets: dict[str, torch.Tensor], batch: int = 32) -> dict[str, float]:
    """The student's S-step samples vs the teacher's K-step samples from the same noise (normalised actions).

    action_mse over valid steps, the worst per-sample action cosine, end-probability mean |difference|.
    """
    from wallwm_edge.export.parity import compare

    student.eval()
    n = len(targets["images"])
    S = student.cfg.flow_steps
    got, want, pe_s, pe_t = [], [], [], []
    for lo in range(0, n, batch):
        sl = slice(lo, min(n, lo + batch))
        x = {k: targets[k][sl] for k in INPUT_KEYS}
        tv, ta = targets["traj_video"][sl], targets["traj_action"][sl]
        actions, end_prob, _ = student.sample(x["images"], x["proprio"].float(), x["instruction"].float(), student.full_mask(x["view_mask"]),
                                              tv[:, 0], ta[:, 0], S)
        got.append(student.action_norm.normalize(actions))
        want.append(ta[:, -1])
        pe_s.append(end_prob)
        pe_t.append(torch.sigmoid(targets["end_logit"][sl]))
    got, want = torch.cat(got), torch.cat(want)
    valid = targets["action_valid"]
    err = ((got - want) ** 2).mean(-1)
    mse = float((err * valid).sum() / valid.sum().clamp_min(1))
    rep = compare("student vs teacher", want.numpy(), got.numpy(), "fp32", valid=valid.numpy())
    return {"action_mse": mse, "action_cosine_min": rep.cosine, "action_cosine_mean": rep.cosine_mean, "action_l1": rep.l1,
            "end_prob_abs": float((torch.cat(pe_s) - torch.cat(pe_t)).abs().mean())}


class Distiller:
    """`Distiller(teacher, data, out, dcfg).run()`; `resume=True` continues RUN's saved state.
    `teacher`: a checkpoint path, or ws://HOST:PORT of `wallwm-edge serve` (client_cfg: its timeouts, retries)."""

    def __init__(self, teacher: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, dcfg: DistillConfig | None = None,
                 embed=None, key_map: KeyMap | None = None, teacher_config: ModelConfig | None = None, resume: bool = False, progress: bool = True,
                 text_encoder: str = "minilm", client_cfg=None):
        from wallwm_edge.data.check import validate_or_raise
        from wallwm_edge.train.optim import make_optimizers
        from wallwm_edge.train.samples import SampleSource, dataset_fingerprint, default_embedder
        from wallwm_edge.train.state import load_train_state

        self.out = Path(out)
        self.progress = progress
        self.text_encoder = text_encoder
        if resume:
            saved = read_header(self.out / MODEL_FILE).get("distill", {})
            if not saved:
                raise ConfigError(f"{self.out}: no distillation run to resume (no 'distill' entry in its checkpoint header)")
            steps = dcfg.steps if dcfg is not None else saved["config"]["steps"]
            dcfg = dataclasses.replace(DistillConfig(**saved["config"]), steps=steps)  # the saved recipe wins
        dcfg = dcfg or DistillConfig()
        self.dcfg = dcfg
        self.teacher = open_teacher(teacher, key_map, teacher_config, client_cfg)
        self.theader = self.teacher.header
        tcfg = self.teacher.cfg
        ds = validate_or_raise(data)
        if self.teacher.remote:  # the server's spec vs this data, in one line naming the URL, before any work
            self.teacher.client.check(views=list(ds.views), image_size=list(ds.image_size), action_dim=ds.info["action_dim"],
                                      proprio_dim=ds.info["proprio_dim"])
            if dcfg.init == "slice":
                raise ConfigError(f"{teacher}: a served teacher's weights stay on its server, so the student cannot be sliced "
                                  "from them; pass --init scratch or a previous student checkpoint")
        tcfg.check_data(views=ds.views, action_dim=ds.info["action_dim"], proprio_dim=ds.info["proprio_dim"], image_size=ds.image_size, where=f"dataset {ds.root}")
        self.fingerprint = dataset_fingerprint(ds)
        self.dataset_meta = {"name": ds.info.get("name"), "root": str(ds.root), "fingerprint": self.fingerprint}
        self.K = int(dcfg.teacher_steps or tcfg.flow_steps)
        preset, self.S = resolve_student(tcfg, dcfg.student_preset, dcfg.student_steps, self.K)
        if self.S < 1 or self.K % self.S:  # checked before the (slow) labelling starts
            raise ConfigError(f"teacher steps {self.K} must be a multiple of student steps {self.S} (pass --teacher-steps)")
        dcfg = self.dcfg = dataclasses.replace(dcfg, student_preset=preset, student_steps=self.S)  # saved resolved: resume is exact
        self.student = make_student(self.teacher, preset, self.S, dcfg.init, dcfg.seed)
        # The teacher's training split by default: labelling held-out-task episodes would leak them.
        self.split = self.theader.get("train_config", {}).get("split") if dcfg.split == "auto" else dcfg.split
        # The teacher's own share of "done" frames (samples.py): the student's p_end must learn "is over"
        # from the teacher's verdicts on frames after an event's end, not only the forecast.
        done = float(self.theader.get("train_config", {}).get("done_fraction", 0.0))
        self.source = SampleSource(ds, tcfg, embed or default_embedder(), dcfg.track, self.split, True, done_fraction=done)
        self.rig_json = self.source.episodes[0].rig.to_json()
        self.targets = self._targets("train", dcfg.samples, dcfg.seed + 1)
        self.eval_targets = self._targets("eval", dcfg.eval_samples, dcfg.seed + 2)
        self.teacher.close()  # labels are all made: a served teacher's connection is not held through training
        self.np_rng = np.random.default_rng(dcfg.seed)
        self.gen = torch.Generator().manual_seed(dcfg.seed)
        self.optimizers = make_optimizers(self.student, dcfg.optimizer, dcfg.lr, dcfg.weight_decay)
        self.step = 0
        self.history: list[dict] = []
        if resume:
            from wallwm_edge.model.checkpoint import load_model

            model, header = load_model(self.out / MODEL_FILE)
            self.student.load_state_dict(model.state_dict())
            self.history = header["distill"].get("history", [])
            self.step = int(load_train_state(self.out / STATE_FILE, self.optimizers, self.np_rng, self.gen)["step"])

    def _targets(self, split: str, n: int, seed: int) -> dict[str, torch.Tensor]:
        key = {"teacher": self.theader["sha256"], "dataset": self.fingerprint, "K": self.K, "S": self.S, "n": n, "seed": seed,
               "track": self.dcfg.track, "episodes": self.split, "split": split}
        path = self.out / f"{split}_{TARGETS_FILE}"
        cached = load_targets(path, key)
        if cached is not None:
            return cached
        t = label_dataset(self.teacher, self.source, n, self.K, self.S, seed, self.dcfg.label_batch, self.progress, f"teacher targets ({split}, K={self.K})")
        self.out.mkdir(parents=True, exist_ok=True)
        save_targets(path, t, key)
        return t

    def evaluate(self) -> dict:
        err = student_error(self.student, self.eval_targets)
        err["step"] = self.step
        return err

    def train_step(self) -> dict[str, float]:
        from wallwm_edge.train.optim import lr_factor, set_lr

        d = self.dcfg
        set_lr(self.optimizers, [d.lr] * len(self.optimizers), lr_factor(self.step, d.steps, d.warmup))
        self.student.train()
        n = len(self.targets["images"])
        idx = torch.from_numpy(self.np_rng.integers(0, n, d.batch_size))
        seg = torch.from_numpy(self.np_rng.integers(0, self.S, d.batch_size))
        out = distill_loss(self.student, self.targets, idx, seg)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if d.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), d.grad_clip)
        for opt in self.optimizers:
            opt.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in out.items()}

    def save(self) -> Path:
        from wallwm_edge.train.state import save_train_state

        self.out.mkdir(parents=True, exist_ok=True)
        meta = {
            "step": self.step,
            "dataset": self.dataset_meta | {"split": self.split, "episodes": len(self.source.episodes)},
            "train_config": {"split": self.split, "track": self.dcfg.track},
            "rig": self.rig_json,
            "autoencoder_explained_variance": self.theader.get("autoencoder_explained_variance"),
            "params": sum(p.numel() for p in self.student.parameters()),
            "text_encoder": self.text_encoder,
            "distill": {
                "method": f"trajectory distillation, one round: teacher {self.K} Euler steps -> student {self.S}",
                "teacher": {"path": self.theader.get("path"), "sha256": self.theader.get("sha256"), "step": self.theader.get("step"),
                            "preset": self.teacher.cfg.name, "params": self.teacher.params},
                "config": self.dcfg.to_json(),
                "history": self.history,
            },
        }
        # never write a student that cannot act: a NaN/inf weight here means the run diverged
        check_finite_tensors(self.student.state_dict(), f"{self.out / MODEL_FILE} (student at step {self.step}, not written)")
        path = save_model(self.out / MODEL_FILE, self.student, meta)
        save_train_state(self.out / STATE_FILE, self.step, self.optimizers, self.np_rng, self.gen, self.dcfg.to_json())
        return path

    def run(self, until: int | None = None) -> dict:
        from tqdm import tqdm

        stop = min(self.dcfg.steps, until if until is not None else self.dcfg.steps)
        if not self.history:
            self.history.append(self.evaluate())
        t0 = time.perf_counter()
        done = 0
        last = {}
        bar = tqdm(total=stop, initial=self.step, desc=f"distill {self.teacher.cfg.name}->{self.student.cfg.name}",
                   disable=not self.progress, dynamic_ncols=True)
        try:
            while self.step < stop:
                last = self.train_step()
                done += 1
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.4f}", act=f"{last['action']:.4f}")
                if self.step % self.dcfg.ckpt_every == 0 and self.step < stop:
                    self.history.append(self.evaluate())
                    self.save()
        finally:
            bar.close()
        if not self.history or self.history[-1]["step"] != self.step:
            self.history.append(self.evaluate())
        self.save()
        return {"step": self.step, "initial": self.history[0], "final": self.history[-1], "last_loss": last,
                "sec_per_step": (time.perf_counter() - t0) / max(1, done), "out": str(self.out),
                "teacher_steps": self.K, "student_steps": self.S}
