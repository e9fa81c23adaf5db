"""`wallwm-edge bridge` (stream a chunk file to the arm) and `wallwm-edge fw-sim` (the simulated firmware)."""

from __future__ import annotations

import argparse

PORTS = """\
ports:
  serial:/dev/ttyUSB0?baud=1000000   UART / USB adapter (COBS frames), any pyserial URL
  serial:/dev/pts/3                  a pseudo-terminal (e.g. the one `wallwm-edge fw-sim` prints)
  can:socketcan:can0                 SocketCAN, classic 8-byte frames; add ?fd=1 for CAN-FD 64-byte frames
  can:virtual:NAME                   python-can's in-process virtual bus
"""


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _positive(text: str) -> float:
    v = _non_negative(text)
    if v == 0:
        raise argparse.ArgumentTypeError("expected a rate > 0, got 0")
    return v


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return v


def _load_chunks(path: str):
    import numpy as np

    from wallwm_edge.errors import DataError
    from wallwm_edge.validate import npy_header, regular_file

    # Checked before reading: a FIFO would block, a header declaring 240 GB would be allocated.
    if path.endswith(".npy"):
        shape, dtype, _ = npy_header(path)
        if len(shape) not in (2, 3) or dtype.kind not in "fiu":
            raise DataError(f"{path}: expected (L, D) or (N, L, D) numeric points, got shape {shape} dtype {dtype}")
    else:
        regular_file(path)
    try:
        a = np.load(path) if path.endswith(".npy") else np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read chunk file: {e}") from None
    if a.ndim == 2:
        return [a]
    if a.ndim == 3:
        return list(a)
    raise DataError(f"{path}: expected (L, D) or (N, L, D) points, got shape {a.shape}")


def _bridge(args) -> int:
    from tqdm import tqdm

    from wallwm_edge.bridge import protocol as P
    from wallwm_edge.bridge.firmware import open_simulated_link
    from wallwm_edge.bridge.link import ArmLink
    from wallwm_edge.bridge.playback import estop_remedy, play
    from wallwm_edge.errors import LinkError

    chunks = _load_chunks(args.file)
    # the simulator shares this machine's CPUs with the host (a real firmware has its own): a watchdog
    # deadline that a busy machine's scheduler cannot miss, as the tests use
    sim = open_simulated_link(hold_ms=1000, estop_ms=4000) if args.port == "sim" else None
    link = sim.link if sim else ArmLink.open(args.port)
    try:
        a = link.arm
        print(f"arm: {a.n_joints} joints{' + gripper' if a.has_gripper else ''}, control {a.control_rate_hz} Hz, "
              f"queue {a.queue_points} points, watchdog {a.watchdog_hold_ms}/{a.watchdog_estop_ms} ms")
        st = link.wait_state(lambda s: True, 5.0)
        if args.reset:
            link.reset()
            print(f"reset: queue and faults cleared{' (e-stop released)' if st.mode == P.Mode.ESTOP else ''}")
        elif st.mode == P.Mode.ESTOP:  # every chunk would be refused: say why and what clears it
            raise LinkError(f"{estop_remedy(args.port)} (faults: {', '.join(st.fault_names) or 'none'})")
        bar = tqdm(total=len(chunks), desc="chunks", unit="chunk", disable=len(chunks) < 2)

        def queued(t):
            print(f"chunk {t.chunk_id}: {t.length} points queued in {(t.t_queued - t.t_ready) * 1e3:.2f} ms "
                  f"(crc {t.crc:08x})")
            bar.update()

        try:
            rep = play(link, chunks, blend=args.blend, rate_hz=args.rate, every=args.every, wait=args.wait,
                       on_queued=queued, encoding=args.encoding, space=args.space, interp=args.interp)
        except LinkError as e:
            try:  # the NACK that refused a chunk can arrive before the STATE that shows the e-stop
                link.wait_state(lambda s: s.mode == P.Mode.ESTOP, 1.0)
            except LinkError:
                raise e from None
            raise LinkError(f"{e}; {estop_remedy(args.port)}") from None
        finally:
            bar.close()
        if args.wait == 0:
            print(f"sent {rep.chunks} chunks; not waiting for them to play (--wait 0): the session ends now and "
                  f"the firmware drops what has not played, holding the arm where it is")
            return 0
        print(rep.line())
        if rep.problems:
            more = f"; and {len(rep.problems) - 3} more" if len(rep.problems) > 3 else ""
            estop = rep.state is not None and rep.state.mode == P.Mode.ESTOP
            raise LinkError(f"the stream did not play as sent: {'; '.join(rep.problems[:3])}{more}"
                            f"{'; ' + estop_remedy(args.port) if estop else ''}")
    finally:
        # a clean end of session (BYE): the firmware's watchdog, which would hold and then e-stop the arm a
        # second later, is for a host that vanishes mid-stream
        sim.close() if sim else link.end_session()
    return 0


