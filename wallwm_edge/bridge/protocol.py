"""The bridge protocol's messages, byte for byte as firmware_bridge/PROTOCOL.md specifies them.

A message is `type u8 | seq u16 | body | CRC-32C u32` (little-endian); transports add framing (COBS on
serial, identifier-indexed segments on CAN). This module turns messages into bytes and back and encodes
chunk points (int16 against the arm's limits, float16 or float32); it does no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
from crc32c import crc32c

from wallwm_edge.errors import LinkError

PROTO_VERSION = 1
MAX_MSG = 1024  # bytes of one message, header and CRC included (firmware buffer size)
HEADER, CRC = 3, 4

HELLO, CHUNK_BEGIN, CHUNK_DATA, HEARTBEAT, HOLD, ESTOP, RESET = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
ARM_INFO, ACK, NACK, STATE = 0x81, 0x82, 0x83, 0x84
TYPE_NAMES = {HELLO: "HELLO", CHUNK_BEGIN: "CHUNK_BEGIN", CHUNK_DATA: "CHUNK_DATA", HEARTBEAT: "HEARTBEAT",
              HOLD: "HOLD", ESTOP: "ESTOP", RESET: "RESET", ARM_INFO: "ARM_INFO", ACK: "ACK", NACK: "NACK",
              STATE: "STATE"}
RELIABLE = (CHUNK_BEGIN, CHUNK_DATA, RESET)  # exactly once, in order, acknowledged
CONTROL = (HEARTBEAT, HOLD, ESTOP)  # act at once, own counter

START_MODES = {"after": 0, "at": 1, "replace": 2}
ENCODINGS = {"int16": 0, "float16": 1, "float32": 2}
ENC_SIZE = {0: 2, 1: 2, 2: 4}
FMT_EE, FMT_CUBIC = 0x04, 0x08
BEGIN_FIXED, DATA_FIXED = 18, 4  # body bytes before the rows

NACK_REASONS = {1: "sequence gap", 2: "buffer full", 3: "not ready (no handshake since boot)",
                4: "bad chunk", 5: "value outside limits", 6: "e-stopped", 7: "bad message"}
NACK_RETRY = (1, 2, 3)  # these do not consume the sequence number
MODES = {0: "idle", 1: "running", 2: "hold", 3: "estop"}
FAULTS = {0x0001: "watchdog_hold", 0x0002: "watchdog_estop", 0x0004: "estop", 0x0008: "vel_limited",
          0x0010: "pos_limited", 0x0020: "underrun", 0x0040: "crc_error", 0x0080: "seq_error",
          0x0100: "rejected", 0x0200: "booted", 0x0400: "hold"}


class ChunkError(LinkError, ValueError):
    """A chunk the host refuses to send (names chunk, row and column)."""


def fault_names(flags: int) -> list[str]:
    return [name for bit, name in FAULTS.items() if flags & bit]


# ---- messages -----------------------------------------------------------------------------------------
def pack(type_: int, seq: int, body: bytes = b"") -> bytes:
    m = struct.pack("<BH", type_, seq & 0xFFFF) + body
    return m + struct.pack("<I", crc32c(m))


def unpack(msg: bytes) -> tuple[int, int, bytes]:
    """(type, seq, body) of a message whose CRC checks; LinkError otherwise."""
    if len(msg) < HEADER + CRC or len(msg) > MAX_MSG:
        raise LinkError(f"bad message length {len(msg)}")
    if crc32c(msg[:-CRC]) != struct.unpack_from("<I", msg, len(msg) - CRC)[0]:
        raise LinkError("CRC mismatch")
    t, s = struct.unpack_from("<BH", msg)
    return t, s, bytes(msg[HEADER:-CRC])


def hello(seq: int, session: int) -> bytes:
    return pack(HELLO, seq, struct.pack("<BBI", PROTO_VERSION, 0, session))


def control(type_: int, seq: int) -> bytes:
    return pack(type_, seq)


@dataclass(frozen=True)
class Limit:
    lo: float
    hi: float
    vmax: float


@dataclass(frozen=True)
class ArmInfo:
    version: int
    n_joints: int
    has_gripper: bool
    control_rate_hz: int
    feedback_rate_hz: int
    queue_points: int
    max_message: int
    watchdog_hold_ms: int
    watchdog_estop_ms: int
    boot_id: int
    session: int
    expected_seq: int
    joint_limits: tuple[Limit, ...]  # joints, then the gripper
    ee_limits: tuple[Limit, ...]  # x y z rx ry rz, then the gripper

    def cols(self, space: str = "joint") -> int:
        return (6 if space == "ee" else self.n_joints) + int(self.has_gripper)

    def limits(self, space: str = "joint") -> np.ndarray:
        """(D, 3) float32: lo, hi, vmax per column of that space."""
        lims = self.ee_limits if space == "ee" else self.joint_limits
        return np.array([[l.lo, l.hi, l.vmax] for l in lims], dtype=np.float32)


@dataclass(frozen=True)
class Ack:
    seq: int
    acked: int
    chunk_id: int
    rows: int
    level: int
    free: int


@dataclass(frozen=True)
class Nack:
    seq: int
    nacked: int
    expected: int
    reason: int
    chunk_id: int
    row: int
    col: int
    level: int
    free: int

    @property
    def consumes(self) -> bool:
        return self.reason not in NACK_RETRY

    def describe(self) -> str:
        return f"{NACK_REASONS.get(self.reason, self.reason)} (chunk {self.chunk_id}, row {self.row}, column {self.col})"


@dataclass(frozen=True)
class State:
    seq: int
    time_ms: int
    boot_id: int
    mode: int
    faults: int
    level: int
    free: int
    playing: int  # chunk id being played, 0xFFFF if none
    index: int  # row of it the arm is heading to
    last_done: int
    expected_seq: int
    crc_errors: int
    pos: np.ndarray = field(repr=False)  # (D,) measured positions (joints/pose, gripper)
    vel: np.ndarray = field(repr=False)  # (D,)
    received_at: float = 0.0  # host time.monotonic()

    @property
    def mode_name(self) -> str:
        return MODES.get(self.mode, str(self.mode))

    @property
    def fault_names(self) -> list[str]:
        return fault_names(self.faults)


def decode(msg: bytes, received_at: float = 0.0):
    """A firmware->host message as ArmInfo / Ack / Nack / State; LinkError when malformed."""
    t, seq, b = unpack(msg)
    try:
        if t == ACK:
            return Ack(seq, *struct.unpack("<HHHHH", b))
        if t == NACK:
            a, e, r, c, row, col, lv, fr = struct.unpack("<HHBHHBHH", b)
            return Nack(seq, a, e, r, c, row, col, lv, fr)
        if t == STATE:
            fixed = struct.unpack_from("<IIBBHHHHHHHH", b)
            d = fixed[3]
            vals = np.frombuffer(b, dtype="<f4", count=2 * d, offset=26).astype(np.float32)
            return State(seq, fixed[0], fixed[1], fixed[2], *fixed[4:], pos=vals[:d], vel=vals[d:],
                         received_at=received_at)
        if t == ARM_INFO:
            v, nj, g, cr, fr, qp, mm, hold, est, boot, sess, exp = struct.unpack_from("<BBBHHHHHHIIH", b)
            lims = np.frombuffer(b, dtype="<f4", offset=25).reshape(-1, 3)
            nj_cols = nj + g
            mk = lambda rows: tuple(Limit(*map(float, r)) for r in rows)  # noqa: E731
            return ArmInfo(v, nj, bool(g), cr, fr, qp, mm, hold, est, boot, sess, exp, mk(lims[:nj_cols]),
                           mk(lims[nj_cols:nj_cols + 6 + g]))
    except (struct.error, ValueError) as e:
        raise LinkError(f"malformed {TYPE_NAMES.get(t, hex(t))} message: {e}") from None
    raise LinkError(f"unexpected message type 0x{t:02x} from the firmware")


# ---- chunk points ---------------------------------------------------------------------------------------
def int16_grid(limits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """center, scale (float32, as the firmware computes them) of the int16 fixed-point encoding."""
    lo, hi = limits[:, 0].astype(np.float32), limits[:, 1].astype(np.float32)
    center = np.float32(0.5) * (lo + hi)
    scale = (np.float32(0.5) * (hi - lo)) / np.float32(32767.0)
    return center, scale


def encode_points(points: np.ndarray, encoding: int, limits: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Rows as wire bytes, and the float32 values the firmware will decode from them. points (L, D)."""
    if encoding == 0:
        center, scale = int16_grid(limits)
        raw = np.clip(np.rint((points.astype(np.float64) - center) / scale), -32767, 32767).astype("<i2")
        decoded = center + raw.astype(np.float32) * scale
        return raw.tobytes(), decoded.astype(np.float32)
    if encoding == 1:
        h = points.astype("<f2")
        return h.tobytes(), h.astype(np.float32)
    f = points.astype("<f4")
    return f.tobytes(), f.astype(np.float32)


