"""Generates firmware_bridge/golden/vectors.txt: host frames and the firmware's exact replies.

The C test (firmware_bridge/tests/test_wwfw.c) feeds every `>` frame to a fresh firmware (default arm,
6 joints + gripper, boot id 1, clock at 0, no ticks) and checks each `<` reply byte for byte; `!` frames
are corrupted and must produce no reply. The Python tests check that this encoder reproduces the file and
that the decoder reads every `<` line as its key=value meaning. `=` lines are CAN segmentations.

    python tests/bridge/bridge_golden.py --write
"""

from __future__ import annotations

import dataclasses
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from wallwm_edge.bridge import protocol as P  # noqa: E402
from wallwm_edge.bridge.framing import can_segments, serial_frame  # noqa: E402

PATH = Path(__file__).resolve().parents[2] / "firmware_bridge" / "golden" / "vectors.txt"
NJ = 6


S, T = 0x12345678, 0x0BADCAFE  # the host's session and a second writer's


def default_arm() -> P.ArmInfo:
    j = tuple([P.Limit(-2.9, 2.9, 2.0)] * NJ + [P.Limit(0.0, 1.0, 4.0)])
    ee = tuple([P.Limit(-1.0, 1.0, 1.0)] * 3 + [P.Limit(-3.2, 3.2, 3.0)] * 3 + [P.Limit(0.0, 1.0, 4.0)])
    return P.ArmInfo(P.PROTO_VERSION, NJ, True, 500, 50, 512, 16, 1024, 250, 1000, 1, 100, 0, 1000, j, ee, session=S)


def arm_info(seq: int, a: P.ArmInfo) -> bytes:
    body = struct.pack("<BBBHHHHHHHIHHH", a.version, a.n_joints, int(a.has_gripper), a.control_rate_hz,
                       a.feedback_rate_hz, a.queue_points, a.queue_chunks, a.max_message, a.watchdog_hold_ms,
                       a.watchdog_estop_ms, a.boot_id, a.expected_seq, a.fate_next, a.min_rate_mhz)
    lims = [x for l in a.joint_limits + a.ee_limits for x in (l.lo, l.hi, l.vmax)]
    return P.pack(P.ARM_INFO, seq, body + np.array(lims, "<f4").tobytes(), a.session)


def ack(seq, acked, chunk_id, rows, level, free, free_chunks, session=S):
    return P.pack(P.ACK, seq, struct.pack("<HHHHHB", acked, chunk_id, rows, level, free, free_chunks), session)


def nack(seq, nacked, expected, reason, chunk_id, row, col, level, free, free_chunks, session=S):
    return P.pack(P.NACK, seq, struct.pack("<HHBHHBHHB", nacked, expected, reason, chunk_id, row, col, level, free,
                                           free_chunks), session)


def state(seq, time_ms, boot_id, mode, faults, level, free, free_chunks, playing, index, last_done, expected, crc_errors,
          fate_next, pos, vel, space=0, session=S):
    body = struct.pack("<IIBBHHHBBHHHHHH", time_ms, boot_id, mode, len(pos), faults, level, free, free_chunks, space,
                       playing, index, last_done, expected, crc_errors, fate_next)
    return P.pack(P.STATE, seq, body + np.asarray(list(pos) + list(vel), "<f4").tobytes(), session)


def fates(seq, first, entries, session=S):
    body = struct.pack("<HB", first, len(entries)) + b"".join(struct.pack("<HBH", *e) for e in entries)
    return P.pack(P.FATE, seq, body, session)


def chunk_msgs(points, chunk_id, event_id, encoding="int16", rate=50.0, start="after", max_message=None, seq=0,
               session=S):
    enc = P.encode_chunk(np.asarray(points, float), default_arm(), chunk_id, event_id, rate, start, 0, encoding,
                         max_message=max_message)
    return [P.seal(b, seq + i, session) for i, b in enumerate(enc.messages)]


