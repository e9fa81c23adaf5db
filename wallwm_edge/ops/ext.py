"""Access to the compiled `wallwm_edge._C` extension, with a readable fallback when it is not built.

Every op module asks `has(name)` once and falls back to its numpy / PyTorch reference otherwise, so the
package works from a plain source checkout; `require(name)` raises a clear error where the caller insisted.
"""

from __future__ import annotations

import functools

from wallwm_edge.errors import WallwmError


@functools.lru_cache(maxsize=1)
def module():
    """The `_C` module, or None when it is not built (or fails to load)."""
    try:
        from wallwm_edge import _C
    except ImportError:
        return None
    return _C


def has(name: str) -> bool:
    m = module()
    return m is not None and hasattr(m, name)


def require(name: str):
    m = module()
    if m is None:
        raise WallwmError("wallwm_edge._C is not built: run `pip install --no-build-isolation -e .` (needs a C++ compiler and CMake)")
    if not hasattr(m, name):
        raise WallwmError(f"wallwm_edge._C has no op {name!r}: rebuild the extension")
    return getattr(m, name)


def cuda_available() -> bool:
    """True when the extension was built with CUDA and a GPU answers cudaGetDeviceCount."""
    m = module()
    return m is not None and hasattr(m, "cuda_device_count") and m.cuda_device_count() > 0
