"""Teacher labels over loopback vs the same teacher in this process: labels per second and the serving overhead.

One teacher checkpoint (the `teacher` preset, 3 views at 64x64, random weights: the forward's cost does not
depend on the values), labelled side by side in one run:
    local    LocalTeacher: teacher_trajectory in this process (what `distill --teacher PATH` does)
    remote   RemoteTeacher: the same batch through `wallwm-edge serve` (a real subprocess on 127.0.0.1) and the
             torch-free client: msgpack encode, WebSocket, the server's batcher and forward, the reply
Both run one torch thread (fair, and light on a shared machine); calls are interleaved (local, remote,
local, ...) so load on the machine hits both alike; medians reported. Overhead = (remote - local) / local;
the server's own forward time (its reply's infer_ms) is reported beside it, so transport + queueing alone
is remote - server forward. The labels themselves are compared (max |remote - local|): same noise, same labels.
Goal (issue 16): serving overhead <= 20 % of the teacher's own forward time at batch 16.

    python benchmarks/serve.py [--quick] [--batch 16] [--reps N] [--steps K]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wallwm_edge.bench import write_result

VIEWS, IMAGE = ("corner", "top", "gripper"), (64, 64)


def make_checkpoint(folder: Path, steps: int) -> Path:
    import torch

    from wallwm_edge.data.synthetic import synthetic_rig
    from wallwm_edge.model.checkpoint import save_model
    from wallwm_edge.model.denoiser import WallWM
    from wallwm_edge.model.presets import resolve

    torch.manual_seed(0)
    cfg = resolve("teacher", views=VIEWS, image_size=IMAGE, action_dim=4, proprio_dim=4, flow_steps=steps)
    return save_model(folder / "model.safetensors", WallWM(cfg), {"step": 0, "rig": synthetic_rig(VIEWS, IMAGE).to_json()})


def label_batch(cfg, B: int, seed: int):
    import torch

    rng = np.random.default_rng(seed)
    batch = {"images": torch.from_numpy(rng.integers(0, 256, (B, cfg.num_views, *cfg.image_size, 3), dtype=np.uint8)),
             "proprio": torch.from_numpy(rng.normal(size=(B, cfg.proprio_dim)).astype(np.float32)),
             "instruction": torch.from_numpy(rng.normal(size=(B, cfg.instruction_dim)).astype(np.float32)),
             "view_mask": torch.ones(B, cfg.view_tokens, cfg.view_tokens, dtype=torch.bool)}
    g = torch.Generator().manual_seed(seed)
    return batch, torch.randn(B, cfg.n_future * cfg.view_tokens, cfg.latent_dim, generator=g), torch.randn(B, cfg.horizon, cfg.action_dim, generator=g)


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description="teacher labels over loopback vs in process")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=None, help="timed calls per side (default 10; --quick 4)")
    ap.add_argument("--steps", type=int, default=10, help="teacher Euler steps K (default 10, the teacher preset's)")
    args = ap.parse_args(argv)
    reps = args.reps or (4 if args.quick else 10)
    torch.set_num_threads(1)

    from wallwm_edge.serve.process import ServerProcess
    from wallwm_edge.train.distill import LocalTeacher, RemoteTeacher

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(Path(tmp), args.steps)
        server = ServerProcess(ckpt, "--batch-window-ms", "2", "--max-batch", str(args.batch))
        try:
            local, remote = LocalTeacher(ckpt), RemoteTeacher(server.url)
            batch, nv, na = label_batch(local.cfg, args.batch, 0)
            K, S = args.steps, 2 if args.steps % 2 == 0 else 1
            want = local.trajectory(batch, nv, na, K, S)  # warm-up both (first-call allocations), and the labels to compare
            got = remote.trajectory(batch, nv, na, K, S)
            label_err = max(float((a - b).abs().max()) for a, b in zip(want, got))
            t_local, t_remote, t_server = [], [], []
            for r in range(reps):
                batch, nv, na = label_batch(local.cfg, args.batch, r + 1)
                t0 = time.perf_counter()
                local.trajectory(batch, nv, na, K, S)
                t_local.append(time.perf_counter() - t0)
                msg = {"images": batch["images"].numpy(), "proprio": batch["proprio"].numpy(), "instruction": batch["instruction"].numpy(),
                       "view_mask": batch["view_mask"].numpy(), "noise_video": nv.numpy(), "noise_action": na.numpy(), "K": K, "S": S}
                t0 = time.perf_counter()
                reply = remote.client.label(msg)  # the RemoteTeacher's call, with the server's timing kept
                torch.from_numpy(reply["traj_action"])
                t_remote.append(time.perf_counter() - t0)
                t_server.append(reply["server_timing"]["infer_ms"] / 1000)
            params = local.params
            remote.close()
        finally:
            server.stop()
    ml, mr, ms = statistics.median(t_local), statistics.median(t_remote), statistics.median(t_server)
    payload_mb = sum(v.nbytes for v in msg.values() if hasattr(v, "nbytes")) / 1e6
    overhead = (mr - ml) / ml
    figures = {
        "teacher": {"preset": "teacher", "params": params, "views": len(VIEWS), "image_size": list(IMAGE), "euler_steps": K, "student_steps": S},
        "batch": args.batch, "reps": reps, "torch_threads": 1,
        "local_forward_s": round(ml, 4), "remote_call_s": round(mr, 4), "server_forward_s": round(ms, 4),
        "labels_per_s_local": round(args.batch / ml, 2), "labels_per_s_remote": round(args.batch / mr, 2),
        "serving_overhead": round(overhead, 4), "transport_and_queue_s": round(mr - ms, 4),
        "request_mb": round(payload_mb, 3), "max_abs_label_difference": label_err,
        "local_all_s": [round(t, 4) for t in t_local], "remote_all_s": [round(t, 4) for t in t_remote],
    }
    goals = {"serving_overhead": "<= 0.20 of the teacher's own forward time (batch 16, loopback)", "labels_equal": "max |remote - local| <= 1e-5"}
    met = {"serving_overhead": overhead <= 0.20, "labels_equal": label_err <= 1e-5}
    write_result("serve", figures, goals, met)
    return 0


if __name__ == "__main__":
    sys.exit(main())
