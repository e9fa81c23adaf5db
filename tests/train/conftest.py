import pytest

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.data.synthetic import synthetic_episode


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Every test here runs with one torch thread (the fixture lives in tests/conftest.py)."""


def make_synthetic_dataset(root, episodes=4, T=24, tasks=("pick-place-v3", "push-v3")):
    ds = Dataset.create(root, views=["corner", "top", "gripper"], image_size=(32, 32), action_dim=4, proprio_dim=4, fps=10.0, name="synthetic")
    for i in range(episodes):
        task = tasks[i % len(tasks)]
        ds.append(synthetic_episode(f"{task}_s{i:05d}", task=task, T=T, seed=i))
    ds.finalize()
    return root


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "ds")


@pytest.fixture
def dataset_maker():
    return make_synthetic_dataset
