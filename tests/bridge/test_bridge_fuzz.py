"""The firmware under libFuzzer (ASan + UBSan) with oracles (firmware_bridge/fuzz/fuzz_wwfw.c): a wrong-CRC
message changes no state; commands stay finite, inside the limits and within vmax per tick across every
transition, space switches included; queue, chunk-table and outbox bounds hold; every reply is well formed.

A bounded run here (WALLWM_FUZZ_RUNS executions, 100,000 by default: well under a minute); longer on demand:

    WALLWM_FUZZ_RUNS=10000000 python -m pytest tests/bridge/test_bridge_fuzz.py
    firmware_bridge/fuzz/run.sh 10000000          (the same harness outside pytest, corpus kept)
"""

import hashlib
import os
import re
import shutil
import subprocess

import pytest

from wallwm_edge.bridge.firmware import _cache_dir, source_dir

RUNS = int(os.environ.get("WALLWM_FUZZ_RUNS", "100000"))

# starting points: small programs the fuzzer mutates (arm byte, watchdog bytes, then op bytes)
SEEDS = [
    bytes([0x05, 200, 50, 0, 10, 0, 1, 5, 0, 0, 0, 3, 7, 0, 100, 1, 9, 9, 9, 9, 9, 9, 9, 6, 120, 4, 0, 1]),
    bytes([0x16, 10, 10, 0, 1, 0, 1, 0x04, 0, 0, 10, 2, 5, 0, 60, 1, 50, 90, 120, 200, 240, 100, 30, 6, 127,
           1, 0x00, 0, 0, 4, 2, 4, 0, 80, 1, 30, 30, 30, 30, 30, 30, 30, 30, 6, 127, 4, 1, 0, 1, 1, 6, 50]),
    bytes([0x21, 40, 1, 0, 100, 0, 1, 0x0C, 2, 0, 6, 1, 7, 0, 200, 1, 1, 2, 3, 4, 5, 6, 7, 11, 255, 0, 200, 0]),
    bytes([0x06, 60, 3, 9, 8, 0, 0, 200, 10, 10, 10, 12, 10, 3, 1, 2, 3, 4, 5, 6, 7, 8, 8, 1, 1, 0xFF, 0, 0, 0]),
]


def fuzzer_build(tmp_path):
    """The harness built with clang's libFuzzer runtime, or None (with the reason) where it is missing."""
    clang = os.environ.get("WALLWM_FUZZ_CC") or shutil.which("clang") or shutil.which("clang-14")
    if clang is None:
        return None, "clang not found (install clang and libclang-rt-dev for -fsanitize=fuzzer)"
    src = source_dir()
    files = [src / "include" / "wwfw.h", *sorted(src.glob("src/*.c")), src / "fuzz" / "fuzz_wwfw.c"]
    flags = ["-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all", "-ffp-contract=off"]
    h = hashlib.sha256(" ".join([clang, *flags]).encode())
    for f in files:
        h.update(f.read_bytes())
    exe = _cache_dir() / f"fuzz-{h.hexdigest()[:16]}" / "fuzz_wwfw"  # built once per source version
    if exe.is_file():
        return exe, ""
    exe.parent.mkdir(parents=True, exist_ok=True)
    tmp = exe.with_name(f"fuzz_wwfw.tmp{os.getpid()}")
    cmd = [clang, *flags, "-I", str(src / "include"), *[str(f) for f in files if f.suffix == ".c"], "-lm", "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        if "fuzzer" in r.stderr and ("cannot find" in r.stderr or "not found" in r.stderr or "No such file" in r.stderr):
            return None, f"clang's libFuzzer runtime is missing ({r.stderr.strip().splitlines()[-1][:200]})"
        raise AssertionError(f"the fuzz harness does not build:\n{r.stderr[-3000:]}")
    os.replace(tmp, exe)
    return exe, ""


@pytest.mark.skipif(source_dir() is None, reason="needs the firmware sources (a source checkout)")
def test_firmware_survives_the_fuzzer_with_its_oracles(tmp_path):
    exe, why = fuzzer_build(tmp_path)
    if exe is None:
        pytest.skip(why)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, s in enumerate(SEEDS):
        (corpus / f"seed{i}").write_bytes(s)
    r = subprocess.run([str(exe), f"-runs={RUNS}", "-max_len=2048", "-seed=12", "-print_final_stats=1",
                        f"-artifact_prefix={tmp_path}/", str(corpus)],
                       capture_output=True, text=True, timeout=max(600, RUNS // 500), cwd=tmp_path)
    log = r.stdout + r.stderr
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "leak-", "timeout-", "oom-")))
    assert r.returncode == 0 and not crashes, f"finding {crashes}:\n{log[-4000:]}"
    done = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    assert done and int(done.group(1)) >= RUNS, log[-2000:]
    cov = re.findall(r"cov: (\d+)", log)
    assert cov and int(cov[-1]) > 300, "the fuzzer reached the dispatcher, queue and interpolator"
