"""Sight-cone masks: the numpy reference against Monte-Carlo and an LP, and the C++ kernel against the reference."""

import numpy as np
import pytest
from ops_rigs import look_at, monte_carlo_pairs, table_rig
from scipy.optimize import linprog

from wallwm_edge.ops import ext
from wallwm_edge.ops import sightcone as S

BOX = (np.array([-0.3, -0.3, 0.0]), np.array([0.3, 0.3, 0.3]))
needs_ext = pytest.mark.skipif(not ext.has("sightcone_mask"), reason="wallwm_edge._C is not built")


def _cross_view(cams, patch):
    sizes = [(c.height // patch) * (c.width // patch) for c in cams]
    view = np.repeat(np.arange(len(cams)), sizes)
    return view[:, None] != view[None, :]


@pytest.mark.parametrize("workspace,distort,seed", [(None, False, 1), (None, True, 2), (BOX, False, 3), (BOX, True, 4)])
def test_mask_never_drops_a_pair_that_shares_space(workspace, distort, seed):
    cams = table_rig(3, 32, seed=seed, distort=distort)
    mask = S.sightcone_token_mask(cams, 8, 0.1, 2.0, workspace)
    truth = monte_carlo_pairs(cams, 8, 0.1, 2.0, workspace, samples=2000, seed=seed)
    cross = _cross_view(cams, 8)
    assert not np.any(truth & ~mask), f"dropped {np.argwhere(truth & ~mask)[:5].tolist()}"
    assert mask[~cross].all()
    assert mask.dtype == bool and np.array_equal(mask, mask.T)
    # Conservative but not vacuous: the mask is close to what sampling finds (and far from all-True).
    assert mask[cross].mean() - truth[cross].mean() < 0.08
    assert mask[cross].mean() < 0.9


def test_mask_is_exact_without_workspace():
    """Without a box the SAT axis set is complete: every kept pair is LP-feasible, every dropped one is not."""
    cams = table_rig(2, 24, seed=5)
    mask = S.sightcone_token_mask(cams, 8, 0.2, 1.5)
    cones = [S._cones(c, 8, 0.2, 1.5, None) for c in cams]
    for i in range(9):
        for j in range(9):
            P = np.concatenate([cones[0]["planes"][i], cones[1]["planes"][j]])
            feasible = linprog(np.zeros(3), A_ub=P[:, :3], b_ub=P[:, 3], bounds=[(None, None)] * 3).status == 0
            assert mask[i, 9 + j] == feasible, (i, j)


def test_cameras_facing_away_share_nothing():
    a = look_at("a", [0, 0, 0.5], [1, 0, 0.5], 60, 16, 16)
    b = look_at("b", [-0.1, 0, 0.5], [-1, 0, 0.5], 60, 16, 16)
    mask = S.sightcone_token_mask([a, b], 8, 0.05, 3.0)
    assert not mask[:4, 4:].any() and mask[:4, :4].all() and mask[4:, 4:].all()


def test_block_mask_and_density():
    rng = np.random.default_rng(0)
    m = rng.random((37, 37)) < 0.05
    b = S.block_mask(m, 8)
    assert b.shape == (5, 5)
    for i in range(5):
        for j in range(5):
            assert b[i, j] == m[i * 8:(i + 1) * 8, j * 8:(j + 1) * 8].any()
    assert S.density(m) == pytest.approx(m.sum() / 37**2)
    assert S.density(np.ones((3, 3), bool)) == 1.0


def test_bad_arguments_name_the_argument():
    cams = table_rig(2, 32)
    with pytest.raises(ValueError, match="patch"):
        S.sightcone_token_mask(cams, 5, 0.1, 2.0)
    with pytest.raises(ValueError, match="near"):
        S.sightcone_token_mask(cams, 8, 2.0, 1.0)
    with pytest.raises(ValueError, match="workspace"):
        S.sightcone_token_mask(cams, 8, 0.1, 2.0, (np.zeros(3), -np.ones(3)))
    with pytest.raises(ValueError, match="mask"):
        S.block_mask(np.ones((3, 4), bool), 2)
    with pytest.raises(ValueError, match="block"):
        S.block_mask(np.ones((4, 4), bool), 0)


@needs_ext
@pytest.mark.parametrize("workspace,distort,seed", [(None, False, 11), (None, True, 12), (BOX, False, 13), (BOX, True, 14)])
def test_cpp_kernel_matches_reference(workspace, distort, seed):
    cams = table_rig(4, 48, seed=seed, distort=distort)
    ref = S.sightcone_mask(cams, 8, 0.08, 1.8, workspace, use_ext=False)
    got = S.sightcone_mask(cams, 8, 0.08, 1.8, workspace, use_ext=True)
    assert got.dtype == bool and got.shape == ref.shape == (144, 144)
    assert np.array_equal(got, ref), f"{(got != ref).sum()} entries differ"


@needs_ext
def test_cpp_block_mask_matches_numpy():
    rng = np.random.default_rng(3)
    for N, b in [(1, 1), (37, 8), (64, 16), (50, 64)]:
        m = rng.random((N, N)) < 0.1
        assert np.array_equal(ext.module().block_mask(m, b), S.block_mask(m, b))


@needs_ext
def test_cpp_sightcone_rejects_bad_arrays_naming_them():
    C = ext.module()
    K, dist, T, hw = S._pack_rig(table_rig(2, 32))
    with pytest.raises(ValueError, match="^K"):
        C.sightcone_mask(K.astype(np.float32), dist, T, hw, 8, 0.1, 2.0)
    with pytest.raises(ValueError, match="dist"):
        C.sightcone_mask(K, dist[:1], T, hw, 8, 0.1, 2.0)
    with pytest.raises(ValueError, match="T_base_cam"):
        C.sightcone_mask(K, dist, T[:, :, ::-1], hw, 8, 0.1, 2.0)  # non-contiguous
    with pytest.raises(ValueError, match="hw"):
        C.sightcone_mask(K, dist, T, hw.astype(np.int32), 8, 0.1, 2.0)
    with pytest.raises(ValueError, match="patch"):
        C.sightcone_mask(K, dist, T, hw, 5, 0.1, 2.0)
    with pytest.raises(ValueError, match="near"):
        C.sightcone_mask(K, dist, T, hw, 8, -1.0, 2.0)
    with pytest.raises(ValueError, match="workspace"):
        C.sightcone_mask(K, dist, T, hw, 8, 0.1, 2.0, np.zeros((2, 3)))
    bad = T.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="T_base_cam"):
        C.sightcone_mask(K, dist, bad, hw, 8, 0.1, 2.0)
    with pytest.raises(ValueError, match="mask"):
        C.block_mask(np.ones((3, 4), bool), 2)
