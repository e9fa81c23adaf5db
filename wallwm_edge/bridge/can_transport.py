"""CAN backend: python-can, classic 8-byte or CAN-FD 64-byte frames, own segmentation (framing.py)."""

from __future__ import annotations

import time

from wallwm_edge.bridge.framing import CanReassembler, can_segments, fd_length
from wallwm_edge.bridge.transport import Transport, register_backend
from wallwm_edge.errors import LinkError

HOST_TX_BASE, HOST_RX_BASE = 0x100, 0x140  # firmware listens on 0x100-0x13F, answers on 0x140-0x17F


class CanTransport(Transport):
    def __init__(self, interface: str, channel: str, fd: bool = False, tx_base: int = HOST_TX_BASE,
                 rx_base: int = HOST_RX_BASE, bitrate: int | None = None):
        import can

        kw = {"interface": interface, "channel": channel, "fd": fd}
        if bitrate:
            kw["bitrate"] = bitrate
        try:
            self.bus = can.Bus(**kw)
        except (can.CanError, OSError, ValueError, ImportError) as e:
            raise LinkError(f"cannot open CAN {interface}:{channel}: {e}") from None
        self.fd, self.tx_base, self.rx_base = fd, tx_base, rx_base
        self.frame_bytes = 64 if fd else 8
        self.rx = CanReassembler()
        self._can = can

    @property
    def errors(self) -> int:
        return self.rx.errors

    def frames(self, msg: bytes) -> list:
        out = []
        for off, data in can_segments(msg, self.frame_bytes):
            if self.fd:
                data = data + bytes(fd_length(len(data)) - len(data))
            out.append(self._can.Message(arbitration_id=self.tx_base + off, data=data, is_extended_id=False,
                                         is_fd=self.fd, bitrate_switch=self.fd))
        return out

    def send_frame(self, frame) -> None:
        try:
            self.bus.send(frame, timeout=1.0)
        except self._can.CanError as e:
            raise LinkError(f"CAN send failed: {e}") from None

    def send(self, msg: bytes) -> None:
        for f in self.frames(msg):
            self.send_frame(f)

    def recv(self, timeout: float) -> list[bytes]:
        out = []
        deadline = time.monotonic() + max(timeout, 0.0)
        wait = max(timeout, 0.0)
        while True:
            f = self.bus.recv(wait)
            if f is None:
                return out
            off = f.arbitration_id - self.rx_base
            if not f.is_extended_id and 0 <= off < 64:
                m = self.rx.feed(off, bytes(f.data))
                if m is not None:
                    out.append(m)
            wait = 0.0 if out else max(0.0, deadline - time.monotonic())

    def close(self) -> None:
        try:
            self.bus.shutdown()
        except Exception:  # noqa: BLE001
            pass


@register_backend("can")
def _open_can(rest: str, opts: dict) -> Transport:
    interface, _, channel = rest.partition(":")
    if not interface or not channel:
        raise LinkError(f"bad CAN port 'can:{rest}': expected can:INTERFACE:CHANNEL, e.g. can:socketcan:can0")
    return CanTransport(interface, channel, fd=opts.get("fd", "0") in ("1", "true", "yes"),
                        tx_base=int(opts.get("tx", str(HOST_TX_BASE)), 0), rx_base=int(opts.get("rx", str(HOST_RX_BASE)), 0),
                        bitrate=int(opts["bitrate"]) if "bitrate" in opts else None)
