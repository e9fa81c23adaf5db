"""`wallwm-edge run` (the on-board loop) and `wallwm-edge demo` (run on the embedded default).

Light at import time and torch-free when run: a test asserts that torch never enters sys.modules.
"""

from __future__ import annotations

import argparse
import signal

RUN_EXAMPLES = """\
examples:
  wallwm-edge run                                   shipped student, simulated rig, simulated firmware
  wallwm-edge run --task push-v3 --seed 3 --out runs/push
  wallwm-edge run --plan plan.json                  events from a plan file (JSON or YAML)
  wallwm-edge run --interactive                     type each next event at a prompt
  wallwm-edge run --sync                            synchronous baseline (no inference while a chunk plays)
  wallwm-edge run --source opencv:0,2,4 --rig rig.json --port serial:/dev/ttyUSB0    on a robot
  wallwm-edge run --inject overrun@3:1.5 --inject disconnect@5:0.8                   fault drills
"""


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("policy")
    g.add_argument("--student", default="", help="exported student: folder, .onnx or .json (default: checkpoints/student)")
    g.add_argument("--engine", default="cpu", choices=["cpu", "tensorrt", "trt"],
                   help="onnxruntime CPU, TensorRT via onnxruntime-gpu, or trt: TensorRT's runtime on the `export --trt` engine (CuPy)")
    g.add_argument("--precision", default="auto", help="which export of the folder: auto, fp32, int8, fp16 (default auto)")
    g.add_argument("--threads", type=int, default=1, help="inference threads (default 1: the loop keeps a core)")
    g.add_argument("--unified", action="store_true", help="unified mode: fixed-length chunks from the task instruction")
    g.add_argument("--rtc", default="auto", choices=["auto", "inpaint", "align"],
                   help="real-time chunking: inpaint the committed prefix (needs the step graph), or align only (default auto)")
    g = p.add_argument_group("task")
    g.add_argument("--task", default="pick-place-v3", help="Meta-World task of the simulated cell (default pick-place-v3)")
    g.add_argument("--seed", type=int, default=0, help="scene and noise seed (default 0)")
    g.add_argument("--plan", default="", help="plan file mapping tasks to event lists (default: the task's registry events)")
    g.add_argument("--interactive", action="store_true", help="type the next event at a prompt")
    g.add_argument("--event-cap", type=int, default=120, help="safety cap: steps per event before the planner moves on")
    g = p.add_argument_group("robot")
    g.add_argument("--source", default="sim", help="cameras: sim, opencv:DEV[,DEV...] (one per view) or folder:PATH")
    g.add_argument("--rig", default="", help="rig file (default: the simulator's; required for real cameras)")
    g.add_argument("--port", default="", help="firmware link, e.g. serial:/dev/ttyUSB0 (default: start the simulated firmware)")
    g.add_argument("--rate", type=float, default=20.0, help="control steps (= chunk points) per second (default 20)")
    g = p.add_argument_group("run")
    g.add_argument("--max-steps", type=int, default=300, help="stop after this many control steps (default 300)")
    g.add_argument("--max-chunks", type=int, default=0, help="stop after this many chunks (default: no limit)")
    g.add_argument("--sync", action="store_true", help="synchronous baseline: infer only when the firmware is idle")
    g.add_argument("--out", default="", help="report folder (default runs/run-TIMESTAMP)")
    g.add_argument("--no-gif", action="store_true", help="skip the episode GIF")
    g.add_argument("--no-status", action="store_true", help="no live status line")
    g.add_argument("--inject", action="append", default=[], metavar="FAULT",
                   help="fault drill: drop_frame@CHUNK, overrun@CHUNK:SECONDS, disconnect@CHUNK:SECONDS (repeatable)")


def config_from_args(args):
    from wallwm_edge.runtime.loop import Faults, RunConfig

    return RunConfig(
        student=args.student, engine=args.engine, precision=args.precision, threads=args.threads, unified=args.unified,
        task=args.task, seed=args.seed, plan=args.plan, interactive=args.interactive, event_cap=args.event_cap,
        source=args.source, rig=args.rig, port=args.port, rate_hz=args.rate, max_steps=args.max_steps,
        max_chunks=args.max_chunks, sync=args.sync, out=args.out, gif=not args.no_gif, status=not args.no_status,
        faults=Faults.parse(args.inject), rtc=args.rtc,
    )


