"""export-encoder: all-MiniLM-L6-v2 in ONNX (fp32, int8) against sentence-transformers itself.

The export runs once per session (tests/conftest.py `minilm_encoder`, into a tmp folder); these tests
read it. Skipped only when the model package or sentence-transformers is missing.
"""

import json

import numpy as np
import pytest

from wallwm_edge.errors import ConfigError
from wallwm_edge.export.text_encoder import GATES, PARITY_SENTENCES
from wallwm_edge.export.encoder_file import FILES, META, TOKENIZER, TextEncoder

# Not in PARITY_SENTENCES: the gate's own texts could hide a miss on fresh ones.
FRESH = [
    "shove the little disc onto the goal marker", "please fetch my keys from the shelf", "Put. It. Down.",
    "grip it tighter", "turn left, then go straight for 20 cm", "could the arm wave hello?", "sweep crumbs into the dustpan",
    "insert the peg into hole B", "unplug the charger", "la tasse est trop chaude",
]


def _reference(st, texts):
    return st.encode(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)


def test_files_and_record(minilm_encoder):
    folder, _ = minilm_encoder
    rec = json.loads((folder / META).read_text())
    assert rec["files"] == FILES and (folder / TOKENIZER).is_file()
    assert rec["dim"] == 384 and rec["max_length"] == 256 and rec["normalized"] and rec["pooling"] == "mean"
    assert len(PARITY_SENTENCES) >= 50 and rec["parity"]["fp32"]["n"] == len(PARITY_SENTENCES)
    for p, gate in GATES.items():
        assert rec["parity"][p]["passed"] and rec["parity"][p]["min_cosine"] >= gate
    assert rec["parity"]["fp32"]["min_cosine"] >= 0.999


@pytest.mark.parametrize("precision,floor", [("fp32", 0.999), ("int8", GATES["int8"])])
def test_parity_on_fresh_sentences(minilm_encoder, precision, floor):
    folder, st = minilm_encoder
    enc = TextEncoder.find(folder, precision)
    assert enc.precision == precision
    got, ref = enc.encode(FRESH, batch_size=1), _reference(st, FRESH)  # one text per call, as on board
    assert got.shape == (len(FRESH), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # normalised inside the graph
    assert (got * ref).sum(1).min() >= floor
    if precision == "fp32":  # a batch pads to its longest text; fp32 ignores the padding exactly
        batch = enc.encode(FRESH)
        assert (batch * got).sum(1).min() >= 0.99999


def test_tokenizes_like_sentence_transformers(minilm_encoder):
    folder, st = minilm_encoder
    enc = TextEncoder.find(folder)
    long = " ".join(["move the puck a little closer"] * 80)  # > 256 word pieces: truncated at 256 like the reference
    texts = ["grasp the puck", "", "PUSH the Button!", long]
    ours = enc.tokenize(texts)
    theirs = st.tokenize(texts) if not hasattr(st, "preprocess") else st.preprocess(texts)
    np.testing.assert_array_equal(ours["input_ids"], theirs["input_ids"].numpy())
    np.testing.assert_array_equal(ours["attention_mask"], theirs["attention_mask"].numpy())
    assert ours["input_ids"].shape[1] == 256
    assert float(enc.encode([long])[0] @ _reference(st, [long])[0]) >= 0.999


def test_gate_miss_writes_nothing(minilm_encoder, tmp_path, monkeypatch):
    """A file that misses its gate leaves OUT as it was (no half-written encoder beside a student)."""
    import shutil

    from wallwm_edge.export import text_encoder as te
    from wallwm_edge.export.parity import ParityError

    folder, st = minilm_encoder
    monkeypatch.setattr(te, "export_onnx", lambda _st, path: shutil.copyfile(folder / FILES["fp32"], path) and path)
    monkeypatch.setitem(te.GATES, "fp32", 1.01)
    out = tmp_path / "student"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ParityError, match="nothing was written"):
        te.export_text_encoder(out, ("fp32",), st=st, texts=FRESH, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"] and sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_bad_precision_and_help():
    from wallwm_edge.cli import build_parser
    from wallwm_edge.export.text_encoder import export_text_encoder

    with pytest.raises(ConfigError, match="choose from fp32, int8"):
        export_text_encoder("/nonexistent/never-made", ("fp16",))
    text = build_parser()._subparsers._group_actions[0].choices["export-encoder"].format_help()
    assert "wallwm-edge export-encoder --out" in text and "examples:" in text
