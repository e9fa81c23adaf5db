"""Sight-cone mask construction: the C++ kernel vs the numpy float64 reference, same rig, same mask.

Goal: >= 50x. Both build the full (N, N) token mask of a Meta-World rig (96 px images, 8 px patches,
near 0.05 m, far 2 m, the sim's workspace box), and the benchmark checks the two masks are identical.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _ops_rigs import FOUR_CAMERAS, METAWORLD3, metaworld_rig
from wallwm_edge.bench import write_result
from wallwm_edge.ops import ext
from wallwm_edge.ops.sightcone import density, sightcone_mask


def _time(fn, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return out, float(np.median(ts)), float(np.min(ts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="sight-cone mask: C++ vs numpy reference")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if not ext.has("sightcone_mask"):
        print("wallwm_edge._C is not built: nothing to compare")
        return 1
    ref_reps, cpp_reps = (1, 10) if args.quick else (3, 50)
    figures, goals, met = {}, {}, {}
    for key, views in (("metaworld3", METAWORLD3), ("cameras4", FOUR_CAMERAS)):
        cams, ws, source = metaworld_rig(views)
        for box in (True, False):
            tag = f"{key}_{'box' if box else 'nobox'}"
            w = ws if box else None
            ref, ref_med, ref_min = _time(lambda: sightcone_mask(cams, 8, 0.05, 2.0, w, use_ext=False), ref_reps)
            got, cpp_med, cpp_min = _time(lambda: sightcone_mask(cams, 8, 0.05, 2.0, w, use_ext=True), cpp_reps)
            figures[tag] = {"views": list(views), "rig": source, "tokens": int(len(ref)), "density": round(density(ref), 4),
                            "identical": bool(np.array_equal(ref, got)), "numpy_ms": round(ref_med * 1e3, 2),
                            "cpp_ms": round(cpp_med * 1e3, 3), "cpp_min_ms": round(cpp_min * 1e3, 3),
                            "speedup": round(ref_med / cpp_med, 1)}
            goals[f"{tag}_speedup"] = 50.0
            met[f"{tag}_speedup"] = bool(ref_med / cpp_med >= 50 and np.array_equal(ref, got))
    write_result("sightcone_mask", figures, goals, met)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
