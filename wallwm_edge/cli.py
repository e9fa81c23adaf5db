"""`wallwm-edge <command>`: the product's one entry point.

Each component registers its own subcommands: the module named in COMMANDS exposes
`register(subparsers)`, which adds a parser and sets `func`. Those modules must stay light at import
time (heavy imports such as torch or mujoco go inside the handlers) so that `--help` is instant and the
on-board `run` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from wallwm_edge import __version__
from wallwm_edge.errors import WallwmError

# Order is the order shown in --help. A module that does not exist yet is skipped, so the CLI works
# while the project grows.
COMMAND_MODULES = [
    "wallwm_edge.data.cli",  # data generate | check | stats | import-lerobot
    "wallwm_edge.train.cli",  # train
    "wallwm_edge.train.distill_cli",  # distill
    "wallwm_edge.serve.cli",  # serve
    "wallwm_edge.eval.cli",  # eval
    "wallwm_edge.export.cli",  # quantize, export, export-encoder
    "wallwm_edge.calibration.cli",  # calibrate (+ calibrate check)
    "wallwm_edge.runtime.cli",  # run, demo
    "wallwm_edge.bridge.cli",  # bridge, fw-sim
    "wallwm_edge.bench",  # bench NAME
]

EPILOG = """\
examples:
  wallwm-edge demo                          run the shipped student on the simulated rig and firmware
  wallwm-edge data generate --out data/mw   make a small simulated multi-view dataset
  wallwm-edge data check data/mw            validate it, naming episode, field and frame of each problem
  wallwm-edge <command> --help              options and an example for each command
"""


def comma_list(s: str) -> tuple[str, ...]:
    """argparse type for "a,b,c" options: the non-empty, stripped items."""
    return tuple(x.strip() for x in s.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wallwm-edge",
        description="Train, distill, export, calibrate and run the WALL-WM event-grounded policy on the edge.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wallwm-edge {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name.startswith(e.name):
                continue  # component not present in this build
            raise
        module.register(sub)
    return parser


def quiet_third_party() -> None:
    """Keep other libraries' chatter out of the commands' output: torchvision's import-time warnings
    (pulled in by transformers), transformers' info logs and its per-load "Loading weights" bar. A user
    who sets HF_HUB_DISABLE_PROGRESS_BARS / TRANSFORMERS_VERBOSITY keeps their own choice."""
    warnings.filterwarnings("ignore", module=r"torchvision(\.|$)")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: list[str] | None = None) -> int:
    quiet_third_party()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except WallwmError as e:  # one line, whatever the message quotes: control characters escaped, length bounded
        from wallwm_edge.validate import one_line

        print(f"wallwm-edge: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wallwm-edge: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