def points_crc(decoded: np.ndarray) -> int:
    """CRC-32C of float32 points, row-major: what the firmware logs for a queued chunk."""
    return crc32c(np.ascontiguousarray(decoded, dtype="<f4").tobytes())


def validate_chunk(points, arm: ArmInfo, chunk_id: int, space: str = "joint") -> np.ndarray:
    """(L, D) float64 points, or ChunkError naming chunk, row and column."""
    p = np.asarray(points, dtype=np.float64)
    d = arm.cols(space)
    if p.ndim != 2 or p.shape[1] != d:
        raise ChunkError(f"chunk {chunk_id}: points must have shape (L, {d}) for the {space} space "
                         f"({arm.n_joints if space == 'joint' else 6} + gripper), got {p.shape}")
    if not 1 <= p.shape[0] <= arm.queue_points:
        raise ChunkError(f"chunk {chunk_id}: length {p.shape[0]} outside 1..{arm.queue_points}")
    bad = ~np.isfinite(p)
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise ChunkError(f"chunk {chunk_id}: row {r}, column {c} is {p[r, c]} (NaN or infinite)")
    lim = arm.limits(space)
    out = (p < lim[:, 0]) | (p > lim[:, 1])
    if out.any():
        r, c = map(int, np.argwhere(out)[0])
        raise ChunkError(f"chunk {chunk_id}: row {r}, column {c} = {p[r, c]:.6g} outside the limits "
                         f"[{lim[c, 0]:.6g}, {lim[c, 1]:.6g}]")
    return p