def summary(result) -> str:
    r = result.report
    lines = [f"run ended: {r['reason']}" + (f" ({r['error']})" if r.get("error") else "")]
    if "success" in r:
        lines.append(f"  task {r['task']}: success {r['success']}, Task Progress {r['task_progress']:.0f} "
                     f"({r['events_completed']}/{r['events_total']} events)")
    for ev in r.get("events", []):
        end = ev["end"] if ev["end"] is not None else "..."
        lines.append(f"    event {ev['instruction']!r}: steps {ev['start']}-{end} ({ev['reason'] or 'not finished'})")
    ot = r["on_time"]
    if ot["steps"]:
        lines.append(f"  control steps served on time: {ot['served']}/{ot['steps']} = {100 * ot['share']:.1f}% at {r['rate_hz']:g} Hz ({r['scheduler']})")
    for stage, s in r["latency"].items():
        if s["n"]:
            lines.append(f"  {stage:<9} p50 {s['p50_ms']:7.2f} ms   p99 {s['p99_ms']:7.2f} ms   (n={s['n']})")
    c = r["counters"]
    lines.append(f"  chunks {c['chunks']}, frames dropped {c['frames_dropped']}, overruns {c['overruns']}, "
                 f"link lost {c['link_lost']} / restored {c['link_restored']}")
    lines.append(f"  report: {result.out}/report.json, latency.png, {'episode.gif, ' if r.get('gif') else ''}log.jsonl, fw.log")
    return "\n".join(lines)


def _check_student_folder(folder) -> None:
    """The *.json files the student lookup reads in `folder`: a FIFO would block it for ever and JSON nested
    thousands deep would crash it, so both are refused here, naming the file (other bad JSON is skipped there)."""
    import json

    from wallwm_edge.errors import DataError
    from wallwm_edge.validate import MAX_JSON_BYTES, regular_file

    for j in sorted(folder.glob("*.json")):
        if j.is_dir():
            continue
        if regular_file(j) > MAX_JSON_BYTES:
            raise DataError(f"{j}: larger than the {MAX_JSON_BYTES} bytes a sidecar may have")
        try:
            json.loads(j.read_bytes())
        except RecursionError:
            raise DataError(f"{j}: JSON nested too deeply") from None
        except ValueError:
            pass  # not a sidecar; the lookup skips it


def check_inputs(args) -> None:
    """Validate the files `run` reads (student sidecar with its rig, --rig) before the run folder is made,
    so bad input gets one line and leaves nothing behind. torch-free, like the run itself."""
    from pathlib import Path

    from wallwm_edge.calibration.rig import Rig
    from wallwm_edge.export.sidecar import read_sidecar
    from wallwm_edge.runtime.engine import find_student
    from wallwm_edge.runtime.loop import default_student

    student = Path(args.student) if args.student else default_student()
    if student.is_dir():
        _check_student_folder(student)
    read_sidecar(find_student(student, args.precision))
    if args.rig:
        Rig.load(args.rig)
    if args.plan and not args.unified:  # a folder or FIFO would raise or block inside the run, after its folder is made
        from wallwm_edge.errors import DataError
        from wallwm_edge.runtime.planner import load_plans, registry_catalog
        from wallwm_edge.validate import load_json, regular_file

        regular_file(args.plan, DataError, "plan file not found")
        if Path(args.plan).suffix.lower() not in (".yaml", ".yml"):
            load_json(args.plan)  # size, encoding and nesting depth checked before the planner parses it
        load_plans(args.plan, registry_catalog())


def _run(args) -> int:
    from wallwm_edge.runtime.loop import run

    check_inputs(args)

    def on_term(signum, frame):  # SIGTERM ends the run like Ctrl-C: hold, shut down, write the report
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even where the shell started us ignoring it
    result = run(config_from_args(args))
    print(summary(result), flush=True)
    return 130 if result.reason == "interrupted" else 0


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="the on-board loop: cameras -> student -> chunk scheduler -> firmware (torch-free)",
        description="Run the exported student on board: capture the views, take next-event instructions, compute "
        "variable-length action chunks while the current one plays, and stream them to the arm's firmware. "
        "With no arguments: the shipped student on the simulated Meta-World rig through the simulated firmware.\n\n" + RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_args(p)
    p.set_defaults(func=_run)
    d = sub.add_parser(
        "demo",
        help="run the shipped student on the simulated rig and firmware (= `run` with its defaults)",
        description="The embedded default: `wallwm-edge run` with no arguments. Takes the same options.\n\n"
        "example:\n  wallwm-edge demo --out runs/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_args(d)
    d.set_defaults(func=_run)