def raw_begin(seq, chunk_id, L, fmt, rows: bytes, rate=50.0, mode=0, session=S):
    return P.pack(P.CHUNK_BEGIN, seq, struct.pack("<HIHfBBI", chunk_id, 0, L, rate, mode, fmt, 0) + rows, session)


def vectors() -> list[tuple[str, str, dict, bytes]]:
    """(direction, name, meaning, message) in scenario order."""
    a = default_arm()
    z7 = [0.0] * 7
    v = []
    add = lambda d, name, msg, **kw: v.append((d, name, kw, msg))  # noqa: E731
    HB, NR, F = P.MsgType, P.NackReason, P.Fate
    add(">", "HELLO", P.hello(100, S), seq=100, session=S)
    add("<", "ARM_INFO", arm_info(0, a), seq=0, session=S, n_joints=6, control_rate_hz=500, queue_points=512, queue_chunks=16,
        boot_id=1, expected_seq=100, fate_next=0, min_rate_mhz=1000)
    rows = [[0.1, -0.2, 0.3, 0, 0, 1.5, 0.5], [0.2, -0.2, 0.3, 0, 0, 1.5, 0.5], [0.3, -0.2, 0.3, 0, 0, 2.9, 1.0]]
    (m,) = chunk_msgs(rows, 7, 42, seq=100)
    add(">", "CHUNK_BEGIN", m, seq=100, chunk_id=7, event_id=42, length=3, encoding="int16")
    add("<", "ACK", ack(1, 100, 7, 3, 3, 509, 15), seq=1, acked=100, chunk_id=7, rows=3, level=3, free=509,
        free_chunks=15)
    four = np.linspace(-1, 1, 28).reshape(4, 7) * [1, 1, 1, 1, 1, 1, 0.4] + [0, 0, 0, 0, 0, 0, 0.5]
    ms = chunk_msgs(four, 8, 43, "float32", max_message=P.HEADER + P.CRC + P.BEGIN_FIXED + 2 * 28, seq=101)
    assert len(ms) == 2
    add(">", "CHUNK_BEGIN", ms[0], seq=101, chunk_id=8, length=4, encoding="float32", rows=2)
    add("<", "ACK", ack(2, 101, 8, 2, 3, 507, 14), seq=2, acked=101, chunk_id=8, rows=2, level=3, free=507,
        free_chunks=14, note="the chunk being received takes a slot")
    add(">", "CHUNK_DATA", ms[1], seq=102, chunk_id=8, first_row=2, rows=2)
    add("<", "ACK", ack(3, 102, 8, 4, 7, 505, 14), seq=3, acked=102, chunk_id=8, rows=4, level=7, free=505,
        free_chunks=14)
    add(">", "CHUNK_DATA", ms[1], seq=102, note="a repeat of the last applied message: its own answer again")
    add("<", "ACK", ack(4, 102, 8, 4, 7, 505, 14), seq=4, acked=102, chunk_id=8, rows=4, level=7, free=505)
    add(">", "CHUNK_BEGIN", ms[0], seq=101, note="an older repeat: acknowledged (a later one was applied), not applied")
    add("<", "ACK", ack(5, 101, 0xFFFF, 0, 7, 505, 14), seq=5, acked=101, chunk_id=0xFFFF, rows=0, level=7, free=505)
    gap = raw_begin(104, 9, 1, 2, np.zeros(7, "<f4").tobytes())
    add(">", "CHUNK_BEGIN", gap, seq=104, note="sequence gap (103 expected)")
    add("<", "NACK", nack(6, 104, 103, NR.SEQ_GAP, 0xFFFF, 0, 0, 7, 505, 14), seq=6, nacked=104, expected=103,
        reason=1)
    nan_rows = np.zeros((2, 7), "<f2")
    nan_rows[1, 2] = np.nan
    bad = raw_begin(103, 9, 2, 1, nan_rows.tobytes())
    flipped = bytearray(bad)
    flipped[24] ^= 0x08
    add("!", "CHUNK_BEGIN", bytes(flipped), seq=103, note="one bit flipped: CRC error, no reply, not applied")
    add(">", "CHUNK_BEGIN", bad, seq=103, chunk_id=9, encoding="float16", note="NaN at row 1 column 2")
    add("<", "NACK", nack(7, 103, 104, NR.BAD_CHUNK, 9, 1, 2, 7, 505, 14), seq=7, nacked=103, expected=104, reason=4,
        chunk_id=9, row=1, col=2)
    add(">", "CHUNK_BEGIN", bad, seq=103, note="the refusal was lost: the repeat is refused again, not ACKed")
    add("<", "NACK", nack(8, 103, 104, NR.BAD_CHUNK, 9, 1, 2, 7, 505, 14), seq=8, nacked=103, expected=104, reason=4,
        chunk_id=9, row=1, col=2)
    over = np.zeros((1, 7), "<f4")
    over[0, 0] = 3.5
    add(">", "CHUNK_BEGIN", raw_begin(104, 10, 1, 2, over.tobytes()), seq=104, chunk_id=10, note="3.5 > 2.9 limit")
    add("<", "NACK", nack(9, 104, 105, NR.LIMIT, 10, 0, 0, 7, 505, 14), seq=9, nacked=104, expected=105, reason=5,
        chunk_id=10)
    add(">", "CHUNK_BEGIN", raw_begin(105, 11, 1, 2, np.zeros(7, "<f4").tobytes(), rate=0.5), seq=105, chunk_id=11,
        note="0.5 points/s: below the 1 point/s minimum")
    add("<", "NACK", nack(10, 105, 106, NR.BAD_CHUNK, 11, 0, 0, 7, 505, 14), seq=10, nacked=105, expected=106, reason=4,
        chunk_id=11)
    add(">", "HELLO", P.hello(900, T), seq=900, session=T, note="a second writer while the owner is alive")
    add("<", "NACK", nack(11, 900, 106, NR.NOT_OWNER, 0xFFFF, 0, 0, 7, 505, 14, session=T), seq=11, nacked=900,
        expected=106, reason=9, session=T)
    add(">", "CHUNK_BEGIN", raw_begin(106, 99, 1, 2, np.zeros(7, "<f4").tobytes(), session=T), seq=106, session=T,
        note="the owner's next seq from the other session: refused, not applied")
    add("<", "NACK", nack(12, 106, 106, NR.NOT_OWNER, 0xFFFF, 0, 0, 7, 505, 14, session=T), seq=12, nacked=106,
        expected=106, reason=9, session=T)
    add(">", "HEARTBEAT", P.control(HB.HEARTBEAT, 5, S, 0), seq=5, session=S)
    add("<", "STATE", state(13, 0, 1, 0, 0x1C0, 7, 505, 14, 0xFFFF, 0, 0xFFFF, 106, 1, 0, z7, z7), seq=13, mode=0,
        faults=0x1C0, level=7, free=505, free_chunks=14, expected_seq=106, crc_errors=1, fate_next=0)
    add(">", "HEARTBEAT", P.control(HB.HEARTBEAT, 5, S, 0), seq=5, note="repeated control message: ignored")
    part = chunk_msgs(four, 12, 45, "float32", max_message=P.HEADER + P.CRC + P.BEGIN_FIXED + 2 * 28, seq=106)
    add(">", "CHUNK_BEGIN", part[0], seq=106, chunk_id=12, length=4, rows=2, note="left incomplete")
    add("<", "ACK", ack(14, 106, 12, 2, 7, 503, 13), seq=14, acked=106, chunk_id=12, rows=2, free=503, free_chunks=13)
    add(">", "HOLD", P.control(HB.HOLD, 6, S), seq=6)
    add("<", "STATE", state(15, 0, 1, 2, 0x400, 0, 512, 16, 0xFFFF, 0, 0xFFFF, 107, 1, 3, z7, z7), seq=15, mode=2,
        faults=0x400, level=0, free=512, free_chunks=16, fate_next=3)
    add("<", "FATE", fates(16, 0, [(7, F.HOLD, 0), (8, F.HOLD, 0), (12, F.HOLD, 0)]), seq=16, first=0,
        note="chunks 7 and 8 and the partial 12: dropped by the hold")
    add(">", "CHUNK_DATA", part[1], seq=107, chunk_id=12, first_row=2)
    add("<", "NACK", nack(17, 107, 108, NR.DROPPED, 12, 2, 0, 0, 512, 16), seq=17, nacked=107, expected=108, reason=8,
        chunk_id=12, row=2, note="the rest of a chunk the hold dropped: not a bad chunk")
    add(">", "HEARTBEAT", P.control(HB.HEARTBEAT, 7, S, 1), seq=7, note="the host has fate 0 only")
    add("<", "STATE", state(18, 0, 1, 2, 0x400, 0, 512, 16, 0xFFFF, 0, 0xFFFF, 108, 1, 3, z7, z7), seq=18, mode=2)
    add("<", "FATE", fates(19, 1, [(8, F.HOLD, 0), (12, F.HOLD, 0)]), seq=19, first=1, note="resent from 1")
    add(">", "RESET", P.pack(P.RESET, 108, b"", S), seq=108)
    add("<", "ACK", ack(20, 108, 0xFFFF, 0, 0, 512, 16), seq=20, acked=108, level=0, free=512, free_chunks=16)
    add(">", "ESTOP", P.control(HB.ESTOP, 9, T), seq=9, session=T, note="another session may always e-stop")
    add("<", "STATE", state(21, 0, 1, 3, 0x4, 0, 512, 16, 0xFFFF, 0, 0xFFFF, 109, 1, 3, z7, z7, session=T), seq=21,
        mode=3, faults=4, session=T)
    (m,) = chunk_msgs(rows, 13, 44, seq=109)
    add(">", "CHUNK_BEGIN", m, seq=109, chunk_id=13, note="refused while e-stopped")
    add("<", "NACK", nack(22, 109, 110, NR.ESTOPPED, 13, 0, 0, 0, 512, 16), seq=22, nacked=109, expected=110, reason=6,
        chunk_id=13)
    # issue 14: BYE ends the owner's session cleanly (its watchdog disarmed); the next host need not wait
    add(">", "BYE", P.pack(P.BYE, 110, b"", S), seq=110, note="the owner leaves: reliable, acknowledged")
    add("<", "ACK", ack(23, 110, 0xFFFF, 0, 0, 512, 16), seq=23, acked=110, chunk_id=0xFFFF, level=0, free=512)
    add(">", "BYE", P.pack(P.BYE, 110, b"", S), seq=110, note="a repeat (the ACK was lost): the same answer")
    add("<", "ACK", ack(24, 110, 0xFFFF, 0, 0, 512, 16), seq=24, acked=110, chunk_id=0xFFFF)
    U = 0x600DF00D
    add(">", "HELLO", P.hello(500, U), seq=500, session=U, note="a new host at once: no hold time to wait out")
    add("<", "ARM_INFO", arm_info(25, dataclasses.replace(a, expected_seq=500, fate_next=3, session=U)), seq=25,
        session=U, expected_seq=500, fate_next=3)
    return v


def render() -> str:
    lines = [
        "# wallwm-edge bridge golden vectors (PROTOCOL.md v2). Generated by tests/bridge/bridge_golden.py.",
        "# DIR NAME key=value... | hex   DIR: '>' host frame, '<' firmware reply, '!' corrupt host frame (no reply),",
        "# '=' CAN segmentation of the message on the previous line: FRAMEBYTES | offset:hex offset:hex ...",
        "# serial hex is the frame: 0x00, the COBS bytes, 0x00.",
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
