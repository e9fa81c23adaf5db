"""`wallwm-edge data generate | check | stats | import-lerobot | export-lerobot`."""

from __future__ import annotations

import argparse
import json
import sys

from wallwm_edge.errors import ConfigError

GENERATE_EXAMPLE = """\
example:
  wallwm-edge data generate --out data/mw --tasks pick-place-v3,reach-v3 --episodes-per-task 4 --size 64
"""
CHECK_EXAMPLE = """\
example:
  wallwm-edge data check data/mw            one line per problem: episode, field, frame, view
  wallwm-edge data check data/mw --json     the same as JSON (exit status 1 if there are errors)
"""
STATS_EXAMPLE = """\
example:
  wallwm-edge data stats data/mw --plot event_lengths.png
"""
IMPORT_EXAMPLE = """\
example:
  wallwm-edge data import-lerobot ~/lerobot/aloha_sim --out data/aloha
"""
EXPORT_EXAMPLE = """\
example:
  wallwm-edge data export-lerobot data/mw --out lerobot/mw          then: LeRobotDataset("mw", root="lerobot/mw")
  wallwm-edge data export-lerobot data/mw --out lerobot/mw --vcodec h264
"""


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _size(s: str) -> tuple[int, int]:
    try:
        parts = [int(x) for x in s.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be N or HxW, got {s!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"--size must be N or HxW with positive numbers, got {s!r}")
    return parts[0], parts[1]


def _progress(desc: str):
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, unit="ep", file=sys.stderr, disable=None)


