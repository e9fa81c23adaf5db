"""The firmware's C unit tests (decoder, queue, interpolator, watchdog, golden vectors), built with cc."""

import shutil
import subprocess

import pytest

from wallwm_edge.bridge.firmware import CFLAGS, source_dir


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")
def test_c_unit_tests_pass(tmp_path):
    src = source_dir()
    exe = tmp_path / "wwfw_tests"
    cmd = ["cc", *CFLAGS, "-Wextra", "-pedantic", "-Werror", "-I", str(src / "include"), *map(str, sorted(src.glob("src/*.c"))),
           str(src / "tests" / "test_wwfw.c"), "-lm", "-o", str(exe)]
    # with AddressSanitizer/UBSan where the toolchain has them: the fuzz test then also checks memory safety
    sanitized = subprocess.run(cmd + ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
                               capture_output=True, timeout=120)
    if sanitized.returncode != 0:
        subprocess.run(cmd, check=True, timeout=120)
    r = subprocess.run([str(exe), str(src / "golden" / "vectors.txt")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout[-3000:]
    assert r.stdout.splitlines()[-1].startswith("ok:")


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")
def test_simulator_builds_warning_free(tmp_path):
    src = source_dir()
    cmd = ["cc", *CFLAGS, "-Wextra", "-Werror", "-I", str(src / "include"), *map(str, sorted(src.glob("src/*.c"))),
           str(src / "sim" / "main.c"), "-lm", "-o", str(tmp_path / "sim")]
    subprocess.run(cmd, check=True, timeout=120)
    r = subprocess.run([str(tmp_path / "sim"), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--pty" in r.stderr
