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

    from wallwm_edge.bridge.firmware import open_simulated_link
    from wallwm_edge.bridge.link import ArmLink
    from wallwm_edge.bridge.streamer import ChunkStreamer

    chunks = _load_chunks(args.file)
    sim = open_simulated_link() if args.port == "sim" else None
    link = sim.link if sim else ArmLink.open(args.port)
    try:
        a = link.arm
        print(f"arm: {a.n_joints} joints{' + gripper' if a.has_gripper else ''}, control {a.control_rate_hz} Hz, "
              f"queue {a.queue_points} points, watchdog {a.watchdog_hold_ms}/{a.watchdog_estop_ms} ms")
        s = ChunkStreamer(link, blend=args.blend, rate_hz=args.rate)
        for k, pts in enumerate(tqdm(chunks, desc="chunks", unit="chunk", disable=len(chunks) < 2)):
            t = s.push(pts, event_id=k, encoding=args.encoding, space=args.space, interp=args.interp)
            print(f"chunk {t.chunk_id}: {t.length} points queued in {(t.t_queued - t.t_ready) * 1e3:.2f} ms "
                  f"(crc {t.crc:08x})")
        if args.wait:
            last = t.chunk_id
            st = link.wait_state(lambda st: st.last_done == last, args.wait)
            print(f"played; arm at {[round(float(x), 4) for x in st.pos]}, mode {st.mode_name}, "
                  f"faults {st.fault_names or 'none'}")
    finally:
        sim.close() if sim else link.close()
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
                    "  sim                                start a simulated firmware on a fresh pty and use it\n\n"
                    "examples:\n"
                    "  wallwm-edge bridge chunks.npy --port sim --wait 5\n"
                    "  wallwm-edge bridge chunk.csv --port serial:/dev/ttyACM0 --rate 30 --blend replace\n"
                    "  wallwm-edge bridge chunks.npy --port can:socketcan:can0?fd=1 --encoding float16")
    p.add_argument("file", help=".npy or .csv chunk file: rows are points, columns joints (or pose) + gripper")
    p.add_argument("--port", default="sim", help="where the firmware is (see ports above; default: sim)")
    p.add_argument("--rate", type=float, default=50.0, help="chunk point rate in Hz (default 50)")
    p.add_argument("--blend", default="ensemble", choices=["append", "replace", "ensemble"],
                   help="what a new chunk does to the unplayed rest of the previous one (default ensemble)")
    p.add_argument("--encoding", default="int16", choices=["int16", "float16", "float32"],
                   help="wire encoding of the points (default int16 against the arm's limits)")
    p.add_argument("--space", default="joint", choices=["joint", "ee"], help="joint targets or end-effector pose")
    p.add_argument("--interp", default="linear", choices=["linear", "cubic"], help="firmware interpolation")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="after sending, wait up to S seconds for the last chunk to finish playing")
    p.set_defaults(func=_bridge)

    q = sub.add_parser(
        "fw-sim", help="run the simulated arm firmware (pty, serial device or SocketCAN)", formatter_class=fmt,
        description="Run wallwm-fw-sim: the reference C firmware driving a simulated arm. With no port option it "
                    "creates a pseudo-terminal and prints 'PTY /dev/pts/N': pass serial:/dev/pts/N to "
                    "`wallwm-edge bridge --port`. SIGUSR1 reboots the firmware; Ctrl-C stops it.\n\n"
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
