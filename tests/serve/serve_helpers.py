"""Helpers of the serve tests (a module of its own: conftest.py names collide across test folders)."""

import socket

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
