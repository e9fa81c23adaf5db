"""2 processes (gloo) compute the same gradient as 1 process on the same global batch."""

import socket

import torch
import torch.multiprocessing as mp

from wallwm_edge.train.samples import hash_embedder
from wallwm_edge.train.trainer import TrainConfig, Trainer, unwrap

CFG = TrainConfig(steps=4, batch_size=4, warmup=1, ae_frames=16)


def grads_after_one_backward(trainer):
    batch = trainer.local_batch(*trainer.global_batch())
    assert batch["images"].shape[0] == CFG.batch_size // trainer.world  # each rank really holds its shard
    trainer.model(batch)["loss"].backward()
    g = {n: p.grad.detach().clone() for n, p in unwrap(trainer.model).named_parameters() if p.grad is not None}
    g["__local_rows__"] = batch["proprio"].clone()
    return g


def _worker(rank, world, port, root, out, result):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        tr = Trainer(root, out, CFG, embed=hash_embedder(), progress=False)
        g = grads_after_one_backward(tr)
        if rank == 0:
            torch.save(g, result)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_single_process_gradient(synthetic_dataset, tmp_path):
    result = tmp_path / "ddp_grads.pt"
    mp.start_processes(_worker, args=(2, free_port(), synthetic_dataset, tmp_path / "ddp", result), nprocs=2, join=True, start_method="spawn")
    ddp = torch.load(result)
    single = grads_after_one_backward(Trainer(synthetic_dataset, tmp_path / "one", CFG, embed=hash_embedder(), progress=False))
    assert ddp.keys() == single.keys() and len(single) > 50
    # rank 0 saw rows 0, 2 of the global batch, not the whole of it
    assert torch.equal(ddp.pop("__local_rows__"), single.pop("__local_rows__")[0::2])
    for name in single:
        assert torch.allclose(ddp[name], single[name], rtol=1e-4, atol=1e-6), (name, (ddp[name] - single[name]).abs().max())
