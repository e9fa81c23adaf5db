"""`wallwm-edge serve CHECKPOINT`: a teacher (or a student) behind a WebSocket for remote distillation and robots."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  wallwm-edge serve runs/teacher --port 8000                      on the GPU box (loopback only)
  wallwm-edge serve runs/teacher --host 0.0.0.0 --port 8000       reachable from other machines
  wallwm-edge distill --teacher ws://gpu-box:8000 --data data/mw --out runs/student    elsewhere

protocol: openpi's (openpi-client's WebsocketClientPolicy works): msgpack metadata first, then observation
dict -> {"actions", "end_prob", "length", "done", "chunk", "server_timing"}; GET /healthz -> OK.
The Python client is wallwm_edge.serve.client.PolicyClient (torch-free).
"""


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint over WebSocket + msgpack (openpi-compatible) with dynamic batching",
                       description="Serve a checkpoint over WebSocket + msgpack, openpi's protocol, batching concurrent "
                                   "requests into one forward.\n\n" + EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="run folder or model.safetensors (teacher or student)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one, printed on the first line)")
    p.add_argument("--max-batch", type=int, default=16, help="samples stacked into one forward at most (default 16)")
    p.add_argument("--batch-window-ms", type=float, default=5.0, help="how long a request waits for others to batch with (default 5)")
    p.add_argument("--steps", type=int, default=None, help="flow steps for act requests (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise stream for act requests without their own 'seed'")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.set_defaults(func=run_serve)


def run_serve(args) -> int:
    import asyncio
    import signal
    import sys

    from wallwm_edge.errors import ConfigError

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a port number (0-65535; 0 picks a free one)")
    if args.max_batch < 1:
        raise ConfigError(f"--max-batch must be at least 1, got {args.max_batch}")
    if not 0 <= args.batch_window_ms <= 10_000:
        raise ConfigError(f"--batch-window-ms must be within 0-10000, got {args.batch_window_ms:g}")
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {args.steps}")

    import torch

    from wallwm_edge.serve.backend import Backend
    from wallwm_edge.serve.server import PolicyServer, ServerConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = Backend(args.checkpoint, steps=args.steps, seed=args.seed)
    server = PolicyServer(backend, ServerConfig(args.host, args.port, args.max_batch, args.batch_window_ms))

    def ready(port: int) -> None:
        m = server.metadata
        print(f"serving {backend.path} ({m['checkpoint']['preset']}, {m['checkpoint']['params']:,} params, {m['mode']} mode, "
              f"views {m['views']}, {m['image_size'][0]}x{m['image_size'][1]}) on ws://{args.host}:{port}  "
              f"health: http://{args.host}:{port}/healthz", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.serve(ready, stop)

    try:
        asyncio.run(main())
    except OSError as e:  # the address is taken or not ours
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    s = server.stats
    print(f"stopped: {s['requests']} requests in {s['batches']} batches ({s['samples']} samples)", file=sys.stderr)
    return 0
