"""ArmLink against the real C firmware over every transport: loopback and python-can's virtual bus
(the firmware library in-process via ctypes), a real pty (the wallwm-fw-sim process), vcan where present."""

import itertools
import subprocess
import time

import numpy as np
import pytest

from wallwm_edge.bridge.firmware import InProcessFirmware, SimulatedFirmware
from wallwm_edge.bridge.link import ArmLink
from wallwm_edge.bridge.can_transport import CanTransport
from wallwm_edge.bridge.transport import open_transport
from wallwm_edge.errors import LinkError

_names = itertools.count()


def vcan_available() -> bool:
    try:
        return subprocess.run(["ip", "link", "show", "vcan0"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.fixture(params=["loop", "can-classic", "can-fd", "pty", "vcan"])
def arm(request, fw_sim_exe):
    """(link, events()) for each transport; the firmware on the other end is always the C code."""
    kind = request.param
    if kind == "vcan" and not vcan_available():
        pytest.skip("SocketCAN vcan0 not available (needs `ip link add dev vcan0 type vcan`, kernel module vcan)")
    if kind == "loop":
        name = f"t{next(_names)}"
        fw = InProcessFirmware(loop=name, hold_ms=1000, estop_ms=4000)
        link = ArmLink(open_transport(f"loop:{name}"))
        yield link, fw.events
        link.close(), fw.stop()
    elif kind.startswith("can-"):
        import can

        fd = kind == "can-fd"
        chan = f"bridge{next(_names)}"
        fw = InProcessFirmware(can_bus=can.Bus(interface="virtual", channel=chan, fd=fd), fd=fd, hold_ms=1000,
                               estop_ms=4000)
        link = ArmLink(CanTransport("virtual", chan, fd=fd))
        yield link, fw.events
        link.close(), fw.stop(), fw.bus.shutdown()
    elif kind == "pty":
        fw = SimulatedFirmware(exe=fw_sim_exe, hold_ms=1000, estop_ms=4000)
        link = ArmLink.open(fw.port)
        yield link, fw.events
        link.close(), fw.stop()
    else:
        sim = subprocess.Popen([str(fw_sim_exe), "--can", "vcan0", "--fd"], stdout=subprocess.PIPE, text=True)
        sim.stdout.readline()
        link = ArmLink.open("can:socketcan:vcan0?fd=1")
        yield link, lambda: []
        link.close(), sim.terminate(), sim.wait()


def ramp(L=50, j=0, to=0.3):
    p = np.zeros((L, 7))
    p[:, j] = np.linspace(0.0, to, L)
    p[:, 6] = 0.5
    return p


def queued(events):
    return [kv for _, e, kv in events() if e == "queued"]


def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_chunks_arrive_bit_exact_once_and_play(arm):
    link, events = arm
    assert link.arm.n_joints == 6 and link.arm.cols() == 7
    tickets = [link.send_chunk(ramp(50, j=k % 6), event_id=k, rate_hz=100.0,
                               encoding=["int16", "float16", "float32"][k % 3]) for k in range(4)]
    assert all(t.status == "queued" for t in tickets)
    st = link.wait_state(lambda s: s.last_done == tickets[-1].chunk_id and s.mode_name == "idle", 10.0)
    if events():  # vcan runs the simulator without a log
        q = queued(events)
        assert [int(kv["chunk"]) for kv in q] == [t.chunk_id for t in tickets], "each chunk queued exactly once"
        assert [kv["crc"] for kv in q] == [f"{t.crc:08x}" for t in tickets], "the firmware holds what was sent"
    assert abs(st.pos[3] - 0.3) < 0.02 and abs(st.pos[6] - 0.5) < 0.02  # the last chunk ramped joint 3


def test_hold_estop_reset(arm):
    link, events = arm
    link.send_chunk(ramp(100, to=1.0), rate_hz=20.0)  # 5 s of motion
    link.wait_state(lambda s: s.mode_name == "running", 5.0)
    st = link.hold()
    assert st.mode_name == "hold" and st.level == 0
    p = link.wait_state(lambda s: s.received_at > st.received_at + 0.1, 5.0).pos[0]
    time.sleep(0.2)
    assert abs(link.state().pos[0] - p) < 1e-3, "the arm holds"
    assert link.estop().mode_name == "estop"
    with pytest.raises(LinkError, match="e-stopped"):
        link.send_chunk(ramp(5), rate_hz=50.0)
    link.reset()
    link.send_chunk(ramp(5), rate_hz=50.0)


def test_invalid_chunk_never_leaves_the_host(arm):
    link, events = arm
    bad = ramp(10)
    bad[4, 5] = np.inf
    with pytest.raises(ValueError, match="row 4, column 5"):
        link.send_chunk(bad)
    assert link.stats["tx_messages"] == 0 or not any(e == "rejected" for _, e, _ in events())


@pytest.mark.parametrize("blend", ["append", "replace", "ensemble"])
def test_streamer_blending_at_chunk_boundaries(fw_sim_exe, blend):
    from wallwm_edge.bridge.streamer import ChunkStreamer

    fw = SimulatedFirmware(exe=fw_sim_exe, hold_ms=1000, estop_ms=4000)
    try:
        link = ArmLink.open(fw.port)
        s = ChunkStreamer(link, blend=blend, rate_hz=50.0)
        a = s.push(ramp(50, to=0.5))  # 1 s
        link.wait_state(lambda st: st.playing == a.chunk_id and st.index >= 10, 5.0)
        new = ramp(30, to=0.5)
        new[:, 0] = 0.5  # the new prediction: stay at 0.5
        b = s.push(new)
        st = link.wait_state(lambda st: st.last_done == b.chunk_id, 5.0)
        ev = [(e, kv.get("chunk")) for _, e, kv in fw.events() if e in ("preempted", "done", "dropped")]
        if blend == "append":
            assert ("done", str(a.chunk_id)) in ev and np.allclose(b.decoded[:, 0], 0.5, atol=1e-4)
        else:
            assert ("preempted", str(a.chunk_id)) in ev
        if blend == "ensemble":  # the first sent row is close to the old chunk's unplayed row, not to 0.5
            assert b.decoded[0, 0] < 0.45 and abs(b.decoded[-1, 0] - 0.5) < 1e-3
        if blend == "replace":
            assert np.allclose(b.decoded[:, 0], 0.5, atol=1e-4)
        assert abs(st.pos[0] - 0.5) < 0.02
        link.close()
    finally:
        fw.stop()
