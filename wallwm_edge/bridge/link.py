"""ArmLink: the host end of the bridge. Torch-free; the on-board runtime uses exactly this API.

    link = ArmLink.open("serial:/dev/pts/3")           # handshake: link.arm describes the arm
    link.send_chunk(points, chunk_id=7, event_id=2)     # (L, D) joint targets + gripper; blocks until queued
    link.state()                                        # latest STATE: positions, faults, buffer level...
    link.hold(); link.estop(); link.reset()
    link.end_session()                                  # BYE, then close: a clean end trips no watchdog
    link.close()                                        # drop the link without a word (the watchdog notices)

One I/O thread reads replies, sends heartbeats and retransmits. Reliable messages (chunks, reset) go
out in order with sequence numbers, go-back-N: the firmware applies each exactly once and in order,
answers ACK (cumulative) or NACK; a NACK for a gap or a timeout resends from the first unacknowledged
message. Flow control: a chunk begins only when the firmware's last reported free points hold it and a
chunk slot is free. Every message names this link's session: the firmware refuses another writer while
this one is alive, and this end ignores replies addressed to anyone else. The firmware reports what
became of every chunk it held (played, or dropped by a hold, e-stop, reset or replacement): a ticket's
status follows it.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from wallwm_edge.bridge import protocol as P
from wallwm_edge.bridge.transport import Transport, open_transport
from wallwm_edge.errors import LinkError


@dataclass(frozen=True)
class LinkConfig:
    ack_timeout: float = 0.15  # s without an ACK before resending (pty round trip is ~1 ms; CI is loaded)
    heartbeat_s: float = 0.05  # well inside the firmware's watchdog hold deadline (250 ms by default)
    handshake_timeout: float = 5.0
    max_retries: int = 40  # resends of one message before the link is declared dead
    poll_s: float = 0.002  # how long the I/O thread blocks in recv
    default_rate_hz: float = 50.0


FINAL = ("played", "dropped", "failed", "lost")


@dataclass
class ChunkTicket:
    """A chunk (or a RESET) on its way: status waiting -> sending -> queued -> played | dropped, or failed
    (refused by the firmware or the link died); "lost" when the firmware rebooted after queueing it and
    before finishing it (ArmLink.lost_on_reboot lists those). `fate` names why a chunk was dropped (hold,
    estop, replaced, reset, abandoned), `rows_played` how many of its rows the arm reached."""

    chunk_id: int
    event_id: int
    length: int
    bodies: list[bytes]  # type byte + body, sealed with a seq when sent
    crc: int = 0  # CRC-32C of the float32 points the firmware will hold (its log says the same)
    decoded: np.ndarray | None = None  # (L, D) float32 as the firmware decodes them
    rate_hz: float = 0.0
    status: str = "waiting"
    error: str = ""
    t_ready: float = 0.0
    t_queued: float = 0.0
    retries: int = 0
    fate: str = ""
    rows_played: int = 0
    done: threading.Event = field(default_factory=threading.Event)  # queued, or failed / dropped before that
    finished: threading.Event = field(default_factory=threading.Event)  # status is one of FINAL

    def wait(self, timeout: float | None = None) -> "ChunkTicket":
        """Block until the firmware holds the whole chunk; LinkError if it never will."""
        if not self.done.wait(timeout):
            raise LinkError(f"chunk {self.chunk_id}: not queued by the firmware within {timeout} s (status {self.status})")
        if self.status == "failed" or (self.status == "dropped" and not self.t_queued):
            raise LinkError(f"chunk {self.chunk_id}: {self.error}")
        return self

    def wait_finished(self, timeout: float | None = None) -> str:
        """Block until the chunk's fate is known: played, dropped, failed or lost (returned)."""
        if not self.finished.wait(timeout):
            raise LinkError(f"chunk {self.chunk_id}: no fate reported within {timeout} s (status {self.status})")
        return self.status

    def _final(self, status: str, error: str = "", fate: str = "", rows: int = 0) -> None:
        if self.status in FINAL:
            return
        self.status, self.error, self.fate, self.rows_played = status, error or self.error, fate, rows
        self.done.set()
        self.finished.set()


