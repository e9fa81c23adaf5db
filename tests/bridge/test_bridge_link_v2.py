"""Protocol v2 (issue 12): chunk slots in flow control, per-chunk fates, one owning session, rate bounds,
the velocity limit across space switches, protocol values as enums mirroring wwfw.h."""

import itertools
import re
import struct
import time

import numpy as np
import pytest

from wallwm_edge.bridge import protocol as P
from wallwm_edge.bridge.faults import FaultRates, FaultySerial
from wallwm_edge.bridge.firmware import InProcessFirmware, SimulatedFirmware, source_dir
from wallwm_edge.bridge.link import ArmLink, ChunkTicket, LinkConfig
from wallwm_edge.bridge.serial_transport import SerialTransport
from wallwm_edge.bridge.streamer import ChunkStreamer
from wallwm_edge.bridge.transport import open_transport
from wallwm_edge.errors import LinkError

CALM = dict(hold_ms=1000, estop_ms=4000)  # watchdog deadlines a loaded CI machine cannot miss
_names = itertools.count()


def ramp(L=50, j=0, to=0.3, cols=7):
    p = np.zeros((L, cols))
    p[:, j] = np.linspace(0.0, to, L)
    p[:, cols - 1] = 0.5
    return p


@pytest.fixture
def sim(fw_sim_exe):
    fw = SimulatedFirmware(exe=fw_sim_exe, **CALM)
    yield fw
    fw.stop()


@pytest.fixture
def loop_fw():
    name = f"v2-{next(_names)}"
    fw = InProcessFirmware(loop=name, **CALM)
    yield name, fw
    fw.stop()


# ---- enums -------------------------------------------------------------------------------------------------
def header_values() -> dict[str, int]:
    text = (source_dir() / "include" / "wwfw.h").read_text()
    vals = {m[0]: int(m[1], 0) for m in re.findall(r"\b(WWFW_[A-Z0-9_]+)\s*=\s*(0x[0-9A-Fa-f]+|\d+)", text)}
    vals |= {m[0]: int(m[1], 0) for m in re.findall(r"#define (WWFW_[A-Z0-9_]+) (0x[0-9A-Fa-f]+|\d+)u", text)}
    return vals


@pytest.mark.parametrize("enum, prefix", [(P.MsgType, "WWFW_"), (P.StartMode, "WWFW_START_"),
                                          (P.Encoding, "WWFW_ENC_"), (P.NackReason, "WWFW_NACK_"),
                                          (P.Fate, "WWFW_FATE_"), (P.Mode, "WWFW_MODE_"), (P.Space, "WWFW_SPACE_"),
                                          (P.Fault, "WWFW_F_"), (P.Fmt, "WWFW_FMT_")])
def test_protocol_enums_mirror_wwfw_h(enum, prefix):
    h = header_values()
    for member in enum:
        assert h[prefix + member.name] == member.value, (prefix + member.name, member.value)
    assert h["WWFW_PROTO_VERSION"] == P.PROTO_VERSION and h["WWFW_MAX_CHUNKS"] == P.MAX_CHUNKS
    assert h["WWFW_HEADER"] == P.HEADER and h["WWFW_FATES"] == P.FATES and h["WWFW_MAX_MSG"] == P.MAX_MSG


# ---- rate bounds (item 6) -------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [1e-30, 0.5, 0.999, 0.0, -3.0, float("nan"), float("inf"), 501.0])
def test_host_refuses_a_rate_outside_the_bounds(rate):
    import bridge_golden as G

    with pytest.raises(P.ChunkError, match="point rate"):
        P.encode_chunk(np.zeros((3, 7)), G.default_arm(), 1, 0, rate)
    P.encode_chunk(np.zeros((3, 7)), G.default_arm(), 1, 0, 1.0)  # the bound itself is fine


def test_firmware_refuses_a_crawling_chunk(loop_fw):
    """A raw CHUNK_BEGIN at 1e-30 points/s (the host would refuse it) is NACKed, and the queue stays free."""
    name, fw = loop_fw
    link = ArmLink(open_transport(f"loop:{name}"))
    try:
        body = struct.pack("<HIHfBBI", 5, 0, 1, 1e-30, 0, int(P.Encoding.F32), 0) + bytes(28)
        crawl = ChunkTicket(5, 0, 1, [bytes([P.CHUNK_BEGIN]) + body])
        link._submit(crawl)  # what a host without the bound would send
        with pytest.raises(LinkError, match="bad chunk"):
            crawl.wait(5)
        assert link.send_chunk(ramp(5), rate_hz=50.0).status == "queued"
    finally:
        link.close()


