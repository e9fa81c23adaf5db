"""Property tests (hypothesis) of the host's decoder, deframer and point encoding: whatever arrives, the
decoder answers a message or one LinkError, never another exception; what the firmware would send decodes
to what it meant; garbage never costs a frame; int16 points decode inside the limits."""

import struct

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install -e .[dev])")
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import bridge_golden as G  # noqa: E402
from wallwm_edge.bridge import protocol as P  # noqa: E402
from wallwm_edge.bridge.framing import SerialDeframer, serial_frame  # noqa: E402
from wallwm_edge.errors import LinkError  # noqa: E402

FAST = settings(max_examples=100, deadline=None)
u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 0xFF)


@FAST
@given(st.sampled_from(list(P.MsgType) + [0x00, 0x86, 0xFF]), u16, st.integers(0, 0xFFFFFFFF),
       st.binary(max_size=300))
def test_decoder_answers_a_message_or_one_link_error(t, seq, session, body):
    """Any body behind a correct CRC (what a firmware bug, not line noise, could send)."""
    msg = P.pack(t, seq, body, session)
    try:
        m = P.decode(msg)
    except LinkError:
        return
    assert m.session == session and getattr(m, "seq", seq) == seq


@FAST
@given(st.binary(max_size=200))
def test_decoder_refuses_noise(raw):
    assume(not _crc_ok(raw))  # random bytes with a correct CRC: 1 in 2^32
    with pytest.raises(LinkError):
        P.decode(raw)


def _crc_ok(raw: bytes) -> bool:
    try:
        P.unpack_session(raw)
        return True
    except LinkError:
        return False


@FAST
@given(u16, u16, u16, u16, u16, u16, u8, st.integers(1, 0xFFFFFFFF))
def test_ack_round_trip(seq, acked, chunk, rows, level, free, slots, session):
    m = P.decode(G.ack(seq, acked, chunk, rows, level, free, slots, session))
    assert (m.seq, m.acked, m.chunk_id, m.rows, m.level, m.free, m.free_chunks, m.session) == (
        seq, acked, chunk, rows, level, free, slots, session)


@FAST
@given(u16, u16, st.lists(st.tuples(u16, st.sampled_from(list(P.Fate)), u16), max_size=P.FATES))
def test_fate_round_trip(seq, first, entries):
    m = P.decode(G.fates(seq, first, entries))
    assert [(e.chunk_id, e.fate, e.rows) for e in m.entries] == entries
    assert [e.index for e in m.entries] == [(first + i) & 0xFFFF for i in range(len(entries))]


@FAST
@given(st.integers(1, 8), st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=16,
                                   max_size=16), u8, u8)
def test_state_round_trip(d, vals, mode, space):
    pos, vel = vals[:d], vals[8:8 + d]
    m = P.decode(G.state(3, 10, 1, mode, 0x1C0, 7, 505, 14, 5, 2, 4, 106, 1, 9, pos, vel, space=space))
    assert m.pos.shape == (d,) and m.space == space and m.mode == mode and m.fate_next == 9
    np.testing.assert_array_equal(m.pos, np.asarray(pos, np.float32))


@FAST
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=40).map(lambda b: bytes(x or 1 for x in b)),
                          st.binary(max_size=120)), min_size=1, max_size=12))
def test_garbage_before_a_frame_never_costs_it(items):
    """Line noise (no 0x00 in it) right before each frame: every frame still arrives (the leading 0x00)."""
    msgs = [P.pack(P.HEARTBEAT, i, body, 7) for i, (_, body) in enumerate(items)]
    stream = b"".join(noise + serial_frame(m) for (noise, _), m in zip(items, msgs))
    got = [m for m in SerialDeframer().feed(stream) if _crc_ok(m)]
    assert got == msgs


@FAST
@given(st.lists(st.floats(-2.9, 2.9), min_size=7, max_size=7), st.floats(0.0, 1.0))
def test_int16_points_decode_inside_the_limits(joints, grip):
    arm = G.default_arm()
    p = np.array([joints[:6] + [grip]])
    _, dec = P.encode_points(p, P.Encoding.INT16, arm.limits("joint"))
    lim = arm.limits("joint")
    assert np.all(dec >= lim[:, 0]) and np.all(dec <= lim[:, 1])
    step = (lim[:, 1] - lim[:, 0]) / 65534
    assert np.all(np.abs(dec - p) <= step / 2 + 1e-6)


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_rate_outside_the_bounds_never_leaves_the_host(rate):
    arm = G.default_arm()
    ok = 1.0 <= rate <= arm.control_rate_hz
    try:
        enc = P.encode_chunk(np.zeros((2, 7)), arm, 1, 0, rate)
    except P.ChunkError:
        assert not ok
        return
    assert ok and struct.unpack_from("<f", enc.messages[0], 1 + 8)[0] >= 1.0
