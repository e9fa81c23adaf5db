"""A torch-free client of `wallwm-edge serve` (and of openpi's `serve_policy`): numpy in, numpy out.

    with PolicyClient("ws://gpu-box:8000") as client:
        client.metadata              # the server's first message: observation spec, model config, provenance
        out = client.infer(obs)      # {"actions" (L, A), "end_prob" (L,), "length", "done", "server_timing"}

Every wait is bounded: connecting (`connect_timeout_s`) and each answer (`timeout_s`). A dropped
connection or a timeout is retried (`retries` times, with backoff, on a fresh connection: requests are
idempotent, the noise travels with a labelling request); the last failure is one ServeError naming the
URL and why. A text frame from the server is its refusal of this request and is not retried (the same
input would be refused again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from wallwm_edge.serve import msgpack_numpy
from wallwm_edge.serve.spec import ServeError, check_spec


@dataclass(frozen=True)
class ClientConfig:
    timeout_s: float = 60.0  # one answer: a big teacher labelling a batch on a busy GPU box is slow, a hang is not
    connect_timeout_s: float = 10.0
    retries: int = 2  # extra attempts after the first (connect and each request)
    backoff_s: float = 0.5  # doubled after each failed attempt


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ServeError(f"{url!r} is not a policy server address; expected ws://HOST:PORT")
    try:
        parts.port
    except ValueError:
        raise ServeError(f"{url!r}: the port is not a number in 0-65535; expected ws://HOST:PORT") from None
    return url


def health_url(url: str) -> str:
    p = urlsplit(check_url(url))
    return f"{'https' if p.scheme == 'wss' else 'http'}://{p.netloc}/healthz"


def health(url: str, timeout_s: float = 5.0) -> bool:
    """Whether the server at `url` answers its HTTP health check (GET /healthz -> 200)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(health_url(url), timeout=timeout_s) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class PolicyClient:
    def __init__(self, url: str, cfg: ClientConfig = ClientConfig()):
        self.url = check_url(url)
        self.cfg = cfg
        self._ws = None
        self.metadata: dict = self._connect()

    # ------------------------------------------------------------------ connection
    def _connect_once(self) -> dict:
        from websockets.sync.client import connect

        ws = connect(self.url, open_timeout=self.cfg.connect_timeout_s, close_timeout=1.0, compression=None, max_size=None)
        ws.__enter__()  # the connection outlives this call (closed by close()); entering it is websockets' >= 17.1 way to say so
        try:
            first = ws.recv(timeout=self.cfg.connect_timeout_s)  # the metadata comes first, before any request
        except BaseException:
            ws.close()
            raise
        if isinstance(first, str):
            ws.close()
            raise ServeError(f"{self.url}: the server sent text instead of its metadata: {first[:200]}")
        self._ws = ws
        return msgpack_numpy.unpackb(first)

    def _connect(self) -> dict:
        return self._with_retries("connect", self._connect_once)

    def _with_retries(self, what: str, fn):
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

        last = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            try:
                return fn()
            except TimeoutError:
                last = f"no answer within {self.cfg.timeout_s if what != 'connect' else self.cfg.connect_timeout_s:g} s"
            except ConnectionRefusedError:
                last = "connection refused: is `wallwm-edge serve` running there?"
            except (ConnectionClosed, InvalidHandshake, InvalidURI, OSError, EOFError) as e:
                last = f"{type(e).__name__}: {e}"
            self.close()
        tries = self.cfg.retries + 1
        raise ServeError(f"{self.url}: {what} failed after {tries} tr{'y' if tries == 1 else 'ies'} ({last})")

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # closing a broken socket: nothing left to do
                pass
            self._ws = None

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def _request(self, msg: dict) -> dict:
        data = msgpack_numpy.packb(msg)
        sha = self.metadata.get("checkpoint", {}).get("sha256")

        def once():
            if self._ws is None:  # reconnect after a failure: it must still be the same model
                meta = self._connect_once()
                if meta.get("checkpoint", {}).get("sha256") != sha:
                    raise ServeError(f"{self.url}: the server now serves a different checkpoint than at connect")
            self._ws.send(data)
            return self._ws.recv(timeout=self.cfg.timeout_s)

        reply = self._with_retries(f"request {msg.get('request', 'act')!r}", once)
        if isinstance(reply, str):
            raise ServeError(f"{self.url}: the server refused the request: {reply.strip()}")
        return msgpack_numpy.unpackb(reply)

    def infer(self, obs: dict) -> dict:
        """One observation (openpi's `infer`): "images" (V, H, W, 3) uint8, "proprio" (P,), "instruction"
        (text or (384,) embedding), optional "cam_poses" (V, 4, 4) and "seed" (the noise: same seed, same chunk)."""
        return self._request(obs)

    def label(self, batch: dict) -> dict:
        """Teacher trajectories for a batch (distillation): images (B, V, H, W, 3) uint8, proprio (B, P),
        instruction (B, 384), view_mask (B, Vn, Vn) bool, noise_video, noise_action, K, S ->
        {"traj_video" (B, S+1, ...), "traj_action" (B, S+1, L, A), "end_logit" (B, L)}."""
        return self._request({"request": "label", **batch})

    def shared_state(self) -> dict:
        """The buffers a student shares with this teacher: autoencoder and normalizers (small arrays)."""
        return self._request({"request": "shared_state"})

    def check(self, **expected) -> None:
        """ServeError naming the URL unless the served spec equals `expected` (views, image_size, action_dim, ...)."""
        check_spec(self.metadata, self.url, **expected)