# ---- flow control by points and chunk slots (item 2) ---------------------------------------------------------
def test_clean_link_no_nack_whatever_the_chunk_size(sim):
    """24 chunks of 16 points appended (the chunk table, not the points, runs out first), then 200 one-point
    chunks: the host waits for a free slot instead of drawing BUFFER_FULL NACKs and failing after 40."""
    link = ArmLink.open(sim.port)
    try:
        s = ChunkStreamer(link, blend="append", rate_hz=50.0)
        tickets = [s.push(ramp(16, to=0.01 * (k % 3))) for k in range(24)]
        assert all(t.status in ("queued", "played") for t in tickets)
        assert link.stats["nacks"] == 0 and link.stats["flow_waits"] > 0
        ones = [link.send_chunk(np.full((1, 7), 0.5), rate_hz=500.0, timeout=30) for _ in range(200)]
        assert ones[-1].wait_finished(30) == "played"
        assert link.stats["nacks"] == 0, dict(link.stats)  # 0 NACKs per chunk on a clean link
        queued = [int(kv["chunk"]) for _, e, kv in sim.events() if e == "queued"]
        assert queued == [t.chunk_id for t in tickets + ones]
        assert [t.wait_finished(10) for t in tickets + ones] == ["played"] * 224
    finally:
        link.close()


# ---- chunk fates (item 4) ---------------------------------------------------------------------------------------
def test_hold_reports_every_dropped_chunk(loop_fw):
    name, fw = loop_fw
    link = ArmLink(open_transport(f"loop:{name}"))
    try:
        short = link.send_chunk(ramp(5), rate_hz=100.0)
        assert short.wait_finished(5) == "played" and short.rows_played == 5
        slow = [link.send_chunk(ramp(100, to=1.0), rate_hz=20.0) for _ in range(3)]  # 15 s of motion
        link.wait_state(lambda s: s.playing == slow[0].chunk_id and s.index >= 3, 5.0)
        link.hold()
        assert [t.wait_finished(2) for t in slow] == ["dropped"] * 3
        assert [t.fate for t in slow] == ["hold"] * 3
        assert slow[0].rows_played >= 3 and slow[1].rows_played == 0
        assert not link.tickets_unfinished(), "nothing is reported queued that the firmware no longer holds"
        nxt = link.send_chunk(ramp(5), rate_hz=100.0)
        assert nxt.wait_finished(5) == "played"
    finally:
        link.close()


def test_chunk_interrupted_by_hold_is_reported_dropped_not_bad(sim):
    t = FaultySerial(SerialTransport(sim.path), FaultRates(), seed=2)
    t.url = sim.port
    link = ArmLink(t, LinkConfig(ack_timeout=0.08))
    try:
        big = np.zeros((300, 7))
        big[:, 6] = 0.5
        t.rates = FaultRates(drop=1.0)  # nothing the host sends arrives...
        tk = link.send_chunk(big, chunk_id=40, encoding="float32", wait=False)  # 3 messages
        time.sleep(0.05)
        with link._lock:
            first = link._inflight[0][1]
        t.inner.write_raw(t.inner.frame(first))  # ...but the first message: the chunk is half received
        assert link.wait_state(lambda s: s.free < 512, 5.0)
        t.rates = FaultRates()
        link.hold()
        with pytest.raises(LinkError, match="hold") as e:
            tk.wait(5)
        assert "bad chunk" not in str(e.value)
        assert tk.status == "dropped" and tk.fate == "hold" and tk.rows_played == 0
        link.wait_idle(5)  # the rest of its messages are answered (NACK 8, "dropped"), not resent for ever
        assert link.send_chunk(ramp(5), rate_hz=100.0).wait_finished(5) == "played"
    finally:
        link.close()


# ---- one owning session (item 3) --------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [+100, -100])
def test_second_writer_hello_cannot_hijack_the_sequence(loop_fw, offset):
    """A HELLO from another writer, its sequence ahead of or behind the host's: refused, the host's chunks
    are applied and reported as they are (before: ACKed as duplicates and applied never, or a 1.6 s failure)."""
    name, fw = loop_fw
    link = ArmLink(open_transport(f"loop:{name}"))
    try:
        a = link.send_chunk(ramp(5), rate_hz=100.0)
        raw = open_transport(f"loop:{name}")  # the same wire: a second writer
        raw.send(P.hello((link._seq + offset) & 0xFFFF, 0x0BADCAFE))
        raw.send(P.seal(bytes([P.CHUNK_BEGIN]) + struct.pack("<HIHfBBI", 900, 0, 1, 50.0, 0, 2, 0) + bytes(28),
                        (link._seq + offset) & 0xFFFF, 0x0BADCAFE))
        time.sleep(0.1)
        rest = [link.send_chunk(ramp(5, j=k), rate_hz=100.0) for k in range(3)]
        assert [t.wait_finished(5) for t in [a] + rest] == ["played"] * 4
        queued = [int(kv["chunk"]) for _, e, kv in fw.events() if e == "queued"]
        assert queued == [t.chunk_id for t in [a] + rest], "900 never queued, ours all once"
        assert any(e == "refused" for _, e, _ in fw.events())
        assert link.stats["rx_foreign"] >= 2, "the NACKs addressed to the other writer are not taken for ours"
    finally:
        link.close()


