"""Transports: a small ABC with backends registered by name (the python-can / pyserial pattern).

A transport moves whole protocol messages (bytes with their CRC) and hides the framing. URLs:
  serial:/dev/ttyUSB0?baud=1000000    pyserial (any pyserial URL after "serial:", ptys included)
  can:socketcan:can0?fd=1             python-can; interface:channel, fd=1 for CAN-FD 64-byte frames
  can:virtual:bench                   python-can's in-process virtual bus
  loop:NAME                           an in-process pair; the peer end is loop_peer(NAME)
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from typing import Callable
from urllib.parse import parse_qsl

from wallwm_edge.errors import LinkError

BACKENDS: dict[str, Callable[[str, dict], "Transport"]] = {}


def register_backend(name: str):
    def deco(factory):
        BACKENDS[name] = factory
        return factory
    return deco


class Transport(ABC):
    """Whole messages in and out; framing errors are counted in `errors`, never raised."""

    url: str = ""
    errors: int = 0

    @abstractmethod
    def send(self, msg: bytes) -> None: ...

    @abstractmethod
    def recv(self, timeout: float) -> list[bytes]:
        """Messages received within `timeout` seconds (maybe none). CRCs are checked by the caller."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_url(url: str) -> tuple[str, str, dict]:
    if ":" not in url:
        raise LinkError(f"bad port {url!r}: expected serial:PATH, can:INTERFACE:CHANNEL or loop:NAME")
    scheme, rest = url.split(":", 1)
    rest, _, query = rest.partition("?")
    return scheme, rest, dict(parse_qsl(query))


def open_transport(url: str) -> Transport:
    scheme, rest, opts = parse_url(url)
    if scheme not in BACKENDS:  # backends register on import; import the built-in ones lazily
        from wallwm_edge.bridge import can_transport, serial_transport  # noqa: F401
    if scheme not in BACKENDS:
        raise LinkError(f"unknown transport {scheme!r} in {url!r}; known: {', '.join(sorted(BACKENDS))}")
    t = BACKENDS[scheme](rest, opts)
    t.url = url
    return t


# ---- in-process loopback ------------------------------------------------------------------------------
class LoopbackTransport(Transport):
    def __init__(self, inbox: queue.Queue, outbox: queue.Queue):
        self.inbox, self.outbox = inbox, outbox
        self.closed = False

    def send(self, msg: bytes) -> None:
        if self.closed:
            raise LinkError("loopback transport is closed")
        self.outbox.put(bytes(msg))

    def recv(self, timeout: float) -> list[bytes]:
        out = []
        try:
            out.append(self.inbox.get(timeout=max(timeout, 0.0)))
            while True:
                out.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        return out

    def close(self) -> None:
        self.closed = True


_LOOPS: dict[str, tuple[LoopbackTransport, LoopbackTransport]] = {}
_LOOPS_LOCK = threading.Lock()


def _loop_pair(name: str) -> tuple[LoopbackTransport, LoopbackTransport]:
    with _LOOPS_LOCK:
        if name not in _LOOPS:
            a, b = queue.Queue(), queue.Queue()
            _LOOPS[name] = (LoopbackTransport(a, b), LoopbackTransport(b, a))
        return _LOOPS[name]


def loop_peer(name: str) -> LoopbackTransport:
    """The other end of `loop:NAME` (the firmware's side)."""
    return _loop_pair(name)[1]


@register_backend("loop")
def _open_loop(rest: str, opts: dict) -> Transport:
    return _loop_pair(rest or "default")[0]
