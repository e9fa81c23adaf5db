"""Any instruction on board: the Student embeds texts outside its caption table with the ONNX sentence
encoder beside it (export/encoder_file.py, torch-free); without one the error names the text and the fix."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.runtime.engine import Student
from wallwm_edge.export.encoder_file import FILES, META, TOKENIZER

UNSEEN = "please shove the little disc over onto the goal"
KNOWN = ("grasp the puck", "reach for the puck", "place the puck on the target")


def _student_copy(src: Path, dst: Path, table: dict | None = None) -> Path:
    """The tiny student's sample graph + sidecar in `dst`, its caption table replaced by `table`."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "student.sample.onnx", dst / "student.sample.onnx")
    side = json.loads((src / "student.sample.json").read_text())
    if table is not None:
        side["captions"] = {t: np.asarray(v, np.float64).round(6).tolist() for t, v in table.items()}
    (dst / "student.sample.json").write_text(json.dumps(side))
    return dst


def _with_encoder(folder: Path, encoder_dir: Path) -> Path:
    for name in (*FILES.values(), TOKENIZER, META):
        try:
            os.link(encoder_dir / name, folder / name)  # ~110 MB: a hard link where the file system allows
        except OSError:
            shutil.copyfile(encoder_dir / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def minilm_student(tiny_student, minilm_encoder, tmp_path_factory):
    """The tiny student with a real MiniLM caption table and the exported encoder beside it."""
    enc_dir, st = minilm_encoder
    table = dict(zip(KNOWN, st.encode(list(KNOWN), normalize_embeddings=True, show_progress_bar=False)))
    return _with_encoder(_student_copy(tiny_student, tmp_path_factory.mktemp("minilm_student"), table), enc_dir)


def test_unseen_instruction_through_the_encoder(minilm_student, minilm_encoder):
    _, st = minilm_encoder
    student = Student.load(minilm_student)
    assert student.text_encoder is not None and student.text_encoder.precision == "fp32"
    assert UNSEEN not in student.captions.known and UNSEEN in student.captions  # the table is a cache now
    e = student.embed(UNSEEN)
    ref = st.encode([UNSEEN], normalize_embeddings=True, show_progress_bar=False)[0]
    assert e.shape == (384,) and float(e @ ref) >= 0.999
    assert student.embed(UNSEEN) is e  # embedded once
    np.testing.assert_allclose(student.embed(KNOWN[0]), np.asarray(student.captions.table[KNOWN[0]], np.float32))
    H, W = student.image_size
    out = student.act(np.zeros((len(student.views), H, W, 3), np.uint8), np.zeros(4, np.float32), UNSEEN)
    assert out.actions.shape == (student.horizon, student.action_dim) and np.isfinite(out.actions).all()


def test_no_encoder_names_the_text_and_the_fix(tiny_student, tmp_path):
    student = Student.load(_student_copy(tiny_student, tmp_path / "s"))
    assert student.text_encoder is None and UNSEEN not in student.captions
    with pytest.raises(DataError) as e:
        student.embed(UNSEEN)
    msg = str(e.value)
    assert repr(UNSEEN) in msg and "wallwm-edge export-encoder --out" in msg and str(tmp_path / "s") in msg


def test_encoder_of_another_model_is_refused(tiny_student, minilm_encoder, tmp_path):
    """The tiny student's table holds random vectors: the MiniLM encoder disagrees and load says so."""
    folder = _with_encoder(_student_copy(tiny_student, tmp_path / "s"), minilm_encoder[0])
    with pytest.raises(ConfigError, match="disagrees with .* caption table"):
        Student.load(folder)


BLOCK_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("the on-board runtime imported torch")
sys.meta_path.insert(0, NoTorch())
"""


def test_runtime_encoder_imports_and_runs_without_torch(minilm_student):
    code = BLOCK_TORCH + f"""
from wallwm_edge.export.encoder_file import TextEncoder
from wallwm_edge.runtime.engine import Student
e = TextEncoder.find({str(minilm_student)!r}, "int8").encode(["turn the faucet on", {UNSEEN!r}])
assert e.shape == (2, 384), e.shape
s = Student.load({str(minilm_student)!r})
assert s.embed({UNSEEN!r}).shape == (384,)
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