def _fw_sim(args) -> int:
    import os

    from wallwm_edge.bridge.firmware import find_fw_sim

    exe = find_fw_sim()
    cmd = [str(exe)]
    if args.can:
        cmd += ["--can", args.can] + (["--fd"] if args.fd else [])
    elif args.device:
        cmd += ["--device", args.device]
    else:
        cmd += ["--pty"]
    cmd += ["--joints", str(args.joints), "--control-rate", str(args.control_rate), "--hold-ms", str(args.hold_ms),
            "--estop-ms", str(args.estop_ms), "--log", args.log]
    print("starting", " ".join(cmd), flush=True)
    # become the simulator: signals (Ctrl-C, SIGTERM, SIGUSR1 = reboot) then reach it directly
    os.execv(str(exe), cmd)
    return 0  # not reached


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "bridge", help="stream an action-chunk file to the arm's firmware", formatter_class=fmt,
        description="Stream chunks from a .npy ((L, D) or (N, L, D)) or .csv ((L, D)) file to the firmware over "
                    "serial or CAN, with flow control, retransmission and chunk-boundary blending.\n\n" + PORTS +
                    "  sim                                start a simulated firmware on a fresh pty and use it\n"
                    "                                     (watchdog 1000/4000 ms: it shares this machine's CPUs)\n\n"
                    "Each chunk plays in full after the previous one (--blend append); with replace or ensemble the "
                    "next chunk is sent once the arm has reached row --every of the current one and takes over its rest. "
                    "The command waits for the stream to play and prints 'played N of M chunks / S steps'; a chunk "
                    "that was dropped or preempted before it moved the arm, or an underrun mid-stream, makes it "
                    "exit non-zero. It ends its session cleanly, so the firmware's watchdog does not trip.\n\n"
                    "examples:\n"
                    "  wallwm-edge bridge chunks.npy --port sim\n"
                    "  wallwm-edge bridge chunks.npy --port serial:/dev/pts/3 --blend ensemble --every 8\n"
                    "  wallwm-edge bridge chunk.csv --port serial:/dev/ttyACM0 --rate 30 --reset\n"
                    "  wallwm-edge bridge chunks.npy --port can:socketcan:can0?fd=1 --encoding float16")
    p.add_argument("file", help=".npy or .csv chunk file: rows are points, columns joints (or pose) + gripper")
    p.add_argument("--port", default="sim", help="where the firmware is (see ports above; default: sim)")
    p.add_argument("--rate", type=_positive, default=50.0, help="chunk point rate in Hz (default 50)")
    p.add_argument("--blend", default="append", choices=["append", "replace", "ensemble"],
                   help="what a new chunk does to the unplayed rest of the previous one (default append: a file's "
                        "chunks play one after the other, every row)")
    p.add_argument("--every", type=_positive_int, metavar="K",
                   help="with replace/ensemble: send the next chunk once the arm reaches row K of the current one "
                        "(default: half the chunk)")
    p.add_argument("--encoding", default="int16", choices=["int16", "float16", "float32"],
                   help="wire encoding of the points (default int16 against the arm's limits)")
    p.add_argument("--space", default="joint", choices=["joint", "ee"], help="joint targets or end-effector pose")
    p.add_argument("--interp", default="linear", choices=["linear", "cubic"], help="firmware interpolation")
    p.add_argument("--wait", type=_non_negative, metavar="S",
                   help="wait up to S seconds for the stream to finish playing (default: its playing time plus "
                        "10 s; 0: do not wait, the firmware then drops what has not played)")
    p.add_argument("--reset", action="store_true",
                   help="send RESET first: clears the queue, faults and a latched e-stop (once the arm is safe)")
    p.set_defaults(func=_bridge)

    q = sub.add_parser(
        "fw-sim", help="run the simulated arm firmware (pty, serial device or SocketCAN)", formatter_class=fmt,
        description="Run wallwm-fw-sim: the reference C firmware driving a simulated arm. With no port option it "
                    "creates a pseudo-terminal and prints 'PTY /dev/pts/N': pass serial:/dev/pts/N to "
                    "`wallwm-edge bridge --port`. SIGUSR1 reboots the firmware (`kill -USR1 PID`: clears an e-stop, as "
                    "`wallwm-edge bridge ... --reset` does); Ctrl-C stops it.\n\n"
                    "examples:\n"
                    "  wallwm-edge fw-sim\n"
                    "  wallwm-edge fw-sim --joints 7 --hold-ms 100 --estop-ms 500\n"
                    "  wallwm-edge fw-sim --can vcan0 --fd")
    q.add_argument("--device", help="serve an existing serial device instead of a new pty")
    q.add_argument("--can", metavar="IFACE", help="serve SocketCAN interface IFACE (Linux), e.g. vcan0")
    q.add_argument("--fd", action="store_true", help="CAN-FD 64-byte frames (with --can)")
    q.add_argument("--joints", type=int, default=6, help="joints of the simulated arm, plus a gripper (default 6)")
    q.add_argument("--control-rate", type=int, default=500, help="interpolator rate in Hz (default 500)")
    q.add_argument("--hold-ms", type=int, default=250, help="watchdog: hold after this long without a frame")
    q.add_argument("--estop-ms", type=int, default=1000, help="watchdog: e-stop after this long without a frame")
    q.add_argument("--log", default="-", help="chunk event log file ('-' = stderr, the default)")
    q.set_defaults(func=_fw_sim)
