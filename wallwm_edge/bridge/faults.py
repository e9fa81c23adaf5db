"""Fault injection on a real serial transport: what a noisy UART does to framed bytes.

FaultySerial wraps a SerialTransport: each outgoing frame may be bit-flipped, dropped, duplicated,
held back and sent after the next one (reordered), cut short (partial) or preceded by garbage bytes.
Used by the tests and benchmarks; the firmware on the other end is the real one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from wallwm_edge.bridge.transport import Transport


@dataclass(frozen=True)
class FaultRates:
    flip: float = 0.0  # a frame gets 1-3 random bit flips
    drop: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    partial: float = 0.0  # the frame is cut short (its delimiter survives, the rest is lost)
    garbage: float = 0.0  # random bytes (no delimiter) before the frame
    rx_flip: float = 0.0  # a read from the firmware gets one bit flipped (lost ACKs and STATEs)


class FaultySerial(Transport):
    def __init__(self, inner, rates: FaultRates, seed: int = 0):
        self.inner, self.rates, self.rng = inner, rates, random.Random(seed)
        self.url = inner.url
        self.held: bytes | None = None
        self.enabled = True
        self.counts = {k: 0 for k in ("flip", "drop", "dup", "reorder", "partial", "garbage", "rx_flip")}

    @property
    def errors(self) -> int:
        return self.inner.errors

    def _hit(self, name: str) -> bool:
        if self.enabled and self.rng.random() < getattr(self.rates, name):
            self.counts[name] += 1
            return True
        return False

    def send(self, msg: bytes) -> None:
        frame = bytearray(self.inner.frame(msg))
        if self._hit("drop"):
            return
        if self._hit("flip"):
            for _ in range(self.rng.randint(1, 3)):
                i = self.rng.randrange(len(frame) - 1)  # the delimiter stays: framing survives, the CRC must catch it
                frame[i] ^= 1 << self.rng.randrange(8)
        if self._hit("partial"):
            frame = frame[: self.rng.randrange(1, len(frame) - 1)] + b"\x00"
        if self._hit("garbage"):
            frame = bytes(self.rng.randrange(1, 256) for _ in range(self.rng.randint(1, 20))) + frame
        out = bytes(frame) * (2 if self._hit("dup") else 1)
        if self.held is not None:
            out, self.held = out + self.held, None
        elif self._hit("reorder"):
            self.held = out
            return
        self.inner.write_raw(out)

    def recv(self, timeout: float) -> list[bytes]:
        data = bytearray(self.inner.read_raw(timeout))
        if data and self._hit("rx_flip"):
            i = self.rng.randrange(len(data))
            data[i] ^= 1 << self.rng.randrange(8)
        return self.inner.deframer.feed(bytes(data))

    def close(self) -> None:
        self.inner.close()


class FaultyCan(Transport):
    """Wraps a CanTransport: each outgoing CAN frame may be dropped, sent twice or have a bit flipped
    (a flip the bus's own CRC would normally catch: here it tests that the message CRC does too)."""

    def __init__(self, inner, drop: float = 0.0, dup: float = 0.0, flip: float = 0.0, seed: int = 0):
        self.inner, self.rng = inner, random.Random(seed)
        self.url = inner.url
        self.rates = {"drop": drop, "dup": dup, "flip": flip}
        self.counts = {k: 0 for k in self.rates}

    @property
    def errors(self) -> int:
        return self.inner.errors

    def _hit(self, name: str) -> bool:
        if self.rng.random() < self.rates[name]:
            self.counts[name] += 1
            return True
        return False

    def send(self, msg: bytes) -> None:
        for f in self.inner.frames(msg):
            if self._hit("drop"):
                continue
            if self._hit("flip") and len(f.data):
                i = self.rng.randrange(len(f.data))
                f.data[i] ^= 1 << self.rng.randrange(8)
            self.inner.send_frame(f)
            if self._hit("dup"):
                self.inner.send_frame(f)

    def recv(self, timeout: float) -> list[bytes]:
        return self.inner.recv(timeout)

    def close(self) -> None:
        self.inner.close()
