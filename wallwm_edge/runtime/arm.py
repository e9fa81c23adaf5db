"""The runtime's end of the bridge: one ArmLink that survives the cable being pulled.

    arm = ArmSession(None, fw_log=out / "fw.log")   # None: start the simulated firmware on a fresh pty
    arm.send(points, rate_hz=20, chunk_id=3, event_id=1)   # (L, 7) ee targets; False if the link is down
    arm.state(), arm.connected, arm.poll()                   # poll() reconnects when the link came back

Disconnects are detected two ways: a send that fails (LinkError), or no STATE from the firmware for
`stale_s` (the firmware streams STATE at its feedback rate, 50 Hz by default). While disconnected the
runtime sends nothing; the firmware's watchdog holds the arm where it is (and e-stops after its longer
deadline). `poll()` retries the port every `retry_s`; after a reconnect an e-stopped firmware is reset
(RESET is the only way out of e-stop) and the runtime resumes from the arm's measured pose.

`unplug(seconds)` simulates the cable being pulled (fault injection for tests and demos): the host
closes its end of the serial line and may not reopen it before `seconds` have passed.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np

from wallwm_edge.errors import LinkError


class ArmSession:
    def __init__(self, port: str | None = None, fw_log: Path | None = None, stale_s: float = 0.5, retry_s: float = 0.3,
                 hold_ms: int = 250, estop_ms: int = 1000, on_event=None):
        from wallwm_edge.bridge.firmware import SimulatedFirmware

        self.fw = None
        if port is None:  # the simulated firmware (wallwm-fw-sim) on a fresh pseudo-terminal
            # Ctrl-C in a terminal signals the whole foreground process group. Real firmware is another
            # machine and never sees it, and the host must still be able to command the HOLD after it: the
            # simulator is started with SIGINT blocked (the mask is inherited across exec). SIGTERM stops
            # it; it exits with its parent.
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                self.fw = SimulatedFirmware(6, log=fw_log, hold_ms=hold_ms, estop_ms=estop_ms)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
            port = self.fw.port
        self.port = port
        self.stale_s, self.retry_s = stale_s, retry_s
        self.on_event = on_event or (lambda kind, **kw: None)
        self.link = None
        self.unplugged_until = 0.0
        self._last_try = 0.0
        self.disconnects = 0
        self.reconnects = 0
        try:
            self._open(timeout=5.0)
        except LinkError:
            self.close()
            raise
        self.arm = self.link.arm

    def _open(self, timeout: float) -> None:
        from wallwm_edge.bridge.link import ArmLink, LinkConfig

        self.link = ArmLink.open(self.port, LinkConfig(handshake_timeout=timeout))
        self.link.wait_state(lambda s: True, timeout)

    @property
    def connected(self) -> bool:
        return self.link is not None

    def state(self):
        return None if self.link is None else self.link.state()

    def _lost(self, why: str) -> None:
        if self.link is None:
            return
        self.disconnects += 1
        self.on_event("link_lost", why=why)
        try:
            self.link.close()
        except Exception:  # noqa: BLE001 - the port may already be gone
            pass
        self.link = None

    def unplug(self, seconds: float) -> None:
        """Fault injection: drop the link now and keep it down for `seconds`."""
        self.unplugged_until = time.monotonic() + seconds
        self._lost(f"unplugged for {seconds:.2f} s (fault injection)")

    def poll(self) -> bool:
        """Check the link: detect a silent firmware, reconnect when possible. Returns `connected`."""
        now = time.monotonic()
        if self.link is not None:
            s = self.link.state()
            if s is not None and now - s.received_at > self.stale_s:
                self._lost(f"no STATE from the firmware for {now - s.received_at:.2f} s")
            return self.link is not None
        if now < self.unplugged_until or now - self._last_try < self.retry_s:
            return False
        self._last_try = now
        try:
            self._open(timeout=1.0)
        except LinkError as e:
            self.on_event("reconnect_failed", why=str(e))
            if self.link is not None:
                self.link.close()
                self.link = None
            return False
        self.reconnects += 1
        s = self.link.state()
        if s is not None and s.mode == 3:  # e-stopped while we were away: RESET is the only way out
            self.link.reset()
        self.on_event("link_restored", mode=s.mode_name if s else "?", faults=s.fault_names if s else [])
        return True

    def send(self, points: np.ndarray, rate_hz: float, chunk_id: int, event_id: int, start: str = "after",
             timeout: float = 1.0):
        """Queue (L, 7) ee targets on the firmware; returns the ticket, or None when the link is down."""
        if self.link is None:
            return None
        try:
            return self.link.send_chunk(points, chunk_id=chunk_id & 0xFFFF, event_id=event_id, rate_hz=rate_hz,
                                        space="ee", start=start, timeout=timeout)
        except LinkError as e:
            if isinstance(e, ValueError):  # ChunkError: a bad chunk is a bug upstream, not a dead link
                raise
            self._lost(f"sending chunk {chunk_id} failed: {e}")
            return None

    def hold(self) -> bool:
        if self.link is None:
            return False
        try:
            self.link.hold(timeout=1.0)
            return True
        except LinkError:
            return False

    def close(self) -> None:
        if self.link is not None:
            try:
                self.link.end_session()  # a normal end says BYE: the firmware's watchdog is for a host that vanishes
            except Exception:  # noqa: BLE001
                pass
            self.link = None
        if self.fw is not None:
            self.fw.stop()

    def fw_events(self) -> list:
        return self.fw.events() if self.fw is not None else []
