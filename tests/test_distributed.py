"""DDP on CPU with gloo: two processes on two halves of a batch keep the codebook a single process gets."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqspeech.config import QuantizerConfig
from vqspeech.models.quantizer import VectorQuantizer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(4, 8, 16, generator=g) for _ in range(5)]


def _run(config, z_batches, rank=0, world=1):
    torch.manual_seed(0)  # same initial codebook in every process
    vq = VectorQuantizer(config, dim=8).train()
    for z in z_batches:
        half = z.shape[0] // world
        vq(z[rank * half : (rank + 1) * half])
    return vq.codebook.detach().clone(), vq.cluster_size.clone()


def _worker(rank, world, port, config, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out[rank] = _run(config, _data(), rank, world)
    finally:
        dist.destroy_process_group()


def _spawn(config):
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(2, _free_port(), config, out), nprocs=2, join=True)
    return out[0], out[1]


def test_two_processes_match_one_process():
    config = QuantizerConfig(codebook_size=32, kmeans_init=False, dead_code_threshold=0.0, decay=0.9)
    single_codebook, single_counts = _run(config, _data())
    (cb0, n0), (cb1, n1) = _spawn(config)
    torch.testing.assert_close(cb0, cb1, rtol=0, atol=0)
    torch.testing.assert_close(cb0, single_codebook, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(n0, single_counts)


def test_restarts_and_kmeans_keep_processes_in_sync():
    config = QuantizerConfig(codebook_size=32, kmeans_init=True, dead_code_threshold=0.5, decay=0.5)
    (cb0, _), (cb1, _) = _spawn(config)
    torch.testing.assert_close(cb0, cb1, rtol=0, atol=0)


def test_torchrun_trains_with_two_gloo_processes(manifest, tmp_path):
    """The whole loop under torchrun: DDP wrapper, validation on process 0 alone (no collective may hang),
    generator states gathered into the checkpoint, the unwrapped module saved."""
    import subprocess
    import sys

    from tests.conftest import DEBUG_OVERLAY, REPO
    from vqspeech import checkpoint

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "vqspeech.cli", "train",
           "--config", str(DEBUG_OVERLAY), "--set", f"data.manifest={manifest}", "--set", f"train.run_dir={run}",
           "--set", "train.eval_every=0"]
    result = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = checkpoint.load_checkpoint(run / "checkpoint-6.pt")
    assert len(ckpt["generator"]) == 2 and not torch.equal(ckpt["generator"][0], ckpt["generator"][1])
    assert not any(k.startswith("module.") for k in ckpt["model"])
    checkpoint.load_model(run / "checkpoint-6.pt")
