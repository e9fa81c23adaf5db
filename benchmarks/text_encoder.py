"""The on-board sentence encoder: parity with sentence-transformers and latency per new instruction.

all-MiniLM-L6-v2 exported by `wallwm-edge export-encoder` (fp32 and int8 ONNX, mean pooling and L2
normalisation inside the graph, `tokenizers` for the word pieces) against sentence-transformers itself:
- parity: cosine of every embedding with sentence-transformers' encode(normalize_embeddings=True) over
  the export's PARITY_SENTENCES (56 varied texts: the event vocabulary's style, user phrasings, typos,
  numbers, other languages and scripts, one beyond the 256-token limit), worst and mean;
- latency: one new instruction at a time (what the runtime does when the plan or the prompt gives a text
  outside the caption table): tokenize + one onnxruntime call, 1 intra-op thread, over the short
  sentences of that set; each sentence timed `reps` times, its best taken (a loaded machine preempts),
  then the median and 90th percentile across sentences. CPU time per call (thread time) beside it: what the
  call costs a free core (on a machine whose cores are taken by other work, wall time measures the
  scheduler). Baseline in the same run, call for call alternated with ours: sentence-transformers
  (torch, 1 thread).

    python benchmarks/text_encoder.py                   (exports into a temporary folder first)
    python benchmarks/text_encoder.py --encoder DIR     (an existing export-encoder folder)
    python benchmarks/text_encoder.py --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_isa() -> str:
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        return "unknown"
    names = [n for n, f in (("AVX-512", "avx512f"), ("AVX512-VNNI", "avx512_vnni"), ("AVX-VNNI", "avx_vnni"), ("AVX2", "avx2"),
                            ("FMA", "fma"), ("NEON", "asimd")) if f in flags]
    return ", ".join(names) or "baseline"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def latencies(fns: dict, texts: list[str], reps: int) -> dict[str, dict]:
    """Per engine: median and p90 over `texts` of each text's best wall ms of `reps` calls fn([text]), and the
    median thread-CPU ms. The engines alternate call by call, so the machine's load hits them alike."""
    for fn in fns.values():
        fn(texts[:1])  # the first call allocates
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for text in texts:
        w = {k: [] for k in fns}
        c = {k: [] for k in fns}
        for _ in range(reps):
            for k, fn in fns.items():
                c0, t0 = time.thread_time(), time.perf_counter()
                fn([text])
                w[k].append((time.perf_counter() - t0) * 1e3)
                c[k].append((time.thread_time() - c0) * 1e3)
        for k in fns:
            wall[k].append(min(w[k]))
            cpu[k].append(min(c[k]))
    out = {}
    for k in fns:
        ws = sorted(wall[k])
        out[k] = {"median_ms": round(statistics.median(ws), 3), "p90_ms": round(ws[int(0.9 * (len(ws) - 1))], 3),
                  "cpu_median_ms": round(statistics.median(cpu[k]), 3)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default=None, help="an export-encoder folder (default: export into a temporary folder)")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (same figures)")
    args = ap.parse_args(argv)

    import torch

    from wallwm_edge.bench import write_result
    from wallwm_edge.export.text_encoder import PARITY_SENTENCES, export_text_encoder, load_sentence_transformer
    from wallwm_edge.export.encoder_file import TextEncoder

    torch.set_num_threads(1)
    reps = 3 if args.quick else 15
    st = load_sentence_transformer()
    tmp = None
    folder = Path(args.encoder) if args.encoder else None
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="wallwm-text-encoder-")
        folder = Path(tmp.name)
        t0 = time.perf_counter()
        export_text_encoder(folder, ("fp32", "int8"), st=st)
        print(f"exported in {time.perf_counter() - t0:.1f} s")
    texts = list(PARITY_SENTENCES)
    ref = st.encode(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    short = [t for t in texts if t.strip() and len(t) <= 120]  # instructions as a planner or a user gives them

    figures = {"cpu": cpu_model(), "cpu_isa": cpu_isa(), "threads": 1, "n_sentences": len(texts), "n_latency_sentences": len(short),
               "reps_per_sentence": reps}
    encoders = {}
    for p in ("fp32", "int8"):
        t0 = time.perf_counter()
        enc = encoders[p] = TextEncoder.find(folder, p, threads=1)
        figures[f"load_s_{p}"] = round(time.perf_counter() - t0, 3)
        figures[f"size_mb_{p}"] = round(enc.path.stat().st_size / 1e6, 1)
        got = enc.encode(texts, batch_size=1)  # one instruction per call, as on board
        cos = (got * ref).sum(1)
        figures[f"cosine_min_{p}"] = round(float(cos.min()), 6)
        figures[f"cosine_mean_{p}"] = round(float(cos.mean()), 6)
        figures[f"worst_text_{p}"] = texts[int(cos.argmin())][:60]

    def st_encode(batch):
        return st.encode(batch, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)

    lat = latencies({"fp32": encoders["fp32"].encode, "int8": encoders["int8"].encode, "sentence_transformers": st_encode}, short, reps)
    for k, row in lat.items():
        figures.update({f"{m}_{k}": v for m, v in row.items()})
    for p in ("fp32", "int8"):
        figures[f"speedup_vs_sentence_transformers_{p}"] = round(lat["sentence_transformers"]["median_ms"] / lat[p]["median_ms"], 2)
    if tmp is not None:
        tmp.cleanup()

    # Wall time is the goal; CPU time beside it says what the call costs a free core where other work holds
    # the cores (measured here: two training jobs at nice -5 on both cores, this at nice 19, so every call
    # longer than the scheduler's slice of a niced task waits for the next one).
    goals = {"cosine_min_fp32": ">= 0.999", "median_ms_fp32": "<= 15 ms per new instruction, 1 thread (wall)",
             "cpu_median_ms_fp32": "<= 15 ms CPU per new instruction, 1 thread"}
    met = {"cosine_min_fp32": figures["cosine_min_fp32"] >= 0.999, "median_ms_fp32": figures["median_ms_fp32"] <= 15.0,
           "cpu_median_ms_fp32": figures["cpu_median_ms_fp32"] <= 15.0}
    figures["load_avg_1min"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    write_result("text_encoder", figures, goals, met)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
