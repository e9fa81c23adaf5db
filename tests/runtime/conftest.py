import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_helpers import shipped_student  # noqa: E402

@pytest.fixture(scope="session")
def tiny_student() -> Path:
    """A tiny-preset student exported through the export package (see runtime_student.py).

    The export takes 30-60 s on a loaded 2-core machine, so it is cached under ~/.cache keyed by the hash
    of every source file that shapes it: any change to the model or the exporter exports afresh."""
    from runtime_student import cached_tiny_student

    return cached_tiny_student()


@pytest.fixture(scope="session")
def tiny_unified_student() -> Path:
    """The same, in unified mode (task instruction, fixed-length chunks, K reasoning states)."""
    from runtime_student import cached_tiny_student

    return cached_tiny_student("unified")


@pytest.fixture(scope="session")
def student_dir(request) -> Path:
    """The shipped student when checkpoints/student holds one, else the tiny export."""
    return shipped_student() or request.getfixturevalue("tiny_student")


@pytest.fixture
def repeated_plan(tmp_path) -> Path:
    """Eight events, so a run lasts as many chunks as a test asks whatever the policy signals."""
    events = ["reach:puck", "grasp:puck", "carry:puck@target"] * 3
    p = tmp_path / "plan.json"
    p.write_text(json.dumps({"pick-place-v3": events[:8]}))
    return p


