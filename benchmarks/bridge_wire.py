"""Bridge wire efficiency, host encode/decode time and CRC error detection.

1. A 50x7 int16 chunk (6 joints + gripper): chunk payload bytes over bytes carried, and the time to send
   it, on UART 1 Mbaud 8N1, classic CAN 1 Mbit/s (11-bit identifiers, 8-byte frames) and CAN-FD 1/5 Mbit/s
   (64-byte frames), each against that link's physical limit (UART 100 kB/s; CAN frames at their bit
   efficiency, no stuff bits counted on either side). ISO-TP's data-field use is given for comparison.
2. Host encode (validate + quantize + CRC + COBS) and decode (deframe + CRC + unpack) time per chunk,
   against numpy's tobytes of the same points (the floor) measured in the same run.
3. CRC: random corruptions (bit flips, bursts, byte garbage, truncation, splices) of random protocol
   messages; CRC-32C must catch every one; CRC-16/CCITT on the same corruptions is the baseline.

    python benchmarks/bridge_wire.py [--quick]
"""

from __future__ import annotations

import binascii
import random
import sys
import time
from pathlib import Path

import numpy as np
from crc32c import crc32c

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "bridge"))
from wallwm_edge.bench import write_result  # noqa: E402
from wallwm_edge.bridge import protocol as P  # noqa: E402
from wallwm_edge.bridge.framing import SerialDeframer, can_segments, fd_length, serial_frame  # noqa: E402


def default_arm():
    import bridge_golden

    return bridge_golden.default_arm()


def classic_bits(n):  # SOF, 11-bit id, RTR, IDE, r0, DLC, data, CRC15, delimiters, ACK, EOF, IFS
    return 47 + 8 * n


def fd_time(n, nominal=1e6, data=5e6):
    crc = 17 if n <= 16 else 21
    data_bits = 1 + 4 + 8 * n + 4 + crc + (crc + 3) // 4  # ESI, DLC, data, stuff count, CRC, fixed stuff bits
    return 30 / nominal + data_bits / data  # arbitration, CRC delimiter, ACK, EOF, IFS at the nominal rate


def isotp_measured(msgs, payload) -> dict:
    """The same messages through can-isotp on python-can's virtual bus: frames and data bytes it sends."""
    try:
        import can
        import isotp
    except ImportError:
        return {"isotp": "can-isotp not installed (pip install can-isotp)"}
    out = {}
    for fd in (False, True):
        ch = f"isotp_bench_{int(fd)}"
        a, b, spy = (can.Bus(interface="virtual", channel=ch, fd=fd) for _ in range(3))
        params = {"tx_data_length": 64 if fd else 8, "can_fd": fd, "blocksize": 0, "stmin": 0, "tx_padding": 0}
        mk = lambda bus, tx, rx: isotp.CanStack(bus, address=isotp.Address(isotp.AddressingMode.Normal_11bits,  # noqa: E731
                                                                         txid=tx, rxid=rx), params=params)
        ta, tb = mk(a, 0x100, 0x140), mk(b, 0x140, 0x100)
        ta.start(), tb.start()
        ok = True
        for m in msgs:
            ta.send(m)
            ok &= tb.recv(block=True, timeout=5.0) == m
        ta.stop(), tb.stop()
        frames = []
        while (fr := spy.recv(0.0)) is not None:
            frames.append(fr)
        for bus in (a, b, spy):
            bus.shutdown()
        fwd = [fr for fr in frames if fr.arbitration_id == 0x100]
        key = "isotp_canfd" if fd else "isotp_can"
        out[f"{key}_frames"] = len(fwd)
        out[f"{key}_flow_control_frames"] = len(frames) - len(fwd)
        out[f"{key}_payload_over_data_field"] = payload / sum(len(fr.data) for fr in fwd) if ok else None
    return out


def wire(points, arm):
    enc = P.encode_chunk(points, arm, 1, 1, 50.0)
    msgs = [P.seal(b, 100 + i) for i, b in enumerate(enc.messages)]
    payload = points.shape[0] * points.shape[1] * 2
    f = {}
    uart = sum(len(serial_frame(m)) for m in msgs)
    f["uart_bytes_on_wire"] = uart
    f["uart_payload_over_wire"] = payload / uart
    f["uart_time_ms"] = uart * 10 / 1e6 * 1e3
    f["uart_fraction_of_physical_limit"] = (payload * 10 / 1e6) / (uart * 10 / 1e6)
    segs = [d for m in msgs for _, d in can_segments(m, 8)]
    field8 = sum(len(d) for d in segs)
    f["can_frames"] = len(segs)
    f["can_payload_over_data_field"] = payload / field8
    t_can = sum(classic_bits(len(d)) for d in segs) / 1e6
    f["can_time_ms"] = t_can * 1e3
    f["can_fraction_of_physical_limit"] = (payload * 8 / (64 / classic_bits(8)) / 1e6) / t_can
    f.update(isotp_measured(msgs, payload))
    fd = [fd_length(len(d)) for m in msgs for _, d in can_segments(m, 64)]
    f["canfd_frames"] = len(fd)
    f["canfd_payload_over_data_field"] = payload / sum(fd)
    t_fd = sum(fd_time(n) for n in fd)
    f["canfd_time_ms"] = t_fd * 1e3
    f["canfd_fraction_of_physical_limit"] = (payload / 64 * fd_time(64)) / t_fd
    f["canfd_64B_frame_bit_efficiency"] = (64 * 8 / 5e6) / fd_time(64)
    f["can_8B_frame_bit_efficiency"] = 64 / classic_bits(8)
    return f


