"""Training throughput in audio samples per second: one training step of the whole VQ-VAE (encoder,
quantizer, conditioning network, WaveNet, mel head: forward, backward, gradient clipping, Adam), the
same step as `vqspeech.train.loop.Trainer.train_step`, on synthetic speech-like batches.

Two model sizes:
    cpu    the dataclass defaults of vqspeech/config.py (the model we train on 2 cores)
    paper  a WaveNet at the size of the published VQ-VAE / WaveNet-autoencoder work: 30 layers (3 cycles
           of dilations 1..512) x 256 residual channels, 512 skip, 256-wide head and conditioning, encoder
           of 768 channels (see bench/README.md for where these come from)
each in fp32 and under bf16 autocast, with 1 and 2 threads. Data loading (pitch extraction, cropping) is
not timed: the batch is built once.

    OMP_NUM_THREADS=2 python bench/train_throughput.py --out bench/results/train_throughput.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vqspeech, not an installed one

from bench.common import machine_note, write_atomic  # noqa: E402
from vqspeech import audio  # noqa: E402
from vqspeech.config import ModelConfig  # noqa: E402
from vqspeech.models.vqvae import VQSpeech  # noqa: E402


def model_config(size: str) -> ModelConfig:
    c = ModelConfig(n_speakers=4)
    if size == "paper":
        c.encoder.channels = 768
        d = c.decoder
        d.layers, d.dilation_cycle = 30, 10
        d.residual_channels, d.skip_channels, d.output_channels, d.cond_channels = 256, 512, 256, 256
    return c


def describe(c: ModelConfig) -> str:
    d = c.decoder
    return (f"decoder {d.layers} layers x {d.residual_channels} residual, skip {d.skip_channels}, head "
            f"{d.output_channels}, cond {d.cond_channels}; encoder {c.encoder.channels} channels")


def synthetic_batch(c: ModelConfig, batch: int, samples: int, seed: int = 0) -> dict:
    """Harmonic tones with a gliding F0 plus noise; pitch symbols random in their range."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / c.sample_rate
    f0 = 100 + 150 * torch.rand(batch, 1, generator=g)
    phase = 2 * math.pi * torch.cumsum(f0 * (1 + 0.1 * torch.sin(2 * math.pi * 2 * t)), -1) / c.sample_rate
    wav = sum(torch.sin(k * phase) / k for k in range(1, 8)) * 0.2 + 0.02 * torch.randn(batch, samples, generator=g)
    return {"wav": wav.float(), "speaker": torch.arange(batch) % c.n_speakers,
            "pitch": torch.randint(0, c.pitch_levels, (batch, samples // c.pitch_hop), generator=g),
            "lf0": torch.tensor([[math.log(150.0), 0.2]] * batch)}


def decoder_only_loss(model: VQSpeech, data: dict) -> dict:
    """The WaveNet alone (cross-entropy on teacher-forced classes; conditioning input precomputed):
    comparable with probes that time only the decoder."""
    c = model.config
    if "cond" not in data:
        with torch.no_grad():
            vq = model.quantizer(model.encoder(data["wav"][:, None]))
            data["cond"] = model.condition(vq.quantized, model.speaker_voice(data["speaker"]), data["pitch"])
            data["exc"] = model.excitation(data["pitch"], data["lf0"])
            data["target"] = audio.mu_law_encode(audio.preemphasis(data["wav"], c.preemphasis), c.mu_law_bits)
            data["prev"] = F.pad(data["target"][:, :-1], (1, 0), value=2 ** (c.mu_law_bits - 1))
    logits = model.decoder(data["prev"], data["cond"], data["exc"])
    return {"recon/ce": F.cross_entropy(logits.float(), data["target"])}


def measure(c: ModelConfig, batch: int, samples: int, bf16: bool, threads: int, steps: int, warmup: int,
            part: str) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = VQSpeech(c).train()
    params = model.decoder.parameters() if part == "decoder" else model.parameters()
    opt = torch.optim.Adam(params, lr=1e-4)
    data = synthetic_batch(c, batch, samples)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if part == "decoder":
                losses = decoder_only_loss(model, data)
            else:
                losses, _ = model(**data)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(warmup):  # k-means init of the codebook happens on the first step; allocator warm-up
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    return {"seconds": s, "samples_per_s": batch * samples / s,
            "params": sum(p.numel() for p in model.parameters())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["cpu", "paper"], choices=["cpu", "paper"])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--batch", type=int, nargs=2, default=[8, 1], metavar=("CPU", "PAPER"),
                   help="crops per batch for the cpu and the paper size")
    p.add_argument("--samples", type=int, default=8192, help="crop length (a multiple of the pitch hop)")
    p.add_argument("--steps", type=int, nargs=2, default=[5, 2], metavar=("CPU", "PAPER"), help="timed steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--parts", nargs="+", default=["full", "decoder"], choices=["full", "decoder"],
                   help="full VQ-VAE step, and/or the WaveNet decoder alone (cpu size only)")
    p.add_argument("--out", type=Path)
    p.add_argument("--append", action="store_true",
                   help="add this run's section to an existing --out report (e.g. sizes measured in separate runs)")
    p.add_argument("--comment", default="")
    args = p.parse_args(argv)
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    note = machine_note()
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ)
    command = f"{env} python bench/train_throughput.py {shlex.join(sys.argv[1:] if argv is None else argv)}".strip()
    rows = []
    for size in args.sizes:
        c = model_config(size)
        i = 0 if size == "cpu" else 1
        for part in args.parts:
            if part == "decoder" and size != "cpu":
                continue
            for threads in args.threads:
                for precision in args.precisions:
                    r = measure(c, args.batch[i], args.samples, precision == "bf16", threads, args.steps[i],
                                args.warmup, part)
                    r.update(size=size, part=part, threads=threads, precision=precision, batch=args.batch[i])
                    rows.append(r)
                    print(f"{size:5s} {part:7s} {precision} threads={threads} batch={args.batch[i]}x{args.samples}: "
                          f"{r['samples_per_s']:,.0f} samples/s ({r['seconds']:.2f} s/step)", flush=True)
    if args.out:
        head = ["# Training throughput", ""]
        if args.append and args.out.exists():
            head = [args.out.read_text().rstrip("\n"), "", "---", ""]
        lines = head + [f"Date: {started}. Machine: {note}.", "",
                 "One step = forward + backward + gradient clipping + Adam on the whole VQ-VAE (encoder, EMA "
                 "quantizer, conditioning net, WaveNet, mel head), as in the training loop; median of the timed "
                 f"steps after {args.warmup} warm-up steps; crops of {args.samples} samples; data loading not timed.", ""]
        for size in args.sizes:
            c = model_config(size)
            n = next(r["params"] for r in rows if r["size"] == size and r["part"] == "full")
            lines.append(f"- **{size}**: {describe(c)}; {n / 1e6:.2f} M parameters.")
        if any(r["part"] == "decoder" for r in rows):
            lines += ["", "Part *decoder*: the WaveNet alone (its forward, cross-entropy, backward, Adam on its weights; "
                      "the conditioning input precomputed), the figure comparable with a decoder-only probe."]
        lines += ["", "| size | part | batch | threads | precision | s / step | samples / s |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['size']} | {r['part']} | {r['batch']} | {r['threads']} | {r['precision']} | {r['seconds']:.2f} | "
                         f"{r['samples_per_s']:,.0f} |")
        lines += ["", "Command:", "", "```", command, "```", ""]
        if args.comment:
            lines += [args.comment, ""]
        write_atomic(args.out, "\n".join(lines))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
