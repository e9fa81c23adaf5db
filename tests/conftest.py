import os

# Headless MuJoCo rendering on CPU machines; the sentence encoder ships offline in a pip package.
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_metaworld_dataset(tmp_path_factory):
    """A tiny real Meta-World dataset, generated once per test session: 2 tasks x 2 expert episodes,
    3 views (corner, topview, gripperPOV) at 64x64, seed 0. Returns the dataset root (a Path)."""
    from wallwm_edge.sim.generate import generate_dataset

    root = tmp_path_factory.mktemp("mw") / "tiny"
    summary = generate_dataset(root, tasks=["pick-place-v3", "push-v3"], episodes_per_task=2, image_size=(64, 64),
                               views=("corner", "topview", "gripperPOV"), seed=0, workers=1, progress=False)
    assert summary["episodes"] == 4, summary
    return root


@pytest.fixture
def one_torch_thread():
    """Small models on a shared 2-core machine: one intra-op thread is faster than two, and far faster when
    the machine is loaded. The torch test folders make it autouse in their conftest."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
