"""Helpers of the serve tests (a module of its own: conftest.py names collide across test folders)."""

import os
import socket
import subprocess
import sys
import threading

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.data.synthetic import synthetic_episode


def free_port() -> int:
    """A loopback port nothing listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_dataset(root, image_size=(32, 32), episodes=4):
    ds = Dataset.create(root, views=["corner", "top", "gripper"], image_size=image_size, action_dim=4, proprio_dim=4, fps=10.0, name="synthetic")
    for i in range(episodes):
        task = ("pick-place-v3", "push-v3")[i % 2]
        ds.append(synthetic_episode(f"{task}_s{i:05d}", task=task, T=24, seed=i, image_size=image_size))
    ds.finalize()
    return root


class Served:
    """A `wallwm-edge serve` subprocess; `url` once it printed its listening line."""

    def __init__(self, ckpt, *extra, start_timeout=120.0):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "wallwm_edge", "serve", str(ckpt), "--port", "0", "--threads", "1", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(start_timeout)  # bounded: a server that never comes up fails the test, it does not hang it
        if not line or "ws://" not in line[0]:
            self.stop()
            raise RuntimeError(f"serve did not start: stdout {line!r} stderr {self.proc.stderr.read()[-2000:]!r}")
        self.banner = line[0]
        self.url = line[0].split(" on ", 1)[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.stderr.read() if self.proc.stderr else ""