class ArmLink:
    def __init__(self, transport: Transport, config: LinkConfig | None = None, *, connect: bool = True):
        self.t = transport
        self.cfg = config or LinkConfig()
        self.arm: P.ArmInfo | None = None
        self._lock = threading.RLock()
        self._tx_lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seq = random.randrange(0x10000)
        self._ctrl_seq = random.randrange(0x10000)
        self._session = random.randrange(1, 1 << 32)  # names every message; kept across firmware reboots
        self._queue: collections.deque[ChunkTicket] = collections.deque()
        self._inflight: list[tuple[int, bytes, ChunkTicket, bool]] = []  # (seq, message, ticket, is_last)
        self._last_tx = 0.0
        self._blocked: tuple[int, int, float] | None = None  # (seq, points needed, since) after BUFFER_FULL
        self._gap_resend = (-1, 0.0)
        self._free = 0
        self._free_chunks = 0
        self._fate_next = 0  # index of the first chunk fate not yet received
        self._not_owner = False  # the firmware answered NOT_OWNER: another session holds the link
        self._state: P.State | None = None
        self._fw_seq: int | None = None
        self._need_hello = True
        self._hello_at = 0.0
        self._last_hb = 0.0
        self._next_chunk_id = 0
        self.stats = collections.Counter()
        self.reboots = 0
        self.lost_on_reboot: list[int] = []  # chunk ids the firmware had queued (acked) but not finished when it rebooted
        self._unfinished: collections.deque[ChunkTicket] = collections.deque(maxlen=64)  # queued, not yet done
        self.failure: str = ""
        self.faults_seen = 0  # every fault flag of every STATE this session (informational ones are reported once)
        self.underruns: list[int] = []  # per STATE reporting UNDERRUN: the chunk after which the queue ran dry
        self._bye: ChunkTicket | None = None  # end_session's BYE; once acknowledged the link says nothing more
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ArmLink({transport.url})", daemon=True)
        self._thread.start()
        if connect:
            self.wait_connected(self.cfg.handshake_timeout)

    @classmethod
    def open(cls, url: str, config: LinkConfig | None = None) -> "ArmLink":
        return cls(open_transport(url), config)

    # ---- public API -----------------------------------------------------------------------------------
    def wait_connected(self, timeout: float) -> P.ArmInfo:
        with self._lock:
            if not self._changed.wait_for(lambda: not self._need_hello or self._stop.is_set(), timeout):
                if self._not_owner:
                    raise LinkError(f"the firmware on {self.t.url} is owned by another host session (it takes a new "
                                    f"one only after the owner has been quiet for its watchdog hold time)")
                raise LinkError(f"no handshake reply from the firmware on {self.t.url} within {timeout} s")
            if self.arm is None:
                raise LinkError(f"link to {self.t.url} closed: {self.failure}")
            return self.arm

    def send_chunk(self, points, chunk_id: int | None = None, event_id: int = 0, *, rate_hz: float | None = None,
                   start: str = "after", start_ms: int = 0, encoding: str = "int16", space: str = "joint",
                   interp: str = "linear", wait: bool = True, timeout: float = 10.0) -> ChunkTicket:
        """Validate, encode and queue a chunk (L, D); with wait, block until the firmware holds all of it.

        start: "after" the previous chunk, "replace" the not-yet-played points now, or "at" firmware time
        start_ms (STATE.time_ms is the firmware clock). Raises ChunkError (a ValueError) for a bad chunk."""
        arm = self.wait_connected(self.cfg.handshake_timeout)
        with self._lock:
            if chunk_id is None:
                chunk_id = self._next_chunk_id
            self._next_chunk_id = (chunk_id + 1) & 0xFFFF
        enc = P.encode_chunk(points, arm, chunk_id, event_id, rate_hz or self.cfg.default_rate_hz, start, start_ms,
                             encoding, space, interp)
        ticket = ChunkTicket(chunk_id, event_id, enc.length, enc.messages, enc.crc, enc.decoded,
                             rate_hz or self.cfg.default_rate_hz, t_ready=time.monotonic())
        self._submit(ticket)
        return ticket.wait(timeout) if wait else ticket

    def reset(self, timeout: float = 5.0) -> None:
        """Clear faults and the queue; the only way out of e-stop. Reliable: applied exactly once."""
        self.wait_connected(self.cfg.handshake_timeout)
        t = ChunkTicket(0xFFFF, 0, 0, [bytes([P.RESET])], t_ready=time.monotonic())
        self._submit(t)
        t.wait(timeout)

    def hold(self, timeout: float = 2.0) -> P.State:
        """Stop where the arm is and drop queued chunks; returns the STATE that confirms it."""
        return self._control(P.HOLD, lambda s: s.mode in (2, 3), timeout)

    def estop(self, timeout: float = 2.0) -> P.State:
        return self._control(P.ESTOP, lambda s: s.mode == 3, timeout)

    def state(self) -> P.State | None:
        """The latest STATE from the firmware (None before the first)."""
        return self._state

    def wait_state(self, pred, timeout: float) -> P.State:
        """Block until a STATE satisfying pred arrives; LinkError after timeout."""
        with self._lock:
            ok = self._changed.wait_for(lambda: self._state is not None and pred(self._state) or self._stop.is_set(),
                                        timeout)
            if not ok or self._state is None or not pred(self._state):
                raise LinkError(f"firmware state did not reach the expected condition within {timeout} s "
                                f"(last: {self._state})")
            return self._state

    def tickets_unfinished(self) -> list[ChunkTicket]:
        """Chunks the firmware holds (queued) whose fate is not known yet, in queue order."""
        with self._lock:
            return list(self._unfinished)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until every submitted chunk is queued or failed."""
        with self._lock:
            if not self._changed.wait_for(lambda: not self._queue and not self._inflight, timeout):
                raise LinkError(f"{len(self._queue) + len(self._inflight)} messages still unacknowledged after {timeout} s")

    def end_session(self, timeout: float = 2.0) -> None:
        """End the session cleanly, then close: BYE tells the firmware this host is leaving, so its watchdog
        (which is for a host that vanishes mid-stream) does not hold and then e-stop the arm a second later.
        What the firmware still holds is dropped (fate hold) and the arm stays where it is: nobody would be
        watching it. A firmware that does not acknowledge within `timeout` is left to its watchdog."""
        if not self._stop.is_set() and self.arm is not None and not self._need_hello:
            with self._lock:
                for t in self._queue:  # not begun: they never will be
                    t._final("failed", "the session ended before it was sent")
                self._queue.clear()
            self._bye = ChunkTicket(0xFFFF, 0, 0, [bytes([P.BYE])], t_ready=time.monotonic())
            try:
                self._submit(self._bye)
                self._bye.done.wait(timeout)
            except LinkError:
                pass
        self.close()

    def close(self) -> None:
        """Drop the link without a word: the firmware's watchdog holds, then e-stops the arm (a disconnect)."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.t.close()
        with self._lock:
            self._changed.notify_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- sending ----------------------------------------------------------------------------------------
    def _tx(self, msg: bytes) -> None:
        with self._tx_lock:
            self.t.send(msg)
        self.stats["tx_messages"] += 1

    def _control(self, type_: int, pred, timeout: float) -> P.State:
        deadline = time.monotonic() + timeout
        sent_at = time.monotonic()
        while True:
            with self._lock:
                self._ctrl_seq = (self._ctrl_seq + 1) & 0xFFFF
                seq = self._ctrl_seq
            self._tx(P.control(type_, seq, self._session))
            try:  # a newer STATE than our send that shows the mode; resend if the message was lost
                return self.wait_state(lambda s: s.received_at >= sent_at and pred(s),
                                       min(0.2, max(0.0, deadline - time.monotonic())))
            except LinkError:
                if time.monotonic() >= deadline:
                    raise LinkError(f"firmware did not confirm {P.TYPE_NAMES[type_]} within {timeout} s") from None

    def _submit(self, ticket: ChunkTicket) -> None:
        with self._lock:
            if self._stop.is_set():
                raise LinkError(f"link to {self.t.url} is closed")
            self._queue.append(ticket)
            self._pump(time.monotonic())

    def _pump(self, now: float) -> None:
        """Send what may be sent now (caller holds the lock)."""
        if self._need_hello:
            return
        if self._blocked is not None:  # the firmware lacked room: resend when it reports enough (not a retry)
            seq, needed, since = self._blocked
            if (self._free >= needed and self._free_chunks >= 1) or now - since > 1.0:
                self._blocked = None
                self._resend_from(seq, now, retry=False)
            return
        if self._inflight:
            if now - self._last_tx > self.cfg.ack_timeout:
                self.stats["timeouts"] += 1
                self._resend_from(self._inflight[0][0], now)
            return
        if not self._queue:
            return
        t = self._queue[0]
        if t.length and (t.length > self._free or self._free_chunks < 1):
            self.stats["flow_waits"] += 1
            return  # wait for an ACK/STATE reporting room: free points and a free chunk slot
        self._queue.popleft()
        t.status = "sending"
        for i, body in enumerate(t.bodies):
            msg = P.seal(body, self._seq, self._session)
            self._inflight.append((self._seq, msg, t, i == len(t.bodies) - 1))
            self._seq = (self._seq + 1) & 0xFFFF
        if t.length:
            self._free -= t.length
            self._free_chunks -= 1
        for seq, msg, _, _ in self._inflight:
            self._tx(msg)
        self._last_tx = now

    def _resend_from(self, seq: int, now: float, retry: bool = True) -> None:
        todo = [m for m in self._inflight if ((m[0] - seq) & 0xFFFF) < 0x8000]
        if not todo:
            return
        t = todo[0][2]
        t.retries += retry
        if t.retries > self.cfg.max_retries:
            self._fail_inflight(f"no acknowledgement from the firmware after {self.cfg.max_retries} resends")
            self._new_session()  # the firmware's expected sequence is unknown now: start a new session
            return
        self.stats["retransmits"] += len(todo)
        for _, msg, _, _ in todo:
            self._tx(msg)
        self._last_tx = now

    def _fail_inflight(self, why: str) -> None:
        for _, _, t, _ in self._inflight:
            t._final("failed", why)
        self._inflight.clear()
        self._blocked = None

    def _new_session(self) -> None:
        self._session = random.randrange(1, 1 << 32)
        self._need_hello = True
        self._hello_at = 0.0

    # ---- receiving ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = self.t.recv(self.cfg.poll_s)
            except LinkError as e:
                self.failure = str(e)
                self.stats["io_errors"] += 1
                time.sleep(0.05)
                continue
            now = time.monotonic()
            with self._lock:
                for m in msgs:
                    try:
                        self._handle(P.decode(m, now), now)
                    except LinkError:
                        self.stats["rx_bad"] += 1
                said_bye = self._bye is not None and self._bye.done.is_set()  # the session is over: stay silent
                # the same session until it is taken
                if self._need_hello and not said_bye and now - self._hello_at > 0.25:
                    self._hello_at = now
                    self._tx(P.hello(self._seq, self._session))
                self._pump(now)
                self._changed.notify_all()
            if not self._need_hello and not said_bye and now - self._last_hb >= self.cfg.heartbeat_s:
                self._last_hb = now
                with self._lock:
                    self._ctrl_seq = (self._ctrl_seq + 1) & 0xFFFF
                    seq, fate_ack = self._ctrl_seq, self._fate_next
                self._tx(P.control(P.HEARTBEAT, seq, self._session, fate_ack))

    def _fresh(self, seq: int) -> bool:
        """Firmware messages arrive in order on every link we support; drop a stale duplicate."""
        if self._fw_seq is not None and ((seq - self._fw_seq) & 0xFFFF) >= 0x8000:
            return False
        self._fw_seq = seq
        return True

    def _rebooted(self, boot_id: int) -> None:
        """The firmware restarted: what it held is gone. Resend the chunk it was receiving, in a new session."""
        self.reboots += 1
        self.stats["reboots"] += 1
        while self._unfinished:  # acknowledged, never reported done: gone with the firmware's queue
            t = self._unfinished.popleft()
            t._final("lost", "the firmware rebooted before playing it")
            self.lost_on_reboot.append(t.chunk_id)
        if self.arm is not None:
            self.arm = P.ArmInfo(**{**self.arm.__dict__, "boot_id": boot_id})
        requeue = []
        for _, _, t, _ in self._inflight:
            if t not in requeue and t.status != "failed":
                t.status = "waiting"
                requeue.append(t)
        self._inflight.clear()
        self._blocked = None
        self._queue.extendleft(reversed(requeue))
        self._need_hello = True
        self._hello_at = 0.0
        self._fw_seq = None

    def _handle(self, m, now: float) -> None:
        if m.session != self._session:  # addressed to another writer on the same link
            self.stats["rx_foreign"] += 1
            return
        if isinstance(m, P.ArmInfo):
            if self._need_hello:
                self.arm = m
                self._need_hello = False
                self._not_owner = False
                self._free, self._free_chunks = m.queue_points, m.queue_chunks  # refined by the first ACK/STATE
                self._fate_next = m.fate_next
                self._fw_seq = None
                self._gap_resend = (-1, 0.0)
            return
        if not self._fresh(m.seq):
            self.stats["rx_stale"] += 1
            return
        if isinstance(m, P.State):
            self._state = m
            self.faults_seen |= m.faults
            if m.faults & P.Fault.UNDERRUN:
                self.underruns.append(m.last_done)
            if self.arm is not None and m.boot_id != self.arm.boot_id and not self._need_hello:
                self._rebooted(m.boot_id)
                return
            sending = {id(t): t for _, _, t, _ in self._inflight if t.length}
            self._free = m.free - sum(t.length for t in sending.values())
            self._free_chunks = m.free_chunks - len(sending)
            return
        if isinstance(m, P.Fates):
            self._fates(m)
            return
        if isinstance(m, P.Ack):
            self.stats["acks"] += 1
            self._free, self._free_chunks = m.free, m.free_chunks
            self._acked(m.acked, now)
            return
        if isinstance(m, P.Nack):
            self.stats["nacks"] += 1
            known = m.reason in P.NackReason._value2member_map_
            self.stats[f"nack_{P.NackReason(m.reason).name.lower()}" if known else "nack_other"] += 1
            self._free, self._free_chunks = m.free, m.free_chunks
            if m.reason == P.NackReason.NOT_READY:  # the firmware rebooted (and forgot our session)
                if not self._need_hello:
                    self._rebooted(self.arm.boot_id if self.arm else 0)
                return
            if m.reason == P.NackReason.NOT_OWNER:  # another session holds the link: nothing of ours is applied
                self._not_owner = True
                if not self._need_hello:
                    self._fail_inflight(f"firmware refused it: {m.describe()}")
                    self._need_hello = True
                return
            if m.consumes:  # final answer for that message: the sequence moves on
                for s, _, t, _ in self._inflight:
                    if s == m.nacked:
                        if m.reason == P.NackReason.DROPPED:
                            t._final("dropped", f"dropped by the firmware before it was complete: {t.fate or 'hold'}",
                                     t.fate or "hold")
                        else:
                            t._final("failed", f"firmware refused it: {m.describe()}")
                self._acked(m.nacked, now)
            elif m.reason == P.NackReason.BUFFER_FULL:
                self._blocked = (m.nacked, next((t.length for s, _, t, _ in self._inflight if s == m.nacked), 0), now)
            elif m.reason == P.NackReason.SEQ_GAP and self._blocked is None:
                exp, at = self._gap_resend
                if exp != m.expected or now - at > 0.05:  # one resend per gap, not one per NACK
                    self._gap_resend = (m.expected, now)
                    self._resend_from(m.expected, now)

    def _fates(self, m: P.Fates) -> None:
        """Chunk fates from the firmware: each index once, in order. After a lost FATE the next HEARTBEAT asks
        for the missing ones (from self._fate_next) and the firmware resends from there: entries past a gap
        are left for that resend, unless the firmware's ring no longer holds what is missing."""
        gap = (m.first - self._fate_next) & 0xFFFF
        if 0 < gap < 0x8000:
            if len(m.entries) < P.FATES:
                self.stats["fates_out_of_order"] += 1
                return  # wait for the resend, which starts at the first missing fate
            self.stats["fates_missed"] += gap  # older than the firmware's ring: unknown for ever
            self._fate_next = m.first
        for e in m.entries:
            if ((e.index - self._fate_next) & 0xFFFF) != 0:
                continue  # already seen
            self._fate_next = (e.index + 1) & 0xFFFF
            self.stats[f"fate_{e.name}"] += 1
            t = next((t for t in self._unfinished if t.chunk_id == e.chunk_id), None)
            if t is not None:
                self._unfinished.remove(t)
            else:  # a chunk dropped while it was still being received
                t = next((t for _, _, t, _ in self._inflight if t.chunk_id == e.chunk_id and t.length), None)
            if t is None:
                continue
            if e.fate == P.Fate.PLAYED:
                t._final("played", rows=e.rows)
            else:
                t._final("dropped", f"dropped by the firmware ({e.name}) after {e.rows} of {t.length} rows", e.name,
                         e.rows)

    def _acked(self, seq: int, now: float) -> None:
        while self._inflight and ((seq - self._inflight[0][0]) & 0xFFFF) < 0x8000:
            s, _, t, last = self._inflight.pop(0)
            if last and t.status not in FINAL:
                t.status = "queued"
                t.t_queued = now
                t.done.set()
                if t.length:
                    self._unfinished.append(t)
                else:
                    t.finished.set()
            self._last_tx = now
