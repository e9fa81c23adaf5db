import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Every test here runs with one torch thread (the fixture lives in tests/conftest.py)."""


VIEWS = ("corner", "top", "gripper")  # wallwm_edge.data.synthetic.synthetic_rig names


def tiny_model(seed: int = 0, image_size=(32, 32)):
    """A `tiny` WallWM whose weights are all non-zero (adaLN-zero would make every block the identity,
    and then the attention mask could not matter), with a non-trivial action normalizer."""
    from wallwm_edge.model.denoiser import WallWM
    from wallwm_edge.model.presets import resolve

    torch.manual_seed(seed)
    cfg = resolve("tiny", views=VIEWS, image_size=image_size, action_dim=4, proprio_dim=4)
    model = WallWM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.15)
        model.action_norm.mean.copy_(torch.tensor([0.1, -0.2, 0.0, 0.5]))
        model.action_norm.std.copy_(torch.tensor([0.3, 0.3, 0.3, 0.8]))
    return model


@pytest.fixture(scope="session")
def exported_tiny(tmp_path_factory):
    """(model, sample.onnx, step.onnx) exported once per session with the real export code."""
    from wallwm_edge.export.student import export_graph

    torch.set_num_threads(1)
    model = tiny_model()
    d = tmp_path_factory.mktemp("onnx")
    # The product default (dynamo) on the smaller step graph; the legacy tracer on the sample graph,
    # 10-20x faster to export on a loaded CI machine. Both are gated the same way.
    sample = export_graph(model, "sample", d / "tiny.sample.onnx", steps=2, exporter="torchscript")
    step = export_graph(model, "step", d / "tiny.step.onnx", steps=2, exporter="dynamo")
    return model, sample, step


@pytest.fixture
def make_tiny():
    return tiny_model


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """Four synthetic episodes on the VIEWS rig: real dataset batches for int8 calibration and gate inputs."""
    from wallwm_edge.data.dataset import Dataset
    from wallwm_edge.data.synthetic import synthetic_episode

    root = tmp_path_factory.mktemp("synthetic") / "ds"
    ds = Dataset.create(root, views=list(VIEWS), image_size=(32, 32), action_dim=4, proprio_dim=4, fps=10.0, name="synthetic")
    for i, task in enumerate(("pick-place-v3", "push-v3") * 2):
        ds.append(synthetic_episode(f"{task}_s{i:05d}", task=task, T=24, seed=i))
    ds.finalize()
    return root

