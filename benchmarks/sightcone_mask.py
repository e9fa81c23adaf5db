"""Sight-cone mask construction: the C++ kernel vs the numpy float64 reference, same rig, same mask.

Goal: >= 50x. Both build the full (N, N) token mask of a Meta-World rig (96 px images, 8 px patches,
near 0.05 m, far 2 m, with and without the sim's workspace box), and the benchmark checks the two masks
are identical. Reported: wall-clock medians (C++ on all cores) and, steadier on a loaded machine, process
CPU time with the C++ kernel on one thread (time.process_time: descheduled time does not count).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _ops_rigs import FOUR_CAMERAS, METAWORLD3, metaworld_rig
from wallwm_edge.bench import write_result
from wallwm_edge.ops import ext
from wallwm_edge.ops.sightcone import density, sightcone_mask


def _time(fn, reps, clock=time.perf_counter):
    ts = []
    for _ in range(reps):
        t = clock()
        out = fn()
        ts.append(clock() - t)
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
            C = ext.module()
            threads = C.get_num_threads()
            C.set_num_threads(1)
            _, ref_cpu, _ = _time(lambda: sightcone_mask(cams, 8, 0.05, 2.0, w, use_ext=False), ref_reps, time.process_time)
            _, cpp_cpu, _ = _time(lambda: sightcone_mask(cams, 8, 0.05, 2.0, w, use_ext=True), cpp_reps, time.process_time)
            C.set_num_threads(threads)
            same = bool(np.array_equal(ref, got))
            figures[tag] = {"views": list(views), "rig": source, "tokens": int(len(ref)), "density": round(density(ref), 4),
                            "identical": same, "numpy_ms": round(ref_med * 1e3, 2), "cpp_ms": round(cpp_med * 1e3, 3),
                            "cpp_min_ms": round(cpp_min * 1e3, 3), "speedup": round(ref_med / cpp_med, 1),
                            "numpy_cpu_ms": round(ref_cpu * 1e3, 2), "cpp_1_thread_cpu_ms": round(cpp_cpu * 1e3, 3),
                            "speedup_cpu_time_1_thread": round(ref_cpu / cpp_cpu, 1)}
            goals[f"{tag}_speedup"] = goals[f"{tag}_speedup_cpu_time_1_thread"] = 50.0
            met[f"{tag}_speedup"] = bool(ref_med / cpp_med >= 50 and same)
            met[f"{tag}_speedup_cpu_time_1_thread"] = bool(ref_cpu / cpp_cpu >= 50 and same)
    write_result("sightcone_mask", figures, goals, met)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
