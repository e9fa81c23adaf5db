"""Generates firmware_bridge/golden/vectors.txt: host frames and the firmware's exact replies.

The C test (firmware_bridge/tests/test_wwfw.c) feeds every `>` frame to a fresh firmware (default arm,
6 joints + gripper, boot id 1, clock at 0, no ticks) and checks each `<` reply byte for byte; `!` frames
are corrupted and must produce no reply. The Python tests check that this encoder reproduces the file and
that the decoder reads every `<` line as its key=value meaning. `=` lines are CAN segmentations.

    python tests/bridge/bridge_golden.py --write
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from wallwm_edge.bridge import protocol as P  # noqa: E402
from wallwm_edge.bridge.framing import can_segments, serial_frame  # noqa: E402

PATH = Path(__file__).resolve().parents[2] / "firmware_bridge" / "golden" / "vectors.txt"
NJ = 6


def default_arm() -> P.ArmInfo:
    j = tuple([P.Limit(-2.9, 2.9, 2.0)] * NJ + [P.Limit(0.0, 1.0, 4.0)])
    ee = tuple([P.Limit(-1.0, 1.0, 1.0)] * 3 + [P.Limit(-3.2, 3.2, 3.0)] * 3 + [P.Limit(0.0, 1.0, 4.0)])
    return P.ArmInfo(1, NJ, True, 500, 50, 512, 1024, 250, 1000, 1, 0x12345678, 100, j, ee)


def arm_info(seq: int, a: P.ArmInfo) -> bytes:
    body = struct.pack("<BBBHHHHHHIIH", a.version, a.n_joints, int(a.has_gripper), a.control_rate_hz,
                       a.feedback_rate_hz, a.queue_points, a.max_message, a.watchdog_hold_ms, a.watchdog_estop_ms,
                       a.boot_id, a.session, a.expected_seq)
    lims = [x for l in a.joint_limits + a.ee_limits for x in (l.lo, l.hi, l.vmax)]
    return P.pack(P.ARM_INFO, seq, body + np.array(lims, "<f4").tobytes())


def ack(seq, acked, chunk_id, rows, level, free):
    return P.pack(P.ACK, seq, struct.pack("<HHHHH", acked, chunk_id, rows, level, free))


def nack(seq, nacked, expected, reason, chunk_id, row, col, level, free):
    return P.pack(P.NACK, seq, struct.pack("<HHBHHBHH", nacked, expected, reason, chunk_id, row, col, level, free))


def state(seq, time_ms, boot_id, mode, faults, level, free, playing, index, last_done, expected, crc_errors, pos, vel):
    body = struct.pack("<IIBBHHHHHHHH", time_ms, boot_id, mode, len(pos), faults, level, free, playing, index, last_done,
                       expected, crc_errors)
    return P.pack(P.STATE, seq, body + np.asarray(list(pos) + list(vel), "<f4").tobytes())


def chunk_msgs(points, chunk_id, event_id, encoding="int16", rate=50.0, start="after", max_message=None, seq=0):
    enc = P.encode_chunk(np.asarray(points, float), default_arm(), chunk_id, event_id, rate, start, 0, encoding,
                         max_message=max_message)
    return [P.seal(b, seq + i) for i, b in enumerate(enc.messages)]


def raw_begin(seq, chunk_id, L, fmt, rows: bytes, rate=50.0, mode=0):
    return P.pack(P.CHUNK_BEGIN, seq, struct.pack("<HIHfBBI", chunk_id, 0, L, rate, mode, fmt, 0) + rows)


def vectors() -> list[tuple[str, str, dict, bytes]]:
    """(direction, name, meaning, message) in scenario order."""
    a = default_arm()
    z7 = [0.0] * 7
    v = []
    add = lambda d, name, msg, **kw: v.append((d, name, kw, msg))  # noqa: E731
    add(">", "HELLO", P.hello(100, 0x12345678), seq=100, session=0x12345678)
    add("<", "ARM_INFO", arm_info(0, a), seq=0, n_joints=6, control_rate_hz=500, queue_points=512, boot_id=1,
        expected_seq=100)
    rows = [[0.1, -0.2, 0.3, 0, 0, 1.5, 0.5], [0.2, -0.2, 0.3, 0, 0, 1.5, 0.5], [0.3, -0.2, 0.3, 0, 0, 2.9, 1.0]]
    (m,) = chunk_msgs(rows, 7, 42, seq=100)
    add(">", "CHUNK_BEGIN", m, seq=100, chunk_id=7, event_id=42, length=3, encoding="int16")
    add("<", "ACK", ack(1, 100, 7, 3, 3, 509), seq=1, acked=100, chunk_id=7, rows=3, level=3, free=509)
    four = np.linspace(-1, 1, 28).reshape(4, 7) * [1, 1, 1, 1, 1, 1, 0.4] + [0, 0, 0, 0, 0, 0, 0.5]
    ms = chunk_msgs(four, 8, 43, "float32", max_message=P.HEADER + P.CRC + P.BEGIN_FIXED + 2 * 28, seq=101)
    assert len(ms) == 2
    add(">", "CHUNK_BEGIN", ms[0], seq=101, chunk_id=8, length=4, encoding="float32", rows=2)
    add("<", "ACK", ack(2, 101, 8, 2, 3, 507), seq=2, acked=101, chunk_id=8, rows=2, level=3, free=507)
    add(">", "CHUNK_DATA", ms[1], seq=102, chunk_id=8, first_row=2, rows=2)
    add("<", "ACK", ack(3, 102, 8, 4, 7, 505), seq=3, acked=102, chunk_id=8, rows=4, level=7, free=505)
    add(">", "CHUNK_DATA", ms[1], seq=102, note="duplicate: acknowledged again, not applied")
    add("<", "ACK", ack(4, 102, 0xFFFF, 0, 7, 505), seq=4, acked=102, chunk_id=0xFFFF, rows=0, level=7, free=505)
    gap = raw_begin(104, 9, 1, 2, np.zeros(7, "<f4").tobytes())
    add(">", "CHUNK_BEGIN", gap, seq=104, note="sequence gap (103 expected)")
    add("<", "NACK", nack(5, 104, 103, 1, 0xFFFF, 0, 0, 7, 505), seq=5, nacked=104, expected=103, reason=1)
    nan_rows = np.zeros((2, 7), "<f2")
    nan_rows[1, 2] = np.nan
    bad = raw_begin(103, 9, 2, 1, nan_rows.tobytes())
    flipped = bytearray(bad)
    flipped[20] ^= 0x08
    add("!", "CHUNK_BEGIN", bytes(flipped), seq=103, note="one bit flipped: CRC error, no reply, not applied")
    add(">", "CHUNK_BEGIN", bad, seq=103, chunk_id=9, encoding="float16", note="NaN at row 1 column 2")
    add("<", "NACK", nack(6, 103, 104, 4, 9, 1, 2, 7, 505), seq=6, nacked=103, expected=104, reason=4, chunk_id=9,
        row=1, col=2)
    over = np.zeros((1, 7), "<f4")
    over[0, 0] = 3.5
    add(">", "CHUNK_BEGIN", raw_begin(104, 10, 1, 2, over.tobytes()), seq=104, chunk_id=10, note="3.5 > 2.9 limit")
    add("<", "NACK", nack(7, 104, 105, 5, 10, 0, 0, 7, 505), seq=7, nacked=104, expected=105, reason=5, chunk_id=10)
    add(">", "HEARTBEAT", P.control(P.HEARTBEAT, 5), seq=5)
    add("<", "STATE", state(8, 0, 1, 0, 0x1C0, 7, 505, 0xFFFF, 0, 0xFFFF, 105, 1, z7, z7), seq=8, mode=0,
        faults=0x1C0, level=7, free=505, expected_seq=105, crc_errors=1)
    add(">", "HEARTBEAT", P.control(P.HEARTBEAT, 5), seq=5, note="repeated control message: ignored")
    add(">", "HOLD", P.control(P.HOLD, 6), seq=6)
    add("<", "STATE", state(9, 0, 1, 2, 0x400, 0, 512, 0xFFFF, 0, 0xFFFF, 105, 1, z7, z7), seq=9, mode=2, faults=0x400,
        level=0, free=512)
    add(">", "RESET", P.pack(P.RESET, 105), seq=105)
    add("<", "ACK", ack(10, 105, 0xFFFF, 0, 0, 512), seq=10, acked=105, level=0, free=512)
    add(">", "ESTOP", P.control(P.ESTOP, 7), seq=7)
    add("<", "STATE", state(11, 0, 1, 3, 0x4, 0, 512, 0xFFFF, 0, 0xFFFF, 106, 1, z7, z7), seq=11, mode=3, faults=4)
    (m,) = chunk_msgs(rows, 11, 44, seq=106)
    add(">", "CHUNK_BEGIN", m, seq=106, chunk_id=11, note="refused while e-stopped")
    add("<", "NACK", nack(12, 106, 107, 6, 11, 0, 0, 0, 512), seq=12, nacked=106, expected=107, reason=6, chunk_id=11)
    return v


def render() -> str:
    lines = [
        "# wallwm-edge bridge golden vectors (PROTOCOL.md v1). Generated by tests/bridge/bridge_golden.py.",
        "# DIR NAME key=value... | hex   DIR: '>' host frame, '<' firmware reply, '!' corrupt host frame (no reply),",
        "# '=' CAN segmentation of the message on the previous line: FRAMEBYTES | offset:hex offset:hex ...",
        "# serial hex is the COBS frame including its 0x00 delimiter.",
    ]
    for d, name, kw, msg in vectors():
        meaning = " ".join(f"{k}={v}" for k, v in kw.items() if k != "note")
        note = f"  # {kw['note']}" if "note" in kw else ""
        lines.append(f"{d} {name} {meaning} | {serial_frame(msg).hex()}{note}")
        if d == ">" and name == "CHUNK_BEGIN" and kw.get("chunk_id") == 7:
            for fb in (8, 64):
                segs = " ".join(f"{off:02x}:{data.hex()}" for off, data in can_segments(msg, fb))
                lines.append(f"= {fb} | {segs}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if "--write" in sys.argv:
        PATH.write_text(render())
        print(f"wrote {PATH}")
    else:
        sys.stdout.write(render())
