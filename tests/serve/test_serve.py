"""`wallwm-edge serve` as a real subprocess on loopback: metadata first, openpi's wire format, the same
chunks as the local Policy, batching of concurrent clients, /healthz, refusals in one line, bounded
failure when no server is there."""

import socket
import threading
import time
import urllib.request

import numpy as np
import pytest

from wallwm_edge.model.policy import Policy
from wallwm_edge.serve import msgpack_numpy
from wallwm_edge.serve.client import ClientConfig, PolicyClient, health
from wallwm_edge.serve.spec import PROTOCOL, ServeError

from serve_helpers import free_port


def observation(seed: int, views: int = 3, size=(32, 32)) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": rng.integers(0, 256, (views, *size, 3), dtype=np.uint8), "proprio": rng.normal(size=4).astype(np.float32),
            "instruction": rng.normal(size=384).astype(np.float32)}


def test_metadata_comes_first_in_openpis_wire_format(server):
    """A bare websockets client (what openpi-client does): the first frame is msgpack metadata, then obs -> actions."""
    from websockets.sync.client import connect

    with connect(server.url, open_timeout=10, compression=None, max_size=None) as ws:
        meta = msgpack_numpy.unpackb(ws.recv(timeout=10))  # before sending anything
        assert meta["protocol"] == PROTOCOL and meta["views"] == ["corner", "top", "gripper"] and meta["image_size"] == [32, 32]
        assert (meta["action_dim"], meta["horizon"], meta["mode"], meta["flow_steps"]) == (4, 8, "event", 4)
        ws.send(msgpack_numpy.packb(observation(0)))
        out = msgpack_numpy.unpackb(ws.recv(timeout=30))
    assert out["actions"].shape == (8, 4) and out["actions"].dtype == np.float32 and np.isfinite(out["actions"]).all()
    assert out["end_prob"].shape == (8,) and out["server_timing"]["infer_ms"] > 0
    assert out["chunk"].shape == (out["length"], 4)


def test_array_codec_matches_openpis_layout():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = msgpack_numpy.msgpack.unpackb(msgpack_numpy.packb({"x": a}))
    assert raw["x"][b"__ndarray__"] is True and raw["x"][b"dtype"] == "<f4" and raw["x"][b"shape"] == [2, 3]
    back = msgpack_numpy.unpackb(msgpack_numpy.packb({"x": a, "s": np.float32(2.5)}))
    np.testing.assert_array_equal(back["x"], a)
    assert back["s"] == np.float32(2.5) and back["x"].flags.writeable
    with pytest.raises(ValueError, match="object"):
        msgpack_numpy.packb({"x": np.array([None, 1], dtype=object)})


def test_round_trip_equals_the_local_policy_for_the_same_seed(server, served_teacher_ckpt):
    with PolicyClient(server.url) as client:
        got = client.infer(observation(1) | {"seed": 7})
        again = client.infer(observation(1) | {"seed": 7})
        other = client.infer(observation(1) | {"seed": 8})
    want = Policy.from_checkpoint(served_teacher_ckpt, seed=7).act(observation(1))
    np.testing.assert_allclose(got["actions"], want["actions"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["end_prob"], want["end_prob"], rtol=1e-5, atol=1e-5)
    assert (got["length"], got["done"]) == (want["length"], want["done"])
    np.testing.assert_array_equal(got["actions"], again["actions"])  # deterministic per seed
    assert not np.allclose(got["actions"], other["actions"])  # and the seed is the noise


def test_concurrent_clients_are_batched_and_each_gets_its_own_chunk(server, served_teacher_ckpt):
    n, rounds = 4, 2
    results: dict = {}
    errors: list = []
    barrier = threading.Barrier(n)

    def worker(i):
        try:
            with PolicyClient(server.url) as client:
                for r in range(rounds):
                    barrier.wait(timeout=60)
                    results[(i, r)] = client.infer(observation(10 + i) | {"seed": 100 + i})
        except Exception as e:  # reported below, with the others
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert max(r["server_timing"]["batch_requests"] for r in results.values()) > 1, [r["server_timing"] for r in results.values()]
    for i in range(n):  # a batched request got its own observation's chunk, not a neighbour's
        want = Policy.from_checkpoint(served_teacher_ckpt, seed=100 + i).act(observation(10 + i))
        np.testing.assert_allclose(results[(i, 0)]["actions"], want["actions"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(results[(i, 1)]["actions"], want["actions"], rtol=1e-4, atol=1e-5)


def test_health_endpoint(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as r:
        assert r.status == 200 and r.read() == b"OK\n"
    assert health(server.url)
    assert not health(f"ws://127.0.0.1:{free_port()}", timeout_s=2)


def test_bad_request_is_one_line_and_the_connection_lives_on(server):
    with PolicyClient(server.url) as client:
        with pytest.raises(ServeError, match=r"127\.0\.0\.1.*refused.*3 views.*2 views"):
            client.infer(observation(2, views=2))
        with pytest.raises(ServeError, match="lacks"):
            client.infer({"images": observation(2)["images"]})
        with pytest.raises(ServeError, match="unknown request"):
            client._request({"request": "train"})
        with pytest.raises(ServeError, match="K=3 must be a multiple of student steps S=2"):
            client.label({"images": np.zeros((1, 3, 32, 32, 3), np.uint8), "proprio": np.zeros((1, 4), np.float32),
                          "instruction": np.zeros((1, 384), np.float32), "view_mask": np.ones((1, 12, 12), bool),
                          "noise_video": np.zeros((1, 12, 8), np.float32), "noise_action": np.zeros((1, 8, 4), np.float32), "K": 3, "S": 2})
        assert client.infer(observation(3))["actions"].shape == (8, 4)  # same connection, still served


def test_spec_mismatch_is_refused_naming_the_url(server):
    with PolicyClient(server.url) as client:
        client.check(views=["corner", "top", "gripper"], image_size=(32, 32), action_dim=4)
        with pytest.raises(ServeError, match=rf"{server.url}: the served model expects image_size \[32, 32\], this run has \[64, 64\]"):
            client.check(views=["corner", "top", "gripper"], image_size=(64, 64))
        with pytest.raises(ServeError, match="action_dim 4, this run has 7"):
            client.check(action_dim=7)


def test_no_server_fails_in_bounded_time_naming_the_url():
    url = f"ws://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ServeError, match=rf"{url}: connect failed after 2 tries \(connection refused"):
        PolicyClient(url, ClientConfig(connect_timeout_s=2, retries=1, backoff_s=0.1))
    assert time.monotonic() - t0 < 15
    with pytest.raises(ServeError, match="not a policy server address"):
        PolicyClient("http://127.0.0.1:1")


def test_a_silent_server_times_out_instead_of_hanging():
    """Something listens but never speaks: the client gives up after its timeout, with the URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        url = f"ws://127.0.0.1:{s.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.raises(ServeError, match=rf"{url}: connect failed after 1 try"):
            PolicyClient(url, ClientConfig(connect_timeout_s=1, retries=0))
        assert time.monotonic() - t0 < 15
