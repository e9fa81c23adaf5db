"""Serving a policy over the network: `wallwm-edge serve CHECKPOINT` and a torch-free client.

The wire protocol is openpi's (`serve_policy` / `openpi-client`), so either side can talk to the other:
WebSocket binary frames of msgpack with numpy arrays packed as {"__ndarray__": True, "data", "dtype",
"shape"}; on connect the server sends its metadata dict first; then each client message is an
observation dict and each reply a dict with "actions" (we add "end_prob", "length", "done" and
"server_timing"); an error is a text frame. HTTP GET /healthz answers "OK".

    msgpack_numpy.py   the array codec (openpi's layout)
    spec.py            the metadata the server sends first and the one-line refusal of a mismatch (torch-free)
    client.py          PolicyClient: connect with timeout and retries, infer(obs), label(batch) (torch-free)
    backend.py         the model side: batched act and batched teacher trajectories (torch)
    server.py          PolicyServer: asyncio WebSocket server with dynamic batching and /healthz
    process.py         ServerProcess: `wallwm-edge serve` as a child process on a free port (scripts, tests)
    cli.py             `wallwm-edge serve`
"""
