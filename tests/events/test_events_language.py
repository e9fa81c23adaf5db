import re

from wallwm_edge.events.language import training_texts
from wallwm_edge.events.vocab import TASKS, caption, subtask_keys


def _norm(t):
    return re.sub(r"[^a-z ]", "", t.lower()).strip()


def test_every_subtask_key_gets_a_broad_deterministic_set_without_heldout_paraphrases():
    keys = sorted({k for t in TASKS for k in subtask_keys(t)})
    for key in keys:
        texts = training_texts(key)
        c = caption(key)
        assert texts[0] == c.text and len(texts) == 64 and len({_norm(t) for t in texts}) == 64
        assert not {_norm(h) for h in c.heldout_paraphrases} & {_norm(t) for t in texts}
        assert training_texts.__wrapped__(key) == texts  # deterministic, not just cached
        assert any(t != t.lower() for t in texts)  # casing varies


def test_object_synonyms_and_sentence_shapes_appear():
    texts = " | ".join(training_texts("grasp:puck")).lower()
    assert "disc" in texts or "disk" in texts
    assert "?" in texts


def test_keys_outside_the_subtask_vocabulary_keep_their_own_texts():
    c = caption("action:lower")
    assert training_texts("action:lower") == (c.text, *c.paraphrases)