@dataclass
class EncodedChunk:
    chunk_id: int
    event_id: int
    length: int
    messages: list[bytes]  # bodies (type, body) without seq/CRC: seqs are given at send time
    decoded: np.ndarray  # (L, D) float32 the firmware will hold
    crc: int


def encode_chunk(points: np.ndarray, arm: ArmInfo, chunk_id: int, event_id: int, rate_hz: float, start: str = "after",
                 start_ms: int = 0, encoding: str = "int16", space: str = "joint", interp: str = "linear",
                 max_message: int | None = None) -> EncodedChunk:
    """Validate and split a chunk into CHUNK_BEGIN (+ as many rows as fit) and CHUNK_DATA bodies."""
    p = validate_chunk(points, arm, chunk_id, space)
    if start not in START_MODES or encoding not in ENCODINGS or interp not in ("linear", "cubic"):
        raise ChunkError(f"chunk {chunk_id}: start must be one of {list(START_MODES)}, encoding one of "
                         f"{list(ENCODINGS)}, interp linear|cubic")
    if not 0 < rate_hz <= arm.control_rate_hz:
        raise ChunkError(f"chunk {chunk_id}: point rate {rate_hz} Hz outside (0, {arm.control_rate_hz}]")
    enc = ENCODINGS[encoding]
    fmt = enc | (FMT_EE if space == "ee" else 0) | (FMT_CUBIC if interp == "cubic" else 0)
    raw, decoded = encode_points(p, enc, arm.limits(space))
    if enc == 1:  # float16 rounding must not push a value past a limit
        lim = arm.limits(space)
        out = (decoded < lim[:, 0]) | (decoded > lim[:, 1])
        if out.any():
            r, c = map(int, np.argwhere(out)[0])
            raise ChunkError(f"chunk {chunk_id}: row {r}, column {c} leaves the limits after float16 rounding")
    row = arm.cols(space) * ENC_SIZE[enc]
    room = (max_message or min(arm.max_message, MAX_MSG)) - HEADER - CRC
    L = p.shape[0]
    first = min(L, (room - BEGIN_FIXED) // row)
    msgs = [bytes([CHUNK_BEGIN]) + struct.pack("<HIHfBBI", chunk_id & 0xFFFF, event_id & 0xFFFFFFFF, L, rate_hz,
                                               START_MODES[start], fmt, start_ms & 0xFFFFFFFF) + raw[:first * row]]
    per = (room - DATA_FIXED) // row
    for r0 in range(first, L, per):
        r1 = min(L, r0 + per)
        msgs.append(bytes([CHUNK_DATA]) + struct.pack("<HH", chunk_id & 0xFFFF, r0) + raw[r0 * row:r1 * row])
    return EncodedChunk(chunk_id, event_id, L, msgs, decoded, points_crc(decoded))


def seal(body_with_type: bytes, seq: int) -> bytes:
    """A CHUNK_* body from encode_chunk (type byte first) as a full message with seq and CRC."""
    return pack(body_with_type[0], seq, body_with_type[1:])
