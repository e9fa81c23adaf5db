"""A tiny teacher served by a real `wallwm-edge serve` subprocess on a free loopback port."""

import pytest
from serve_helpers import make_dataset

from wallwm_edge.serve.process import ServerProcess


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """One torch thread in this process too (the fixture lives in tests/conftest.py)."""


@pytest.fixture(scope="session")
def serve_dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("serve_ds") / "ds")


@pytest.fixture(scope="session")
def served_teacher_ckpt(serve_dataset, tmp_path_factory):
    """A tiny teacher (4 flow steps), 3 training steps: enough for real weights, shapes and a rig."""
    import torch

    from wallwm_edge.train.samples import hash_embedder
    from wallwm_edge.train.trainer import TrainConfig, Trainer

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("serve_teacher")
    tcfg = TrainConfig(preset="tiny", steps=3, batch_size=4, warmup=1, model_overrides=(("flow_steps", 4),))
    Trainer(serve_dataset, out, tcfg, embed=hash_embedder(), progress=False).run()
    torch.set_num_threads(n)
    return out


@pytest.fixture(scope="module")
def server(served_teacher_ckpt):
    # A wide batching window and a small max batch: concurrent clients are stacked however loaded the machine,
    # and a batch of 4 leaves at once without waiting out the window.
    s = ServerProcess(served_teacher_ckpt, "--max-batch", "4", "--batch-window-ms", "300")
    yield s
    s.stop()