def register(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("data", help="generate, check, inspect and import datasets", description="Datasets of multi-view episodes with events.",
        epilog="examples:\n  wallwm-edge data generate --out data/mw\n  wallwm-edge data check data/mw\n  wallwm-edge data stats data/mw\n", formatter_class=fmt)
    sub = p.add_subparsers(title="data commands", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    g = sub.add_parser("generate", help="simulate Meta-World episodes with the scripted experts", epilog=GENERATE_EXAMPLE, formatter_class=fmt)
    g.add_argument("--out", required=True, help="dataset folder to create")
    g.add_argument("--tasks", type=_csv, default=None, help="comma-separated Meta-World task names (default: the generator's default set)")
    g.add_argument("--episodes-per-task", type=int, default=None, help="episodes per task (default: the generator's, 4)")
    g.add_argument("--size", type=_size, default=None, help="image size N or HxW (default: the generator's, 96)")
    g.add_argument("--views", type=_csv, default=None, help="comma-separated MuJoCo camera names (default: corner,topview,gripperPOV)")
    g.add_argument("--seed", type=int, default=0, help="base seed; the same seed gives the same dataset (default 0)")
    g.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    g.add_argument("--resume", action="store_true", help="complete an existing dataset at --out instead of refusing it")
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("check", help="validate a dataset, naming episode, field and frame of each problem", epilog=CHECK_EXAMPLE, formatter_class=fmt)
    c.add_argument("path", help="dataset folder")
    c.add_argument("--json", action="store_true", help="print the problems as JSON")
    c.add_argument("--no-checksums", action="store_true", help="skip sha256 verification (faster; size checks still catch truncation)")
    c.add_argument("--strict", action="store_true", help="fail on warnings too")
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("stats", help="counts, event statistics, action/proprio moments", epilog=STATS_EXAMPLE, formatter_class=fmt)
    s.add_argument("path", help="dataset folder")
    s.add_argument("--json", action="store_true", help="print the statistics as JSON")
    s.add_argument("--plot", default=None, metavar="OUT.png", help="write a histogram of event lengths per track")
    s.set_defaults(func=cmd_stats)

    i = sub.add_parser("import-lerobot", help="convert a local LeRobot v3 dataset folder", epilog=IMPORT_EXAMPLE, formatter_class=fmt)
    i.add_argument("dir", help="LeRobot v3 dataset folder (with meta/info.json)")
    i.add_argument("--out", required=True, help="dataset folder to create")
    i.add_argument("--episodes", type=lambda s: [int(x) for x in _csv(s)], default=None, help="comma-separated episode indices (default all)")
    i.add_argument("--size", type=_size, default=None, help="resize frames to N or HxW (default: keep the video size)")
    i.add_argument("--rig", default=None, help="rig file (wallwm-rig/1) with the cameras' calibration; default: placeholder cameras flagged uncalibrated")
    i.set_defaults(func=cmd_import_lerobot)

    x = sub.add_parser("export-lerobot", help="write a dataset as a LeRobot v3 folder (events as language columns)", epilog=EXPORT_EXAMPLE, formatter_class=fmt)
    x.add_argument("dataset", help="our dataset folder")
    x.add_argument("--out", required=True, help="LeRobot dataset folder to create")
    x.add_argument("--vcodec", default="libsvtav1", choices=["libsvtav1", "h264", "hevc"], help="video encoder (default: LeRobot's, libsvtav1 = AV1)")
    x.add_argument("--robot-type", default=None, help="info.json robot_type (default: the imported robot's, else none)")
    x.set_defaults(func=cmd_export_lerobot)


def cmd_generate(args) -> int:
    if (args.episodes_per_task is not None and args.episodes_per_task <= 0) or args.workers <= 0:
        raise ConfigError("--episodes-per-task and --workers must be positive")
    from wallwm_edge.sim.generate import generate_dataset

    kwargs = dict(out=args.out, seed=args.seed, workers=args.workers, exist_ok=args.resume)
    for key, value in (("tasks", args.tasks), ("views", args.views), ("image_size", args.size), ("episodes_per_task", args.episodes_per_task)):
        if value is not None:
            kwargs[key] = value
    summary = generate_dataset(**kwargs)
    if isinstance(summary, dict) and "episodes" in summary:
        failed = summary.get("failed_episodes") or []
        print(f"wrote {summary['episodes']} episode(s), {summary.get('frames', '?')} frames to {args.out} in {summary.get('seconds', 0):.1f} s"
              + (f"; expert failed on {len(failed)}: {', '.join(failed)}" if failed else ""))
    print(f"next: wallwm-edge data check {args.out}")
    return 0


def cmd_check(args) -> int:
    from wallwm_edge.data.check import check_dataset

    problems = check_dataset(args.path, checksums=not args.no_checksums, progress=_progress("check"))
    n_err = sum(p.severity == "error" for p in problems)
    n_warn = len(problems) - n_err
    failed = n_err > 0 or (args.strict and n_warn > 0)
    if args.json:
        print(json.dumps({"path": str(args.path), "ok": not failed, "errors": n_err, "warnings": n_warn, "problems": [p.to_json() for p in problems]}, indent=1))
    else:
        for p in problems:
            print(p)
        verdict = "FAILED" if failed else "OK"
        print(f"{args.path}: {verdict} ({n_err} error(s), {n_warn} warning(s))", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def cmd_stats(args) -> int:
    from wallwm_edge.data.stats import dataset_stats, format_stats, plot_event_lengths

    st = dataset_stats(args.path, progress=_progress("stats"))
    print(json.dumps(st.to_json(), indent=1) if args.json else format_stats(st))
    if args.plot:
        print(f"wrote {plot_event_lengths(st, args.plot)}", file=sys.stderr)
    return 0


def cmd_import_lerobot(args) -> int:
    from wallwm_edge.data.lerobot import import_lerobot

    ds = import_lerobot(args.dir, args.out, episodes=args.episodes, image_size=args.size, rig=args.rig, progress=_progress("import"))
    print(f"imported {len(ds)} episode(s) into {args.out}; next: wallwm-edge data check {args.out}")
    return 0


def cmd_export_lerobot(args) -> int:
    from wallwm_edge.data.lerobot_export import export_lerobot

    out = export_lerobot(args.dataset, args.out, vcodec=args.vcodec, robot_type=args.robot_type, progress=_progress("export"))
    print(f"wrote LeRobot v3.0 dataset {out}; load it with LeRobotDataset(repo_id, root={str(out)!r})")
    return 0
