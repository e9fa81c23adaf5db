"""Model presets: ONE registry of frozen dataclasses.

A preset fixes the architecture (width, depth, tokens, denoising steps). The data fixes the rest (views,
image size, action and proprio dims): `resolve(preset, views=..., image_size=..., action_dim=...,
proprio_dim=...)` returns the full config that a checkpoint stores, so a checkpoint always knows what
data it was trained on and can refuse data that does not fit (`check_data`).

Sizes are picked for a 2-core CPU: 96x96 images cut into 16-px patches give 36 tokens per view and
frame, so a 3-view rig with one future frame is 216 video tokens plus at most ~30 action-side tokens.

    name      width depth heads  horizon  flow steps  use
    tiny        32     2     2       8        2        tests: a training step in well under a second
    student     96     3     4      16        2        distillation target (1-2 flow steps)
    teacher    176     4     8      16       10        the largest that learns in about an hour here
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from wallwm_edge.errors import ConfigError

INSTRUCTION_DIM = 384  # all-MiniLM-L6-v2 sentence embeddings (wallwm_edge.events.encoder)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    # ---- architecture
    width: int = 32  # D, both towers (they share attention, so they share the width)
    depth: int = 2  # coupled layers; every layer couples the video and the action tower
    heads: int = 2
    mlp_ratio: float = 4.0
    patch: int = 16  # image patch (pixels) -> one video token per view
    latent_dim: int = 8  # per-patch autoencoder latent (see autoencoder.py)
    n_future: int = 1  # future video frames denoised (evenly spaced to the chunk end)
    horizon: int = 8  # L_max in event mode, the fixed chunk length in unified mode
    # ---- modes
    mode: str = "event"  # "event": next-event instruction, variable length + termination head
    #                      "unified": task instruction, fixed length, K staircase reasoning states
    reasoning_states: int = 4  # K (unified mode)
    reasoner_width: int = 32
    reasoner_depth: int = 1
    # ---- flow matching
    flow_steps: int = 2  # default Euler steps at inference
    loss_video: float = 0.5
    loss_action: float = 1.0
    loss_end: float = 0.2
    # ---- sight-cone (metres, along each pixel ray)
    near: float = 0.05
    far: float = 2.0
    # ---- data (filled by resolve(); empty in the registry)
    views: tuple[str, ...] = ()
    image_size: tuple[int, int] = (96, 96)  # (H, W)
    action_dim: int = 4
    proprio_dim: int = 4
    instruction_dim: int = INSTRUCTION_DIM

    # ---- derived sizes (properties, not stored)
    @property
    def num_views(self) -> int:
        return len(self.views)

    @property
    def patches_per_view(self) -> int:
        return (self.image_size[0] // self.patch) * (self.image_size[1] // self.patch)

    @property
    def view_tokens(self) -> int:
        """Tokens of one frame of all views, V * Np (the sight-cone mask is this square)."""
        return self.num_views * self.patches_per_view

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"model config has unknown fields {unknown}")
        d = dict(d)
        d["views"] = tuple(d.get("views", ()))
        d["image_size"] = tuple(d.get("image_size", (96, 96)))
        return ModelConfig(**d).validate()

    def validate(self) -> "ModelConfig":
        if self.mode not in ("event", "unified"):
            raise ConfigError(f"model config {self.name!r}: mode must be 'event' or 'unified', got {self.mode!r}")
        if self.width % self.heads:
            raise ConfigError(f"model config {self.name!r}: width {self.width} is not divisible by heads {self.heads}")
        H, W = self.image_size
        if H % self.patch or W % self.patch:
            raise ConfigError(f"model config {self.name!r}: image size {H}x{W} is not divisible by patch {self.patch}")
        if self.latent_dim > 3 * self.patch * self.patch:
            raise ConfigError(f"model config {self.name!r}: latent_dim {self.latent_dim} exceeds the patch size 3*{self.patch}^2")
        if self.horizon < 1 or self.flow_steps < 1 or self.n_future < 1:
            raise ConfigError(f"model config {self.name!r}: horizon, flow_steps and n_future must be >= 1")
        return self

    def check_data(self, *, views=None, action_dim=None, proprio_dim=None, image_size=None, where: str = "data") -> None:
        """ConfigError naming both values when the data does not fit this (resolved) config."""
        if views is not None and len(views) != self.num_views:
            raise ConfigError(f"checkpoint expects {self.num_views} views {list(self.views)}, {where} has {len(views)} views {list(views)}")
        if views is not None and tuple(views) != self.views:
            raise ConfigError(f"checkpoint expects views {list(self.views)} in this order, {where} has {list(views)}")
        if action_dim is not None and action_dim != self.action_dim:
            raise ConfigError(f"checkpoint expects action dim {self.action_dim}, {where} has action dim {action_dim}")
        if proprio_dim is not None and proprio_dim != self.proprio_dim:
            raise ConfigError(f"checkpoint expects proprio dim {self.proprio_dim}, {where} has proprio dim {proprio_dim}")
        if image_size is not None and tuple(image_size) != tuple(self.image_size):
            raise ConfigError(f"checkpoint expects image size {list(self.image_size)}, {where} has {list(image_size)}")


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(name="tiny"),
    "student": ModelConfig(
        name="student", width=96, depth=3, heads=4, latent_dim=16, horizon=16, flow_steps=2,
        reasoner_width=64, reasoner_depth=1,
    ),
    # teacher: the widest that keeps a float32 checkpoint under 20 MB (the committed-checkpoint limit) at
    # 96x96 x 3 views in both modes (event 4.74 M params, unified 4.89 M)
    "teacher": ModelConfig(
        name="teacher", width=176, depth=4, heads=8, latent_dim=16, horizon=16, flow_steps=10,
        reasoner_width=64, reasoner_depth=2,
    ),
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model preset {name!r}; available: {', '.join(PRESETS)}") from None


def resolve(preset: str | ModelConfig, **overrides) -> ModelConfig:
    """The preset with data fields (views, image_size, action_dim, proprio_dim) and any overrides set."""
    cfg = get_preset(preset) if isinstance(preset, str) else preset
    if "views" in overrides:
        overrides["views"] = tuple(overrides["views"])
    if "image_size" in overrides:
        overrides["image_size"] = tuple(int(x) for x in overrides["image_size"])
    bad = sorted(set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)})
    if bad:
        raise ConfigError(f"unknown model config fields {bad}")
    return dataclasses.replace(cfg, **overrides).validate()
