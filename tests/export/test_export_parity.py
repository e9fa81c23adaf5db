"""The parity gates themselves (numpy only): every bound passes when met and fails loudly when missed."""

import numpy as np
import pytest

from wallwm_edge.errors import WallwmError
from wallwm_edge.export.parity import GATES, ParityError, compare, enforce


def actions(seed=0, B=6, L=8, A=4):
    return np.random.default_rng(seed).normal(0, 1, (B, L, A))


def test_identical_outputs_pass_every_gate():
    a = actions()
    for precision in GATES:
        rep = enforce(compare("same", a, a.copy(), precision))
        assert rep.passed and rep.cosine == pytest.approx(1.0) and rep.l1 == 0.0


def test_gate_bounds_are_the_issue_s():
    assert (GATES["fp32"].cosine_min, GATES["fp32"].l1_max) == (0.99, 0.05)
    assert (GATES["fp16"].cosine_min, GATES["fp16"].l1_max) == (0.99, 0.05)
    assert GATES["int8"].cosine_min == 0.98 and GATES["int8"].l1_max is None


def test_small_noise_passes_fp32_but_direction_change_fails():
    a = actions()
    rng = np.random.default_rng(1)
    assert compare("noise", a, a + rng.normal(0, 0.01, a.shape), "fp32").passed
    rotated = a.copy()
    rotated[0] = np.roll(a[0], 1, axis=-1)  # one sample's actions permuted: cosine collapses
    rep = compare("rotated", a, rotated, "fp32")
    assert not rep.passed and "cosine" in rep.why
    with pytest.raises(ParityError, match=r"parity gate failed: rotated \[fp32\].*cosine"):
        enforce(rep)


def test_l1_bound_fails_fp32_and_fp16_but_int8_has_none():
    a = actions()
    scaled = a * 1.08  # same direction (cosine 1), mean |error| ~0.064 > 0.05
    for precision in ("fp32", "fp16"):
        rep = compare("scaled", a, scaled, precision)
        assert not rep.passed and "L1" in rep.why and rep.cosine > 0.999
    assert compare("scaled", a, scaled, "int8").passed


def test_int8_cosine_bound_is_looser_than_fp32():
    a = actions(B=1, L=64)
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 1, a.shape)
    noise *= 0.17 * np.linalg.norm(a) / np.linalg.norm(noise)  # cosine ~0.986: between the two bounds
    got = a + noise
    assert not compare("n", a, got, "fp32").passed
    assert compare("n", a, got, "int8").passed


def test_nan_fails_even_with_good_cosine():
    a = actions()
    got = a.copy()
    got[2, 3, 1] = np.nan
    rep = compare("nan", a, got, "int8")
    assert not rep.passed and rep.nonfinite == 1 and "NaN" in rep.why


def test_padding_rows_are_ignored_via_valid_mask():
    a = actions()
    got = a.copy()
    got[:, -2:] = 50.0  # beyond the event's end: the runtime never executes these
    valid = np.ones(a.shape[:2], bool)
    valid[:, -2:] = False
    assert not compare("pad", a, got, "fp32").passed
    assert compare("pad", a, got, "fp32", valid=valid).passed


def test_shape_mismatch_and_unknown_precision_are_clear_errors():
    a = actions()
    with pytest.raises(ParityError, match="shape"):
        compare("x", a, a[:, :-1], "fp32")
    with pytest.raises(WallwmError, match="unknown precision 'int4'"):
        compare("x", a, a, "int4")
