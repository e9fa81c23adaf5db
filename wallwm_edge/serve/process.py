"""`ServerProcess`: `wallwm-edge serve` as a child process, its URL read from its first line (torch-free).

For scripts, benchmarks and tests that need a real server on loopback: `--port 0` lets the OS pick a free
port (no race between choosing and binding it) and the server prints it once listening. Every wait is
bounded: a server that never comes up raises ServeError with its stderr, it does not hang the caller.

    with ServerProcess("runs/teacher", "--max-batch", "16") as server:
        client = PolicyClient(server.url)
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from wallwm_edge.serve.spec import ServeError


class ServerProcess:
    def __init__(self, checkpoint, *extra: str, threads: int = 1, start_timeout_s: float = 120.0):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "wallwm_edge", "serve", str(checkpoint), "--port", "0", "--threads", str(threads), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(start_timeout_s)
        if not line or " on ws://" not in line[0]:
            err = self.stop()
            raise ServeError(f"`wallwm-edge serve {checkpoint}` did not start within {start_timeout_s:g} s: "
                             f"{(err.strip().splitlines() or ['no output'])[-1]}")
        self.banner = line[0]
        self.url = line[0].split(" on ", 1)[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self, timeout_s: float = 20.0) -> str:
        """SIGTERM (the server shuts down cleanly), SIGKILL after `timeout_s`; returns its stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.stderr.read() if self.proc.stderr else ""

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
