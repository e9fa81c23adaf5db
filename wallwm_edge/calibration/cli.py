"""`wallwm-edge calibrate run | check | board | synth`.

Light at import time: cv2, scipy and matplotlib are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wallwm_edge.errors import WallwmError

EXAMPLES = """\
examples:
  wallwm-edge calibrate board --board charuco_a4 --out calibration/sheets     printable PNG + PDF
  wallwm-edge calibrate synth --out /tmp/capture                               a sample capture to try
  wallwm-edge calibrate run /tmp/capture --out rig.json --report /tmp/report   calibrate, write rig + report
  wallwm-edge calibrate run capture_gripper/ capture_table/ --out rig.json      several captures, one joint adjustment
  wallwm-edge calibrate synth --out /tmp/recheck --bump cam1                   the same rig, cam1 knocked
  wallwm-edge calibrate check rig.json /tmp/recheck --out rig_fixed.json       which camera moved?
"""


class CalibrationInsufficient(WallwmError):
    """The capture does not determine some camera; the rig is not written unless --force."""


def _sessions(args):
    from wallwm_edge.calibration.board import Board
    from wallwm_edge.calibration.detect import detect, open_capture

    board = Board.load(args.board) if args.board else None
    wrist = args.wrist.split(",") if args.wrist else None
    # every folder checked (board, mount, arm poses) before any image is read: a bad file costs no detection time
    captures = [open_capture(f, board, args.mount, wrist) for f in args.captures]
    return [detect(c, every=args.every, progress=True) for c in captures]


def _run(args) -> int:
    from tqdm import tqdm

    from wallwm_edge.calibration import report
    from wallwm_edge.calibration.solve import CalibrateConfig, calibrate

    sessions = _sessions(args)
    n_cams = len({c for s in sessions for c in s.sizes})
    with tqdm(total=n_cams + 2, desc="calibrate", leave=False) as bar:
        cal = calibrate(sessions, CalibrateConfig(reference=args.reference), progress=bar.update)
    html = report.write(cal, args.report)
    print(cal.verdict)
    for q in cal.cameras:
        print(f"  {q.name:12s} {q.status:12s} views {q.n_views:3d}  RMS {q.rms_px:.3f} px  focal +-{q.focal_std_pct:.3f}%  "
              f"pose +-{q.rot_std_deg:.3f} deg / +-{q.centre_std_mm:.2f} mm")
        for a in q.advice:
            print(f"      - {a}")
    print(f"report: {html}")
    if not cal.ok and not args.force:
        raise CalibrationInsufficient(f"rig not written to {args.out}: the capture does not determine {', '.join(q.name for q in cal.cameras if q.status == 'insufficient')} "
                                      f"(see {html}); recapture, or pass --force to write it anyway")
    cal.rig.save(args.out)
    print(f"rig: {args.out} ({'robot base frame' if cal.absolute else f'frame of camera {cal.reference!r}'})")
    return 0


class RigMismatch(WallwmError):
    """The capture does not fit the rig at all (another rig, or a changed lens): nothing is written."""


def _check(args) -> int:
    from wallwm_edge.calibration.check import CheckConfig, check
    from wallwm_edge.calibration.rig import Rig

    rig = Rig.load(args.rig)
    sessions = _sessions(args)
    res = check(rig, sessions, CheckConfig(rot_tol_deg=args.rot_tol, trans_tol_mm=args.trans_tol,
                                           max_residual_px=args.max_residual, max_pnp_px=args.max_residual * 2 / 3))
    bad = res.mismatch
    for c in res.cameras:
        what = " (flange-to-camera)" if c.mount == "wrist" else ""
        if c.unchecked:
            print(f"  {c.name:12s} {'NOT CHECKED':11s} {c.unchecked}")
            continue
        state = "MISMATCH" if c.name in bad else "MOVED" if c.moved else "ok"
        if c.rot_deg != c.rot_deg:  # nan: not refitted (the capture does not fit the rig's lenses)
            line = f"  {c.name:12s} {state:11s} median residual {c.rms_before_px:.2f} px with the rig pose (pose not refitted)"
        elif c.moved:
            line = (f"  {c.name:12s} {state:11s} by {c.rot_deg:.3f} deg, {c.trans_mm:.2f} mm{what}; median residual "
                    f"{c.rms_before_px:.2f} px with the rig pose -> {c.rms_after_px:.2f} px refined")
        else:
            line = (f"  {c.name:12s} {state:11s} median residual {c.rms_before_px:.2f} px with the rig pose, {c.rms_after_px:.2f} px refitted "
                    f"(pose change {c.rot_deg:.3f} deg, {c.trans_mm:.2f} mm{what}: within noise)")
        print(line + f"; verified: {c.residual_px:.2f} px")
    checked = [c.name for c in res.cameras if not c.unchecked]
    summary = (f"moved: {', '.join(res.moved)}" if res.moved else f"no camera moved ({', '.join(checked)} fit the rig)")
    if res.unchecked:
        summary += f"; not checked: {', '.join(res.unchecked)}"
    print(f"checked in {res.seconds:.2f} s: {summary}")
    if bad:
        why = "; ".join(f"{k}: {v}" for k, v in bad.items())
        raise RigMismatch(f"{', '.join(args.captures)} does not fit {args.rig} ({why}): a capture of another rig, or a lens whose "
                          f"zoom or focus changed; a bump cannot explain it, so {args.out or 'no rig'} was not written. "
                          f"Recalibrate: wallwm-edge calibrate run {' '.join(args.captures)} --out {args.out or 'rig.json'}")
    if args.out:
        res.rig.save(args.out)
        print(f"rig with the moved camera(s) refined: {args.out}" if res.moved else
              f"nothing moved: {args.out} is {args.rig} unchanged")
    elif not res.moved:
        print(f"nothing moved: {args.rig} still fits")
    return 1 if res.moved and not args.out else 0


def _board(args) -> int:
    from wallwm_edge.calibration.board import Board

    board = Board.load(args.board)
    for p in board.write_sheet(args.out, dpi=args.dpi):
        print(p)
    return 0


def _bump_spec(text: str) -> tuple[str, float, float]:
    """argparse type for --bump CAM[:DEG[,MM]]."""
    name, _, amount = text.partition(":")
    try:
        parts = [float(x) for x in amount.split(",")] if amount else []
    except ValueError:
        parts = None
    if not name or parts is None or len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected CAM[:DEG[,MM]] (e.g. cam1 or cam1:1.5,8), got {text!r}")
    deg, mm = (parts + [BUMP_DEG, BUMP_MM][len(parts):])[:2]
    return name, deg, mm


BUMP_DEG, BUMP_MM = 1.0, 5.0


def _synth(args) -> int:
    from wallwm_edge.calibration import synthetic
    from wallwm_edge.calibration.board import Board

    table = args.mount == "static"  # the wrist camera alone over a board on the table (the fixed cameras see none of it)
    cfg = synthetic.SceneConfig(n_cameras=args.cameras, layout=args.layout, board_mount=args.mount, wrist=table, table_seen_by_fixed=not table,
                                n_frames=args.frames * (1 if table else args.cameras), seed=args.seed, board_distance=(0.3, 0.55), tilt_deg=(20, 55))
    scene = synthetic.make_scene(cfg, Board.load(args.board))
    if args.bump:
        name, deg, mm = args.bump
        if name not in scene.rig.names:
            raise WallwmError(f"--bump {name}: no such camera; the synthetic rig has {', '.join(scene.rig.names)}")
        scene = synthetic.bump(scene, name, deg, mm)
    counts = synthetic.write_capture(scene, args.out)
    scene.rig.save(Path(args.out) / "rig_truth.json")
    print(f"wrote {sum(counts.values())} images to {args.out} ({', '.join(f'{k}: {v}' for k, v in counts.items())}); "
          f"ground truth: {Path(args.out) / 'rig_truth.json'}")
    if args.bump:
        print(f"{args.bump[0]} bumped by {args.bump[1]:g} deg and {args.bump[2]:g} mm from the seed-{args.seed} rig; "
              f"next: wallwm-edge calibrate check rig.json {args.out} --out rig_fixed.json")
    return 0


def _capture_args(p, with_captures=True):
    if with_captures:
        p.add_argument("captures", nargs="+", help="capture folder(s): <camera>/*.png or <camera>.mp4, optional capture.json, arm_poses.json")
    p.add_argument("--board", help="board file or shipped name (calibration/boards/*.json); default: capture.json's")
    p.add_argument("--mount", choices=["free", "gripper", "static"], help="how the board is held (default: capture.json's, else free)")
    p.add_argument("--wrist", help="comma-separated wrist cameras (default: capture.json's; need arm poses and a static board)")
    p.add_argument("--every", type=int, default=10, help="for videos: use every N-th frame (default 10)")


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="calibrate the rig's cameras (intrinsics + poses), check a rig, print boards",
                       description="Field calibration of multi-view camera rigs.\n\n" + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(title="actions", metavar="ACTION")

    r = s.add_parser("run", help="calibrate from capture folders; writes the rig file and a report",
                     description="Detect the board, initialise each camera, adjust everything jointly, write rig + report.\n"
                                 "Several capture folders are adjusted together, each with its own board mount (gripper: the arm holds "
                                 "the board; static: it lies on the table and the arm moves the wrist camera; free: by hand); the arm's "
                                 "poses tie them into the robot base frame. Formats and frames: wallwm_edge/calibration/README.md.\n\n"
                                 "examples:\n  wallwm-edge calibrate run capture/ --board charuco_a4 --mount gripper --out rig.json\n"
                                 "  wallwm-edge calibrate run capture_gripper/ capture_table/ --out rig.json   (fixed cameras, then the wrist camera)",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _capture_args(r)
    r.add_argument("--out", default="rig.json", help="rig file to write (default rig.json)")
    r.add_argument("--report", default="calibration_report", help="folder for report.html and report.png")
    r.add_argument("--reference", help="camera defining the frame when no arm pose ties the rig to the base (default: first fixed)")
    r.add_argument("--force", action="store_true", help="write the rig even when the verdict is INSUFFICIENT")
    r.set_defaults(func=_run)

    c = s.add_parser("check", help="from a few new captures: which camera moved, by how much; refine only it",
                     description="Compare new captures with a rig; refine the moved camera(s) only. Every camera the captures show "
                                 "is checked, wrist cameras included (their flange-to-camera transform, from a capture where the arm "
                                 "moves them over a board lying still); each is listed with its median residual before and after.\n\n"
                                 "exit status: 0 nothing moved, or --out written; 1 a camera moved and no --out was given (the rig "
                                 "no longer fits); 2 bad input, or the capture does not fit the rig at all (nothing written).\n\n"
                                 "example:\n  wallwm-edge calibrate check rig.json recheck/ --out rig_fixed.json",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("rig", help="the rig file to check")
    _capture_args(c)
    c.add_argument("--out", help="write the rig with the moved camera(s) refined here (the rig unchanged when nothing moved)")
    c.add_argument("--rot-tol", type=float, default=0.15, help="degrees of rotation that count as moved (default 0.15)")
    c.add_argument("--trans-tol", type=float, default=1.5, help="millimetres that count as moved (default 1.5)")
    c.add_argument("--max-residual", type=float, default=1.5,
                   help="pixels: a camera whose median residual with the checked rig stays above this does not belong to it "
                        "(another rig, a changed lens); nothing is written (default 1.5)")
    c.set_defaults(func=_check)

    b = s.add_parser("board", help="write a board's printable sheet (PNG + PDF at true size)",
                     description="example:\n  wallwm-edge calibrate board --board charuco_a4 --out calibration/sheets",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--board", default="charuco_a4", help="board file or shipped name (default charuco_a4)")
    b.add_argument("--out", default=".", help="output folder")
    b.add_argument("--dpi", type=int, default=300)
    b.set_defaults(func=_board)

    y = s.add_parser("synth", help="render a synthetic capture with ground truth (to try the tool)",
                     description="Render a capture folder of a simulated rig (PNG per camera and frame, capture.json, "
                                 "arm_poses.json) and its ground truth OUT/rig_truth.json. The same --seed gives the same rig, "
                                 "so a second capture with --bump tries `calibrate check` on it.\n\n"
                                 "examples:\n  wallwm-edge calibrate synth --out capture/\n"
                                 "  wallwm-edge calibrate run capture/ --out rig.json\n"
                                 "  wallwm-edge calibrate synth --out capture_table/ --mount static   (the wrist camera over the table)\n"
                                 "  wallwm-edge calibrate run capture/ capture_table/ --out rig.json\n"
                                 "  wallwm-edge calibrate synth --out new_capture/ --bump cam1      (cam1 moved by 1 deg, 5 mm)\n"
                                 "  wallwm-edge calibrate check rig.json new_capture/ --out rig_fixed.json",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    y.add_argument("--out", required=True, help="capture folder to write")
    y.add_argument("--cameras", type=int, default=3, help="fixed cameras in the rig, named cam0, cam1, ... (default 3)")
    y.add_argument("--layout", choices=["overlap", "chain", "none"], default="none",
                   help="which cameras see the board together: none (one camera per frame, tied by the arm poses; default), "
                        "chain (neighbours), overlap (several)")
    y.add_argument("--mount", choices=["free", "gripper", "static"], default="gripper",
                   help="gripper: the arm holds the board, arm_poses.json written (default); free: moved by hand; static: the board "
                        "lies on the table and the arm moves the wrist camera 'wrist' over it (only it has images; the same --seed "
                        "gives the same fixed cameras, so `calibrate run` adjusts a gripper capture and this one together)")
    y.add_argument("--frames", type=int, default=15, help="board poses per camera (default 15: 45 images for 3 cameras; with "
                                                          "--mount static, arm poses of the wrist camera)")
    y.add_argument("--board", default="charuco_a4", help="board file or shipped name (default charuco_a4, as `calibrate board`)")
    y.add_argument("--seed", type=int, default=0, help="the rig and the board poses (default 0)")
    y.add_argument("--bump", type=_bump_spec, default=None, metavar="CAM[:DEG[,MM]]",
                   help=f"move one camera of the rig by DEG degrees and MM millimetres (default {BUMP_DEG:g} deg, {BUMP_MM:g} mm), "
                        "as a knock would")
    y.set_defaults(func=_synth)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


if __name__ == "__main__":  # pragma: no cover
    from wallwm_edge.cli import main

    sys.exit(main(["calibrate", *sys.argv[1:]]))
