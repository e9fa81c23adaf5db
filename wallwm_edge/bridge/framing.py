"""Framing: messages over byte streams (COBS) and over CAN frames (own segmentation).

Serial: every message is COBS-encoded between two 0x00 bytes (protocol v2): the leading one cuts off
whatever garbage the line picked up since the last frame, so garbage never destroys the frame after it;
the receiver ignores empty frames. CAN: a message takes a block of 64 identifiers; bit 5 of the identifier marks
its first frame (which starts with the message length, u16), bits 0-4 count frames modulo 32. Every data
byte after that carries message bytes: a 50x7 int16 chunk puts 96% of the data field to use on classic CAN
and CAN-FD (ISO-TP spends a byte of every frame on its header and adds flow-control round trips).
"""

from __future__ import annotations

from cobs import cobs

CAN_START = 0x20
FD_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)


def serial_frame(msg: bytes) -> bytes:
    return b"\x00" + cobs.encode(msg) + b"\x00"


class SerialDeframer:
    """Bytes in, messages out. Garbage and partial frames give undecodable frames, counted and dropped."""

    def __init__(self, max_frame: int = 2048):
        self.buf = bytearray()
        self.max_frame = max_frame
        self.errors = 0

    def feed(self, data: bytes) -> list[bytes]:
        out = []
        self.buf += data
        while True:
            i = self.buf.find(0)
            if i < 0:
                if len(self.buf) > self.max_frame:  # no delimiter in sight: drop, count
                    self.buf.clear()
                    self.errors += 1
                return out
            frame, self.buf = bytes(self.buf[:i]), self.buf[i + 1:]
            if not frame:
                continue
            try:
                out.append(cobs.decode(frame))
            except cobs.DecodeError:
                self.errors += 1


def fd_length(n: int) -> int:
    """The CAN-FD data length a frame of n bytes is padded to."""
    return next(k for k in FD_LENGTHS if k >= n)


def can_segments(msg: bytes, frame_bytes: int = 8) -> list[tuple[int, bytes]]:
    """[(identifier offset, data)] for one message; frame_bytes 8 (classic) or 64 (CAN-FD)."""
    stream = len(msg).to_bytes(2, "little") + msg
    out = []
    for i, at in enumerate(range(0, len(stream), frame_bytes)):
        off = (CAN_START if i == 0 else 0) | (i & 0x1F)
        out.append((off, stream[at:at + frame_bytes]))
    return out


class CanReassembler:
    """CAN frames in (identifier offset within the block, data), messages out."""

    def __init__(self, max_msg: int = 1024):
        self.max_msg = max_msg
        self.buf = bytearray()
        self.want = 0
        self.next_seg = 0
        self.active = False
        self.errors = 0

    def feed(self, off: int, data: bytes) -> bytes | None:
        seg = off & 0x1F
        if off & CAN_START:
            if len(data) < 2:
                self.errors += 1
                return None
            self.want = int.from_bytes(data[:2], "little")
            self.active = 7 <= self.want <= self.max_msg
            if not self.active:
                self.errors += 1
                return None
            self.buf = bytearray(data[2:2 + self.want])
            self.next_seg = 1
        else:
            if not self.active:
                return None
            if seg == (self.next_seg - 1) & 0x1F:
                return None  # the same frame again
            if seg != self.next_seg & 0x1F:
                self.active = False  # a frame went missing: this message cannot complete
                self.errors += 1
                return None
            self.next_seg += 1
            self.buf += data[:self.want - len(self.buf)]
        if len(self.buf) >= self.want:
            self.active = False
            return bytes(self.buf)
        return None
