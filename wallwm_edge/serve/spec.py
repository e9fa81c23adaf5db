"""What a server says about itself before anything else, and the refusal of a mismatch (torch-free).

The metadata is the first message on every connection (openpi's order). Besides openpi's free-form
fields it carries the observation spec a client must match: views (in order), image_size, action_dim,
proprio_dim, instruction_dim, horizon, mode, flow_steps; the model config (a student needs the
teacher's interface to be built); and the checkpoint's provenance (sha256, step, train split), so a
distillation run records which teacher labelled it and caches its labels per teacher.
"""

from __future__ import annotations

from wallwm_edge.errors import WallwmError

PROTOCOL = "wallwm-serve/1"
SPEC_FIELDS = ("views", "image_size", "action_dim", "proprio_dim", "instruction_dim", "horizon", "mode", "flow_steps")


class ServeError(WallwmError):
    """The policy server cannot be reached, answered with an error, or serves a model that does not fit."""


def check_spec(metadata: dict, url: str, **expected) -> None:
    """ServeError in one line naming the URL and both values when the served spec differs from `expected`
    (views, image_size, action_dim, ... ; None entries are not checked)."""
    if not isinstance(metadata, dict) or metadata.get("protocol") != PROTOCOL:
        got = metadata.get("protocol") if isinstance(metadata, dict) else type(metadata).__name__
        raise ServeError(f"{url}: not a wallwm-edge policy server (protocol {got!r}, expected {PROTOCOL!r})")
    for key, want in expected.items():
        if want is None:
            continue
        have = metadata.get(key)
        norm = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)
        if norm(have) != norm(want):
            raise ServeError(f"{url}: the served model expects {key} {norm(have)}, this run has {norm(want)} "
                             f"(serve a checkpoint trained on this data, or pick the matching dataset)")
