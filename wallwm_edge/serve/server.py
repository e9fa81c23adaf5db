"""`PolicyServer`: a checkpoint behind a WebSocket, openpi's protocol, with dynamic batching.

    connect -> metadata (msgpack) -> [request (msgpack dict) -> reply (msgpack dict) | refusal (text)]*
    HTTP GET /healthz -> 200 "OK"

Dynamic batching: requests arriving within `batch_window_ms` of the first waiting one (or until
`max_batch` samples are waiting) are stacked into one forward, grouped by kind (act; label per (K, S)).
A lone client pays at most the window in extra latency; concurrent robots or a labelling client share
the accelerator's batch dimension. Every request is prepared (checked, text encoded, noise drawn) and
run on ONE worker thread: the model is not re-entrant, one batch saturates it, and the event loop stays
free to receive while it runs.

A refusal is one text line (openpi's client raises on a text frame) and the connection stays open: a
bad observation from one client never takes the server or the other clients down.
"""

from __future__ import annotations

import asyncio
import http
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from wallwm_edge.errors import WallwmError
from wallwm_edge.serve import msgpack_numpy
from wallwm_edge.validate import one_line


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback unless asked: the server executes whatever model it was given for anyone who connects
    port: int = 8000  # 0: any free port (the chosen one is printed)
    max_batch: int = 16  # samples per forward
    batch_window_ms: float = 5.0  # how long the first request waits for company


@dataclass
class _Item:
    key: tuple
    x: dict
    n: int
    future: asyncio.Future
    t_enqueued: float = field(default_factory=time.monotonic)


class PolicyServer:
    def __init__(self, backend, cfg: ServerConfig = ServerConfig()):
        self.backend, self.cfg = backend, cfg
        self.metadata = backend.metadata(cfg.max_batch)
        self._packed_meta = msgpack_numpy.packb(self.metadata)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="forward")
        self.stats = {"requests": 0, "batches": 0, "samples": 0}

    # ------------------------------------------------------------------ transport
    def _health(self, connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None  # anything else: the WebSocket handshake

    async def _handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        loop = asyncio.get_running_loop()
        await ws.send(self._packed_meta)  # metadata first, before the client asks anything (openpi)
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed:
                return
            t0 = time.monotonic()
            try:
                reply = await self._answer(loop, raw)
            except WallwmError as e:
                reply = one_line(str(e))
            except Exception as e:  # a bug: logged in full here, one line to the client, the server lives on
                traceback.print_exc(file=sys.stderr)
                reply = one_line(f"internal server error ({type(e).__name__}: {e})")
            if isinstance(reply, dict):
                reply.setdefault("server_timing", {})["total_ms"] = (time.monotonic() - t0) * 1000
                reply = msgpack_numpy.packb(reply)
            try:
                await ws.send(reply)
            except ConnectionClosed:
                return

    async def _answer(self, loop, raw) -> dict:
        from wallwm_edge.errors import ConfigError

        if isinstance(raw, str):
            raise ConfigError("requests are msgpack binary frames, not text")
        try:
            msg = msgpack_numpy.unpackb(raw)
        except Exception as e:  # msgpack raises several unrelated types on garbage
            raise ConfigError(f"request is not valid msgpack ({type(e).__name__}: {e})") from None
        if not isinstance(msg, dict):
            raise ConfigError(f"a request is a msgpack map (an observation dict), got {type(msg).__name__}")
        kind = msg.get("request", "act")
        if kind == "shared_state":
            return self.backend.shared_state()
        if kind not in ("act", "label"):
            raise ConfigError(f"unknown request {kind!r}; known: act (the default), label, shared_state")
        key, x, n = await loop.run_in_executor(self._executor, self._prepare, kind, msg)
        future = loop.create_future()
        await self._queue.put(_Item(key, x, n, future))
        self.stats["requests"] += 1
        return await future

    def _prepare(self, kind: str, msg: dict):
        if kind == "act":
            x = self.backend.prepare_act(msg)
            return ("act",), x, 1
        key, x = self.backend.prepare_label(msg)
        return ("label", *key), x, len(x["images"])

    def _forward(self, key: tuple, xs: list[dict]) -> list[dict]:
        return self.backend.act(xs) if key[0] == "act" else self.backend.label(key[1:], xs)

    # ------------------------------------------------------------------ batching
    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        window = self.cfg.batch_window_ms / 1000
        while True:
            pending = [await self._queue.get()]
            n, deadline = pending[0].n, loop.time() + window
            while n < self.cfg.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
                pending.append(item)
                n += item.n
            groups: dict[tuple, list[_Item]] = {}
            for it in pending:
                groups.setdefault(it.key, []).append(it)
            for key, items in groups.items():
                await self._run_group(loop, key, items)

    async def _run_group(self, loop, key: tuple, items: list[_Item]) -> None:
        t0 = time.monotonic()
        try:
            results = await loop.run_in_executor(self._executor, self._forward, key, [it.x for it in items])
        except Exception as e:  # the whole batch failed: every waiting request hears why
            for it in items:
                if not it.future.done():
                    it.future.set_exception(e)
            return
        infer_ms = (time.monotonic() - t0) * 1000
        samples = sum(it.n for it in items)
        self.stats["batches"] += 1
        self.stats["samples"] += samples
        for it, r in zip(items, results):
            r["server_timing"] = {"infer_ms": infer_ms, "queue_ms": (t0 - it.t_enqueued) * 1000, "batch_samples": samples,
                                  "batch_requests": len(items)}
            if not it.future.done():  # its client may have gone
                it.future.set_result(r)

    # ------------------------------------------------------------------ lifecycle
    async def serve(self, ready=None, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set (or SIGINT / SIGTERM when run by the CLI). `ready(port)` once listening."""
        from websockets.asyncio.server import serve

        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        stop = stop or asyncio.Event()
        async with serve(self._handler, self.cfg.host, self.cfg.port, compression=None, max_size=None,
                         process_request=self._health) as server:
            port = server.sockets[0].getsockname()[1] if server.sockets else self.cfg.port
            batcher = asyncio.create_task(self._batch_loop())
            if ready is not None:
                ready(port)
            try:
                await stop.wait()
            finally:
                batcher.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
