"""The CPU attention kernel's NEON path (Jetson's), cross-compiled for aarch64 and run under qemu-user against a
float64 scalar reference (csrc/tests/run_aarch64.sh). Skips unless g++-aarch64-linux-gnu and qemu-user are
installed."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "csrc" / "tests" / "run_aarch64.sh"


@pytest.mark.skipif(not SCRIPT.exists(), reason="csrc/tests/run_aarch64.sh not in this checkout")
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None or shutil.which("qemu-aarch64") is None,
                    reason="needs g++-aarch64-linux-gnu and qemu-user (Debian packages)")
def test_neon_path_matches_float64_under_qemu(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=600)
    if r.returncode == 77:
        pytest.skip(r.stdout.strip())
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "neon" in r.stdout and " cases passed" in r.stdout
