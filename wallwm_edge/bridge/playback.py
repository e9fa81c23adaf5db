"""Playing a finite sequence of chunks (a chunk file) to its end, and the verdict on it.

Unlike the on-board runtime, which never knows its last chunk, a file is a stream with an end:

- pacing. With blend "append" each chunk is queued behind the previous one as soon as the firmware has
  room: its flow control paces the file. With "replace" or "ensemble" a chunk takes over the unplayed rest
  of the previous one, so it is sent only once the arm has reached row `every` of the previous one. Sent at
  once (a file goes out at ~1000 chunks/s), every chunk but the last was preempted or dropped before it
  moved the arm (issue 14).
- the end. After the last chunk the firmware's queue runs dry: that underrun is the expected end of the
  stream, not a fault. An underrun after any earlier chunk is one (the arm stopped mid-stream).
- the verdict. Every chunk must play to its end or, with replace/ensemble, be taken over after it moved
  the arm; anything else (dropped, preempted before its first row, refused, lost, no fate in time) is a
  problem, and `wallwm-edge bridge` exits non-zero on any.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from wallwm_edge.bridge import protocol as P
from wallwm_edge.bridge.link import ArmLink, ChunkTicket
from wallwm_edge.bridge.streamer import ChunkStreamer
from wallwm_edge.errors import LinkError

SLACK_S = 10.0  # added to every computed wait: a loaded machine delays STATEs and fates, never the firmware


@dataclass(frozen=True)
class PlaybackReport:
    chunks: int  # sent
    played: int  # played to their last row
    handed_over: int  # replace/ensemble: taken over by the next chunk after they moved the arm
    steps: int  # rows the arm reached, over all chunks
    faults: tuple[str, ...]  # every fault the firmware reported during the stream, the final underrun excepted
    problems: tuple[str, ...]  # one line per chunk that did not play as sent, or per mid-stream underrun
    state: P.State | None  # the firmware's last STATE

    def line(self) -> str:
        s = self.state
        where = f"; arm at {[round(float(x), 4) for x in s.pos]}, mode {s.mode_name}" if s is not None else ""
        over = f" ({self.handed_over} taken over by the next)" if self.handed_over else ""
        return (f"played {self.played + self.handed_over} of {self.chunks} chunks{over} / {self.steps} steps{where}, "
                f"faults {', '.join(self.faults) or 'none'}")


def estop_remedy(port: str) -> str:
    """What to tell a user whose firmware is e-stopped (latched until RESET or a reboot)."""
    return (f"the firmware on {port} is e-stopped (latched until reset); once the arm is safe, clear it with "
            f"`wallwm-edge bridge FILE --port {port} --reset`, or reboot the simulator: "
            f"kill -USR1 <pid of wallwm-fw-sim>")


def _paced(link: ArmLink, t: ChunkTicket, every: int) -> None:
    """Block until the arm has reached row `every` of chunk t (or t ended): the next chunk may take over."""
    timeout = SLACK_S + (every + 1) / t.rate_hz
    try:
        # not STATE.last_done: it may still name an equal chunk id of an earlier session; the FATE cannot
        link.wait_state(lambda s: (s.playing == t.chunk_id and s.index >= every) or t.finished.is_set()
                        or s.mode == P.Mode.ESTOP, timeout)
    except LinkError:
        raise LinkError(f"chunk {t.chunk_id}: the arm did not reach row {every} within {timeout:.0f} s "
                        f"(status {t.status})") from None


def play(link: ArmLink, chunks: Iterable[np.ndarray], *, blend: str = "append", rate_hz: float = 50.0,
         every: int | None = None, wait: float | None = None, on_queued=None, **send_kw) -> PlaybackReport:
    """Stream `chunks` ((L, D) each, in order; the last one ends the stream) and, unless wait == 0, wait for
    every chunk's fate.

    every: replace/ensemble only, the row of a chunk the arm reaches before the next one is sent (default
    half the chunk). wait: seconds to wait for the fates after the last chunk is queued (None: the time the
    queue takes to play, plus slack). on_queued(ticket) is called as each chunk is queued."""
    s = ChunkStreamer(link, blend=blend, rate_hz=rate_hz)
    room = link.arm.queue_points
    # faults are judged from here on; a hold left over from before clears when the first chunk starts
    st = link.state()
    link.faults_seen, link.underruns[:] = 0, []
    stale = (st.faults if st else 0) & (P.Fault.WATCHDOG_HOLD | P.Fault.HOLD)
    tickets: list[ChunkTicket] = []
    source = iter(chunks)  # a list, or a live source that takes its time (the arm may run dry meanwhile)
    pts = next(source, None)
    while pts is not None:
        # the firmware takes a chunk when an earlier one frees room: at worst a full queue plays out first
        t = s.push(pts, event_id=len(tickets), timeout=SLACK_S + room / rate_hz, **send_kw)
        tickets.append(t)
        if on_queued:
            on_queued(t)
        nxt = next(source, None)
        if blend != "append" and nxt is not None:
            _paced(link, t, min(len(pts) - 1, every if every is not None else len(pts) // 2))
        pts = nxt
    if wait == 0:
        return _verdict(link, tickets, blend, stale, judged=False)
    if wait is None:
        wait = SLACK_S + sum(t.length for t in tickets if not t.finished.is_set()) / rate_hz
    deadline = time.monotonic() + wait
    for t in tickets:
        t.finished.wait(max(0.0, deadline - time.monotonic()))
    # a STATE after the last FATE: the final mode, and the underrun flag of the tick that ended the stream
    after = time.monotonic()
    if all(t.finished.is_set() for t in tickets):
        try:
            link.wait_state(lambda st: st.received_at >= after, 2.0)
        except LinkError:
            pass
    return _verdict(link, tickets, blend, stale, judged=True, waited=wait)


def _verdict(link: ArmLink, tickets: list[ChunkTicket], blend: str, stale: int, judged: bool, waited: float = 0.0):
    played = [t for t in tickets if t.status == "played"]
    over = [t for i, t in enumerate(tickets) if blend != "append" and t.status == "dropped" and t.fate == "replaced"
            and t.rows_played > 0 and i + 1 < len(tickets)]
    problems = []
    if judged:
        fine = {id(t) for t in played + over}  # by identity: tickets hold arrays, == would compare them
        for t in tickets:
            if id(t) in fine:
                continue
            if t.status in ("dropped", "failed", "lost"):
                problems.append(f"chunk {t.chunk_id}: {t.error or t.status}")
            else:
                problems.append(f"chunk {t.chunk_id}: no fate from the firmware within {waited:.0f} s "
                                f"(status {t.status})")
    last = tickets[-1].chunk_id if tickets else None
    mid = [c for c in link.underruns if c != last]
    problems += [f"underrun: the queue ran dry after chunk {c}, before the stream's end" for c in mid]
    faults = P.fault_names(link.faults_seen & ~P.Fault.UNDERRUN & ~stale) + (["underrun"] if mid else [])
    return PlaybackReport(len(tickets), len(played), len(over), sum(t.rows_played for t in tickets),
                          tuple(faults), tuple(problems), link.state())
