"""The bridge protocol's messages, byte for byte as firmware_bridge/PROTOCOL.md specifies them.

A message is `type u8 | seq u16 | session u32 | body | CRC-32C u32` (little-endian); transports add
framing (COBS on serial, identifier-indexed segments on CAN). This module turns messages into bytes and
back and encodes chunk points (int16 against the arm's limits, float16 or float32); it does no I/O.
Every protocol value is a named enum mirroring firmware_bridge/include/wwfw.h (a test holds them equal).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

import numpy as np
from crc32c import crc32c

from wallwm_edge.errors import LinkError

PROTO_VERSION = 2
MAX_MSG = 1024  # bytes of one message, header and CRC included (firmware buffer size)
HEADER, CRC = 7, 4  # type u8 + seq u16 + session u32; CRC-32C
MAX_CHUNKS = 16  # the reference firmware's chunk table (ARM_INFO.queue_chunks reports the real one)
FATES = 32  # the firmware's ring of chunk fates
MIN_RATE_HZ = 1.0  # slowest chunk point rate: one segment lasts at most a second (ARM_INFO.min_rate_hz)


class MsgType(enum.IntEnum):
    HELLO = 0x01
    CHUNK_BEGIN = 0x02
    CHUNK_DATA = 0x03
    HEARTBEAT = 0x04
    HOLD = 0x05
    ESTOP = 0x06
    RESET = 0x07
    BYE = 0x08  # the owner ends its session: no watchdog fault follows (issue 14)
    ARM_INFO = 0x81
    ACK = 0x82
    NACK = 0x83
    STATE = 0x84
    FATE = 0x85


class StartMode(enum.IntEnum):
    AFTER = 0
    AT_TIME = 1
    REPLACE = 2


class Encoding(enum.IntEnum):
    INT16 = 0
    F16 = 1
    F32 = 2


class Fmt(enum.IntFlag):
    EE = 0x04
    CUBIC = 0x08


class NackReason(enum.IntEnum):
    SEQ_GAP = 1
    BUFFER_FULL = 2
    NOT_READY = 3
    BAD_CHUNK = 4
    LIMIT = 5
    ESTOPPED = 6
    BAD_MESSAGE = 7
    DROPPED = 8
    NOT_OWNER = 9


class Fate(enum.IntEnum):
    PLAYED = 1
    HOLD = 2
    ESTOP = 3
    REPLACED = 4
    RESET = 5
    ABANDONED = 6


class Mode(enum.IntEnum):
    IDLE = 0
    RUNNING = 1
    HOLD = 2
    ESTOP = 3


class Space(enum.IntEnum):
    JOINT = 0
    EE = 1


class Fault(enum.IntFlag):
    WATCHDOG_HOLD = 0x0001
    WATCHDOG_ESTOP = 0x0002
    ESTOP = 0x0004
    VEL_LIMITED = 0x0008
    POS_LIMITED = 0x0010
    UNDERRUN = 0x0020
    CRC_ERROR = 0x0040
    SEQ_ERROR = 0x0080
    REJECTED = 0x0100
    BOOTED = 0x0200
    HOLD = 0x0400


# module-level names kept for callers (benchmarks, runtime): the enum members themselves
HELLO, CHUNK_BEGIN, CHUNK_DATA, HEARTBEAT, HOLD, ESTOP, RESET = (MsgType.HELLO, MsgType.CHUNK_BEGIN, MsgType.CHUNK_DATA,
                                                                 MsgType.HEARTBEAT, MsgType.HOLD, MsgType.ESTOP,
                                                                 MsgType.RESET)
BYE = MsgType.BYE
ARM_INFO, ACK, NACK, STATE, FATE = MsgType.ARM_INFO, MsgType.ACK, MsgType.NACK, MsgType.STATE, MsgType.FATE
TYPE_NAMES = {t: t.name for t in MsgType}
RELIABLE = (CHUNK_BEGIN, CHUNK_DATA, RESET, BYE)  # exactly once, in order, acknowledged
CONTROL = (HEARTBEAT, HOLD, ESTOP)  # act at once, own counter

START_MODES = {"after": StartMode.AFTER, "at": StartMode.AT_TIME, "replace": StartMode.REPLACE}
ENCODINGS = {"int16": Encoding.INT16, "float16": Encoding.F16, "float32": Encoding.F32}
ENC_SIZE = {Encoding.INT16: 2, Encoding.F16: 2, Encoding.F32: 4}
FMT_EE, FMT_CUBIC = Fmt.EE, Fmt.CUBIC
BEGIN_FIXED, DATA_FIXED = 18, 4  # body bytes before the rows

NACK_REASONS = {NackReason.SEQ_GAP: "sequence gap", NackReason.BUFFER_FULL: "buffer full",
                NackReason.NOT_READY: "not ready (no handshake since boot)", NackReason.BAD_CHUNK: "bad chunk",
                NackReason.LIMIT: "value outside limits", NackReason.ESTOPPED: "e-stopped",
                NackReason.BAD_MESSAGE: "bad message",
                NackReason.DROPPED: "chunk dropped before it was complete (hold, e-stop, reset or a newer chunk)",
                NackReason.NOT_OWNER: "another host session owns the firmware link"}
# these do not consume the sequence number: the host sends the same message again later
NACK_RETRY = (NackReason.SEQ_GAP, NackReason.BUFFER_FULL, NackReason.NOT_READY, NackReason.NOT_OWNER)
MODES = {m.value: m.name.lower() for m in Mode}
FAULTS = {f.value: f.name.lower() for f in Fault}
FATE_NAMES = {f.value: f.name.lower() for f in Fate}


class ChunkError(LinkError, ValueError):
    """A chunk the host refuses to send (names chunk, row and column)."""


def fault_names(flags: int) -> list[str]:
    return [name for bit, name in FAULTS.items() if flags & bit]


# ---- messages -----------------------------------------------------------------------------------------
def pack(type_: int, seq: int, body: bytes = b"", session: int = 0) -> bytes:
    m = struct.pack("<BHI", type_, seq & 0xFFFF, session & 0xFFFFFFFF) + body
    return m + struct.pack("<I", crc32c(m))


def unpack_session(msg: bytes) -> tuple[int, int, int, bytes]:
    """(type, seq, session, body) of a message whose CRC checks; LinkError otherwise."""
    if len(msg) < HEADER + CRC or len(msg) > MAX_MSG:
        raise LinkError(f"bad message length {len(msg)}")
    if crc32c(msg[:-CRC]) != struct.unpack_from("<I", msg, len(msg) - CRC)[0]:
        raise LinkError("CRC mismatch")
    t, s, sess = struct.unpack_from("<BHI", msg)
    return t, s, sess, bytes(msg[HEADER:-CRC])


def unpack(msg: bytes) -> tuple[int, int, bytes]:
    """(type, seq, body) of a message whose CRC checks; LinkError otherwise."""
    t, s, _, b = unpack_session(msg)
    return t, s, b


def hello(seq: int, session: int) -> bytes:
    return pack(HELLO, seq, struct.pack("<BB", PROTO_VERSION, 0), session)


def control(type_: int, seq: int, session: int = 0, fate_ack: int | None = None) -> bytes:
    """HEARTBEAT / HOLD / ESTOP; a HEARTBEAT carries the index of the first chunk fate the host lacks."""
    body = struct.pack("<H", fate_ack & 0xFFFF) if type_ == HEARTBEAT and fate_ack is not None else b""
    return pack(type_, seq, body, session)


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
    queue_chunks: int
    max_message: int
    watchdog_hold_ms: int
    watchdog_estop_ms: int
    boot_id: int
    expected_seq: int
    fate_next: int  # index of the next chunk fate the firmware will report
    min_rate_mhz: int  # slowest chunk point rate, millihertz
    joint_limits: tuple[Limit, ...]  # joints, then the gripper
    ee_limits: tuple[Limit, ...]  # x y z rx ry rz, then the gripper
    session: int = 0  # from the header: the session this ARM_INFO answers

    @property
    def min_rate_hz(self) -> float:
        return self.min_rate_mhz / 1000.0

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
    free_chunks: int
    session: int = 0


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
    free_chunks: int
    session: int = 0

    @property
    def consumes(self) -> bool:
        return self.reason not in NACK_RETRY

    def describe(self) -> str:
        return f"{NACK_REASONS.get(self.reason, self.reason)} (chunk {self.chunk_id}, row {self.row}, column {self.col})"


@dataclass(frozen=True)
class FateEntry:
    index: int  # the firmware's running count of fates (u16)
    chunk_id: int
    fate: int  # Fate
    rows: int  # rows the arm reached before the chunk ended

    @property
    def name(self) -> str:
        return FATE_NAMES.get(self.fate, str(self.fate))


@dataclass(frozen=True)
class Fates:
    seq: int
    first: int
    entries: tuple[FateEntry, ...]
    session: int = 0


@dataclass(frozen=True)
class State:
    seq: int
    time_ms: int
    boot_id: int
    mode: int
    faults: int
    level: int
    free: int
    free_chunks: int
    space: int  # Space of pos/vel
    playing: int  # chunk id being played, 0xFFFF if none
    index: int  # row of it the arm is heading to
    last_done: int
    expected_seq: int
    crc_errors: int
    fate_next: int
    pos: np.ndarray = field(repr=False)  # (D,) measured positions (joints/pose, gripper)
    vel: np.ndarray = field(repr=False)  # (D,)
    received_at: float = 0.0  # host time.monotonic()
    session: int = 0

    @property
    def mode_name(self) -> str:
        return MODES.get(self.mode, str(self.mode))

    @property
    def fault_names(self) -> list[str]:
        return fault_names(self.faults)


STATE_FIXED, ARM_INFO_FIXED = 30, 27
MAX_COLS = 8


def decode(msg: bytes, received_at: float = 0.0):
    """A firmware->host message as ArmInfo / Ack / Nack / State / Fates; LinkError when malformed
    (wrong CRC, wrong length for its type, impossible counts): never any other exception."""
    t, seq, sess, b = unpack_session(msg)
    name = TYPE_NAMES.get(t, hex(t))
    try:
        if t == ACK:
            return Ack(seq, *struct.unpack("<HHHHHB", b), session=sess)
        if t == NACK:
            return Nack(seq, *struct.unpack("<HHBHHBHHB", b), session=sess)
        if t == STATE:
            fixed = struct.unpack_from("<IIBBHHHBBHHHHHH", b)
            d = fixed[3]
            if not 1 <= d <= MAX_COLS or len(b) != STATE_FIXED + 8 * d:
                raise ValueError(f"{d} columns in {len(b)} bytes")
            vals = np.frombuffer(b, dtype="<f4", count=2 * d, offset=STATE_FIXED).astype(np.float32)
            return State(seq, *fixed[:3], *fixed[4:], pos=vals[:d], vel=vals[d:], received_at=received_at,
                         session=sess)
        if t == FATE:
            first, n = struct.unpack_from("<HB", b)
            if len(b) != 3 + 5 * n:
                raise ValueError(f"{n} entries in {len(b)} bytes")
            entries = tuple(FateEntry((first + i) & 0xFFFF, *struct.unpack_from("<HBH", b, 3 + 5 * i)) for i in range(n))
            return Fates(seq, first, entries, session=sess)
        if t == ARM_INFO:
            head = struct.unpack_from("<BBBHHHHHHHIHHH", b)
            nj, g = head[1], head[2]
            if not 1 <= nj <= MAX_COLS - 1 or g > 1 or len(b) != ARM_INFO_FIXED + 12 * (nj + 6 + 2 * g):
                raise ValueError(f"{nj} joints, gripper {g} in {len(b)} bytes")
            lims = np.frombuffer(b, dtype="<f4", offset=ARM_INFO_FIXED).reshape(-1, 3)
            mk = lambda rows: tuple(Limit(*map(float, r)) for r in rows)  # noqa: E731
            return ArmInfo(head[0], nj, bool(g), *head[3:], mk(lims[:nj + g]), mk(lims[nj + g:]), session=sess)
    except (struct.error, ValueError) as e:
        raise LinkError(f"malformed {name} message: {e}") from None
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
    lo_rate = arm.min_rate_hz or MIN_RATE_HZ
    if not lo_rate <= float(rate_hz) <= arm.control_rate_hz:
        raise ChunkError(f"chunk {chunk_id}: point rate {rate_hz} Hz outside [{lo_rate:g}, {arm.control_rate_hz}] "
                         f"(slower motion: send more points)")
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


def seal(body_with_type: bytes, seq: int, session: int = 0) -> bytes:
    """A CHUNK_* body from encode_chunk (type byte first) as a full message with seq, session and CRC."""
    return pack(body_with_type[0], seq, body_with_type[1:], session)