def timing(points, arm, reps):
    def enc_once():
        e = P.encode_chunk(points, arm, 1, 1, 50.0)
        return b"".join(serial_frame(P.seal(b, i)) for i, b in enumerate(e.messages))

    frames = enc_once()

    def dec_once():
        return [P.unpack(m) for m in SerialDeframer().feed(frames)]

    def base_once():
        return points.astype("<i2").tobytes()

    out = {}
    for name, fn in (("encode", enc_once), ("decode", dec_once), ("tobytes_baseline", base_once)):
        fn()
        t = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
        out[f"{name}_us_per_chunk"] = float(np.median(t) * 1e6)
    out["encode_over_tobytes"] = out["encode_us_per_chunk"] / out["tobytes_baseline_us_per_chunk"]
    out["decode_over_tobytes"] = out["decode_us_per_chunk"] / out["tobytes_baseline_us_per_chunk"]
    return out


def corrupt(rng: random.Random, m: bytearray, pool: list[bytes]) -> bytearray:
    kind = rng.randrange(6)
    if kind == 0:  # 1-3 bit flips
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(m) * 8)
            m[i // 8] ^= 1 << (i % 8)
    elif kind == 1:  # a burst of up to 64 bits
        n = rng.randint(2, 64)
        start = rng.randrange(max(1, len(m) * 8 - n))
        for i in range(start, min(start + n, len(m) * 8)):
            if rng.random() < 0.5 or i in (start, start + n - 1):
                m[i // 8] ^= 1 << (i % 8)
    elif kind == 2:  # garbage bytes overwrite a stretch (noise, a framing error mid-byte)
        i = rng.randrange(len(m))
        for k in range(i, min(len(m), i + rng.randint(1, 16))):
            m[k] = rng.randrange(256)
    elif kind == 3:  # truncation: a lost tail (the last 4 bytes then look like a CRC)
        m = m[: rng.randint(1, max(1, len(m) - 1))]
    elif kind == 4:  # splice: the head of this message with the tail of another (a lost delimiter)
        other = rng.choice(pool)
        m = m[: rng.randint(1, len(m) - 1)] + bytearray(other[rng.randint(1, len(other) - 1):])
    else:  # inserted or deleted bytes
        i = rng.randrange(len(m))
        if rng.random() < 0.5:
            m[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        else:
            del m[i:i + rng.randint(1, 4)]
    return m


def crc_trial(n_frames: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    arm = default_arm()
    nprng = np.random.default_rng(seed)
    pool = []
    for k in range(64):  # realistic messages: chunks of every encoding and size, control, replies
        L = int(nprng.integers(1, 60))
        pts = nprng.uniform(-1, 1, (L, 7))
        pts[:, 6] = nprng.uniform(0, 1, L)
        e = P.encode_chunk(pts, arm, k, k, 50.0, encoding=("int16", "float16", "float32")[k % 3])
        pool += [P.seal(b, k) for b in e.messages]
        pool.append(P.control(P.HEARTBEAT, k))
    checked = missed32 = missed16 = legit = 0
    valid = set(pool)
    while checked < n_frames:  # count only frames that really differ from a genuine message
        good = rng.choice(pool)
        bad = bytes(corrupt(rng, bytearray(good), pool))
        if bad == good or len(bad) < 7:
            continue
        if bad in valid:  # a splice that rebuilt another whole, genuine message: nothing to detect
            legit += 1
            continue
        checked += 1
        body, tail = bad[:-4], bad[-4:]
        if crc32c(body) == int.from_bytes(tail, "little"):
            missed32 += 1
        # baseline: the same frames protected by CRC-16/CCITT instead (2-byte trailer over the same body)
        g16 = binascii.crc_hqx(good[:-4], 0xFFFF).to_bytes(2, "little")
        bad16 = bytes(corrupt(random.Random(hash(bad) & 0xFFFFFFFF), bytearray(good[:-4] + g16), pool))
        if bad16 != good[:-4] + g16 and len(bad16) > 2 and binascii.crc_hqx(bad16[:-2], 0xFFFF) == int.from_bytes(bad16[-2:], "little"):
            missed16 += 1
    return {"crc_frames_corrupted": checked, "crc32c_undetected": missed32, "crc16_ccitt_undetected": missed16,
            "crc_splices_equal_to_a_genuine_message_skipped": legit}


def main(argv) -> int:
    quick = "--quick" in argv
    arm = default_arm()
    rng = np.random.default_rng(0)
    pts = rng.uniform(-2.0, 2.0, (50, 7))
    pts[:, 6] = rng.uniform(0, 1, 50)
    figures = wire(pts, arm)
    figures.update(timing(pts, arm, 300 if quick else 3000))
    t0 = time.perf_counter()
    figures.update(crc_trial(50_000 if quick else 1_000_000))
    figures["crc_trial_seconds"] = time.perf_counter() - t0
    goals = {"uart_fraction_of_physical_limit": ">= 0.90", "can_payload_over_data_field": ">= 0.85",
             "canfd_payload_over_data_field": ">= 0.95", "crc32c_undetected": "== 0",
             "crc_frames_corrupted": ">= 1e6 (full run)"}
    met = {"uart_fraction_of_physical_limit": figures["uart_fraction_of_physical_limit"] >= 0.90,
           "can_payload_over_data_field": figures["can_payload_over_data_field"] >= 0.85,
           "canfd_payload_over_data_field": figures["canfd_payload_over_data_field"] >= 0.95,
           "crc32c_undetected": figures["crc32c_undetected"] == 0,
           "crc_frames_corrupted": figures["crc_frames_corrupted"] >= 1_000_000 or quick}
    write_result("bridge_wire", figures, goals, met)
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