def test_second_host_on_a_shared_can_bus_is_refused(fw_sim_exe):
    import can

    from wallwm_edge.bridge.can_transport import CanTransport

    chan = f"v2own{next(_names)}"
    fw = InProcessFirmware(can_bus=can.Bus(interface="virtual", channel=chan), **CALM)
    a = ArmLink(CanTransport("virtual", chan))
    b = None
    try:
        b = ArmLink(CanTransport("virtual", chan), LinkConfig(handshake_timeout=1.0), connect=False)
        with pytest.raises(LinkError, match="owned by another host session"):
            b.wait_connected(1.0)
        tickets = [a.send_chunk(ramp(10, j=k), rate_hz=100.0) for k in range(3)]
        assert [t.wait_finished(5) for t in tickets] == ["played"] * 3
        assert a.stats["nacks"] == 0
        a.close()  # the owner leaves: the other host gets the link once it has been quiet for the hold time
        assert b.wait_connected(5.0).n_joints == 6
        assert b.send_chunk(ramp(5), rate_hz=100.0).wait_finished(5) == "played"
    finally:
        a.close()
        if b is not None:
            b.close()
        fw.stop()
        fw.bus.shutdown()


# ---- the velocity limit across space switches, seen from the host (item 1) -----------------------------------
def test_velocity_limit_holds_across_space_switches_seen_from_the_host(loop_fw):
    """7 joints: joint space column 6 is joint 7, the end-effector column 6 the gripper. Before the fix the
    gripper command fell from joint 7's 2.5 rad to 1.0 in one tick on the switch."""
    name, _ = loop_fw
    name7 = name + "-7"
    fw = InProcessFirmware(loop=name7, joints=7, **CALM)
    link = ArmLink(open_transport(f"loop:{name7}"))
    seen: list[P.State] = []
    try:
        arm = link.arm
        lims = {0: arm.limits("joint"), 1: arm.limits("ee")}
        j = np.zeros((10, 8))
        j[:, 6], j[:, 7] = 2.5, 0.2
        e = np.zeros((10, 7))
        e[:, 0], e[:, 6] = 0.5, 0.9
        plan = [(j, "joint", "after"), (e, "ee", "after"), (j * 0.5, "joint", "replace"), (e * 0.5, "ee", "after")]
        for pts, space, start in plan:
            t = link.send_chunk(pts, space=space, start=start, rate_hz=100.0)
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                s = link.state()
                if s is not None and (not seen or s.seq != seen[-1].seq):
                    seen.append(s)
                time.sleep(0.002)
            assert t.wait_finished(5) == "played"
        assert {s.space for s in seen} == {0, 1}
        # the in-process firmware runs up to 200 ms of ticks at once after its thread stalls (a loaded machine):
        # STATE.time_ms then undercounts the ticks between two STATEs by as much; the jump this catches was 1.5
        slack = 0.2 + 2.0 / arm.control_rate_hz
        last = {}  # space -> (time_ms, pos) of the last STATE in that space
        grip = None
        worst = 0.0
        for s in seen:
            d = s.pos.shape[0]
            g = s.pos[d - 1]
            if s.space in last:
                t0, p0 = last[s.space]
                dt = (s.time_ms - t0) / 1000.0 + slack
                worst = max(worst, float(np.max(np.abs(s.pos[:d - 1] - p0[:d - 1]) / (lims[s.space][:d - 1, 2] * dt))))
            if grip is not None:
                dt = (s.time_ms - grip[0]) / 1000.0 + slack
                worst = max(worst, abs(g - grip[1]) / (lims[s.space][d - 1, 2] * dt))
            lo, hi = lims[s.space][:, 0], lims[s.space][:, 1]
            assert np.all(s.pos >= lo - 1e-6) and np.all(s.pos <= hi + 1e-6)
            last[s.space] = (s.time_ms, s.pos.copy())
            grip = (s.time_ms, g)
        assert worst <= 1.0, f"a command moved {worst:.1f}x faster than vmax allows"
    finally:
        link.close()
        fw.stop()
