"""Helpers of the runtime tests: run the CLI in a fresh interpreter (torch-free check), read its logs."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Runs `wallwm-edge ARGS` in a fresh interpreter and proves the on-board path never imported torch.
TORCH_FREE_MAIN = (
    "import sys\n"
    "from wallwm_edge.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]\n"
    "print('TORCH_FREE', flush=True)\n"
    "sys.exit(rc)\n"
)


def shipped_student() -> Path | None:
    from wallwm_edge.runtime.loop import default_student

    d = default_student()
    return d if d.is_dir() and any(d.glob("*.sample.json")) else None


def runtime_env(student: Path | None = None) -> dict:
    env = dict(os.environ, MUJOCO_GL="osmesa", PYOPENGL_PLATFORM="osmesa")
    if student is not None:
        env["WALLWM_STUDENT"] = str(student)
    return env


def run_cli(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TORCH_FREE_MAIN, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=HERE.parent.parent)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def wait_for(pred, timeout: float, every: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return False
