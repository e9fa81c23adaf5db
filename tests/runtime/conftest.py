import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_helpers import shipped_student  # noqa: E402

@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory) -> Path:
    """A tiny-preset student exported through the export package (see runtime_student.py)."""
    from runtime_student import export_tiny_student

    return export_tiny_student(tmp_path_factory.mktemp("tiny-student")).parent


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


