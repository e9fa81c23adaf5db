"""Fault injection on a real serial transport: what a noisy UART does to framed bytes.

FaultySerial wraps a SerialTransport: each outgoing frame may be bit-flipped, dropped, duplicated,
held back and sent after the next one (reordered), cut short (partial) or preceded by garbage bytes.
Used by the tests and benchmarks; the firmware on the other end is the real one.

The faults of the i-th outgoing frame of a class (reliable: CHUNK_*/RESET/BYE; control: HEARTBEAT/HOLD/ESTOP;
other: HELLO) are a pure function of (seed, class, i), `FaultySerial.plan`: how many frames are sent
depends on timing (retransmissions, heartbeats), what the first N frames of a class suffer does not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

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


TX_FAULTS = ("drop", "flip", "partial", "garbage", "dup", "reorder")
LOSSY = ("drop", "flip", "partial")  # the frame never arrives intact: the host must resend


def frame_class(msg: bytes) -> str:
    t = msg[0] if msg else 0
    return "reliable" if t in (0x02, 0x03, 0x07, 0x08) else "control" if t in (0x04, 0x05, 0x06) else "other"


class FaultySerial(Transport):
    def __init__(self, inner, rates: FaultRates, seed: int = 0):
        self.inner, self.rates, self.seed = inner, rates, seed
        self.rx_rng = random.Random(f"{seed}:rx")
        self.url = inner.url
        self.held: bytes | None = None
        self.enabled = True
        self.counts = {f.name: 0 for f in fields(FaultRates)}
        self.sent = {"reliable": 0, "control": 0, "other": 0}  # frames of each class so far
        self.log: list[tuple[str, int, tuple[str, ...]]] = []  # (class, index in class, faults) of faulted frames

    @property
    def errors(self) -> int:
        return self.inner.errors

    @staticmethod
    def plan(rates: FaultRates, seed: int, cls: str, i: int) -> tuple[random.Random, tuple[str, ...]]:
        """The faults of the i-th frame of class `cls` (and the generator that shapes them)."""
        rng = random.Random(f"{seed}:{cls}:{i}")
        return rng, tuple(k for k in TX_FAULTS if rng.random() < getattr(rates, k))

    def send(self, msg: bytes) -> None:
        frame = bytearray(self.inner.frame(msg))
        cls = frame_class(msg)
        i = self.sent[cls]
        self.sent[cls] += 1
        rng, kinds = self.plan(self.rates, self.seed, cls, i) if self.enabled else (None, ())
        if kinds:
            self.log.append((cls, i, kinds))
            for k in kinds:
                self.counts[k] += 1
        if "drop" in kinds:
            return
        if "flip" in kinds:
            for _ in range(rng.randint(1, 3)):
                j = rng.randrange(len(frame) - 1)  # the last delimiter stays: framing survives, the CRC must catch it
                frame[j] ^= 1 << rng.randrange(8)
        if "partial" in kinds:
            frame = frame[: rng.randrange(1, len(frame) - 1)] + b"\x00"
        if "garbage" in kinds:  # line noise before the frame: its leading delimiter must cut it off
            frame = bytes(rng.randrange(1, 256) for _ in range(rng.randint(1, 20))) + frame
        out = bytes(frame) * (2 if "dup" in kinds else 1)
        if self.held is not None:
            out, self.held = out + self.held, None
        elif "reorder" in kinds:
            self.held = out
            return
        self.inner.write_raw(out)

    def recv(self, timeout: float) -> list[bytes]:
        data = bytearray(self.inner.read_raw(timeout))
        if data and self.enabled and self.rx_rng.random() < self.rates.rx_flip:
            self.counts["rx_flip"] += 1
            i = self.rx_rng.randrange(len(data))
            data[i] ^= 1 << self.rx_rng.randrange(8)
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
