import pytest

from wallwm_edge.bridge.firmware import build


@pytest.fixture(scope="session")
def fw_sim_exe(tmp_path_factory):
    """The simulator compiled fresh from this checkout's sources (never a stale installed one)."""
    return build("sim", tmp_path_factory.mktemp("fwsim"))
