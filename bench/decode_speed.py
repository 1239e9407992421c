"""Autoregressive decoding speed of the WaveNet decoder, as a real-time factor, four ways in one run.

    naive       each step runs the parallel `forward` over the receptive field ending at that sample
    reference   the cached ring-buffer loop, one PyTorch op at a time (`generate(method="reference")`)
    torchscript the same cached loop scripted whole with TorchScript (a measured alternative, not shipped)
    fast        the compiled numba kernel (`generate(method="fast")`, vqspeech/models/fast_sampler.py)

Real-time factor = audio seconds produced by all streams / wall seconds (B streams of s seconds count
B * s); "per stream" divides by B. Every method samples from the same uniforms, and the classes each one
produced are checked against the fast kernel's (column "same classes").

The naive method is timed in its steady state, after the first receptive field: its history is the fast
kernel's output, so its cost per step is that of a full window. The slow methods run on prefixes sized to
take about --budget seconds each; their cost per sample does not depend on the length.

    OMP_NUM_THREADS=2 python bench/decode_speed.py --threads 1 2 --batches 1 4 16 --out bench/results/decode_speed.md
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
from typing import List, Optional

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vqspeech, not an installed one

from bench.common import machine_note, write_atomic  # noqa: E402
from vqspeech.config import ModelConfig  # noqa: E402
from vqspeech.models import fast_sampler  # noqa: E402
from vqspeech.models.vqvae import VQSpeech  # noqa: E402


def inputs(model: VQSpeech, batch: int, frames: int, seed: int) -> tuple[Tensor, Optional[Tensor]]:
    """Conditioning and excitation for random codes and a random pitch track: [B, C, F], [B, H, F * hop]."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, c.quantizer.codebook_size, (batch, frames), generator=g)
    pitch = torch.randint(0, c.pitch_levels, (batch, frames // c.pitch_frames), generator=g) if c.pitch else None
    with torch.no_grad():
        cond = model.condition(model.quantizer.lookup(codes), model.speaker_voice(torch.zeros(batch, dtype=torch.long)), pitch)
        exc = model.excitation(pitch, torch.tensor([[math.log(150.0), 0.2]] * batch))
    return cond, exc


@torch.no_grad()
def naive(decoder, cond: Tensor, exc: Optional[Tensor], history: Tensor, u: Tensor, t0: int, steps: int,
          start: int) -> Tensor:
    """Classes for samples t0 .. t0 + steps - 1, each from a parallel forward over its receptive field.

    history [B, T]: the classes of all samples (only those before each t are used). The window is cut on
    frame boundaries (the conditioning is per frame) and is at least one receptive field long, so the
    zero padding of `forward` never reaches the output at t."""
    hop, rf = decoder.hop, decoder.receptive_field
    fed = torch.cat([torch.full_like(history[:, :1], start), history[:, :-1]], 1)  # fed[:, t] = class t - 1
    out = []
    for t in range(t0, t0 + steps):
        f0, f1 = max(0, t - rf + 1) // hop, t // hop + 1
        window = fed[:, f0 * hop: f1 * hop]
        logits = decoder(window, cond[:, :, f0:f1], None if exc is None else exc[:, :, f0 * hop: f1 * hop])
        out.append(fast_sampler.sample_classes(logits[:, :, t - f0 * hop], u[:, t], 1.0))
    return torch.stack(out, 1)


@torch.jit.script
def _script_loop(embed: Tensor, dilated: List[Tensor], res_skip: List[Tensor], res_skip_bias: List[Tensor],
                 out1: Tensor, out1_bias: Tensor, out2: Tensor, out2_bias: Tensor, dilations: List[int], hop: int,
                 cond: Tensor, exc: Optional[Tensor], u: Tensor, start: int) -> Tensor:
    """The cached loop in TorchScript. Weights input-major ([in, out]); cond [F, B, L, 2R], exc [T, B, R]."""
    B, T = u.shape
    R = embed.shape[1]
    buffers = [torch.zeros(B, d, R) for d in dilations]
    prev = torch.full([B], start, dtype=torch.long)
    out = torch.empty(B, T, dtype=torch.long)
    half = math.sqrt(0.5)
    for t in range(T):
        h = embed[prev]
        if exc is not None:
            h = h + exc[t]
        c = cond[t // hop]
        skip = torch.zeros(B, out1.shape[0])
        for i in range(len(dilations)):
            slot = t % dilations[i]
            z = torch.addmm(c[:, i], torch.cat([buffers[i][:, slot], h], 1), dilated[i])
            buffers[i][:, slot] = h
            a = torch.tanh(z[:, :R]) * torch.sigmoid(z[:, R:])
            rs = torch.addmm(res_skip_bias[i], a, res_skip[i])
            h = (h + rs[:, :R]) * half
            skip = skip + rs[:, R:]
        logits = torch.addmm(out2_bias, torch.relu(torch.addmm(out1_bias, torch.relu(skip), out1)), out2)
        z = logits.double()
        cdf = torch.exp(z - z.amax(-1, keepdim=True)).cumsum(-1)
        prev = (cdf <= u[:, t:t + 1] * cdf[:, -1:]).sum(-1).clamp(max=logits.shape[1] - 1)
        out[:, t] = prev
    return out


@torch.no_grad()
def torchscript(decoder, cond: Tensor, exc: Optional[Tensor], u: Tensor, start: int) -> Tensor:
    w = fast_sampler.pack(decoder)
    t = lambda a: torch.from_numpy(a).t().contiguous()  # noqa: E731
    state = decoder.init_state(cond, exc)
    return _script_loop(torch.from_numpy(w.embed), [t(x) for x in w.dilated], [t(x) for x in w.res_skip],
                        list(torch.from_numpy(w.res_skip_bias)), t(w.out1), torch.from_numpy(w.out1_bias),
                        t(w.out2), torch.from_numpy(w.out2_bias), w.dilations.tolist(), decoder.hop,
                        state.cond, state.excitation, u, start)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def agreement(a: Tensor, fast: Tensor, boundary_gap) -> str:
    """Whether a method's classes equal the fast kernel's; at the first difference, how far the sampling
    target u * sum(p) was from a CDF boundary (a float-rounding flip is within ~1e-7)."""
    if torch.equal(a, fast):
        return f"yes ({a.shape[1]})"
    b, t = (a != fast).nonzero()[0].tolist()
    return f"no: stream {b} differs at sample {t} of {a.shape[1]}, target {boundary_gap(b, t):.0e} from a CDF boundary"


@torch.no_grad()
def boundary_gap(decoder, cond: Tensor, exc: Optional[Tensor], fast_out: Tensor, u: Tensor, b: int, t: int,
                 start: int) -> float:
    """Relative distance between u * sum(p) and the nearest cumulative sum of p at sample t of stream b,
    with the logits of the parallel forward fed the fast kernel's history."""
    hop = decoder.hop
    fed = torch.cat([torch.tensor([start]), fast_out[b, :t]])
    n = (t // hop + 1) * hop
    fed = torch.cat([fed, fed.new_zeros(n - fed.shape[0])])[None]
    logits = decoder(fed, cond[b:b + 1, :, :n // hop], None if exc is None else exc[b:b + 1, :, :n])[0, :, t]
    z = logits.double()
    cdf = torch.exp(z - z.max()).cumsum(0)
    return ((cdf - u[b, t] * cdf[-1]).abs().min() / cdf[-1]).item()


def run_case(model: VQSpeech, batch: int, threads: int, args) -> dict:
    torch.set_num_threads(threads)
    dec, hop, sr = model.decoder, model.config.hop, model.config.sample_rate
    start = 2 ** (model.config.mu_law_bits - 1)
    pf = model.config.pitch_frames  # whole pitch frames: the pitch track is one value per pf code frames
    frames = pf * math.ceil(args.seconds * sr / (hop * pf))
    cond, exc = inputs(model, batch, frames, seed=batch)
    u = fast_sampler.draw_uniforms(batch, frames * hop, torch.Generator().manual_seed(batch))
    runs = [timed(lambda: fast_sampler.generate(dec, cond, exc, u, 1.0, start, threads=threads))
            for _ in range(args.repeats)]
    fast_out = runs[0][0]
    fast_s = statistics.median(s for _, s in runs)
    row = {"B": batch, "threads": threads, "fast": batch * frames * hop / sr / fast_s}
    gap = lambda b, t: boundary_gap(dec, cond, exc, fast_out, u, b, t, start)  # noqa: E731

    # The slow methods run on a prefix, same uniforms, sized from a one-frame probe to take about
    # --budget seconds each (at most --ref-seconds / --naive-steps): their cost per sample does not
    # depend on the length, and a fixed length would take minutes where threads contend.
    def frames_for(method) -> int:
        _, probe = timed(lambda: method(dec, cond[:, :, :1], None if exc is None else exc[:, :, :hop], u[:, :hop], start))
        return int(max(1, min(args.ref_seconds * sr / hop, args.budget / probe)))

    for name, method in (("reference", reference), ("torchscript", torchscript)):
        method(dec, cond[:, :, :1], None if exc is None else exc[:, :, :hop], u[:, :hop], start)  # warm-up
        n = frames_for(method) * hop
        seg = cond[:, :, :n // hop], None if exc is None else exc[:, :, :n]
        out, s = timed(lambda: method(dec, *seg, u[:, :n], start))
        row[name], row[name + "_same"] = batch * n / sr / s, agreement(out, fast_out[:, :n], gap)

    t0 = dec.receptive_field
    _, probe = timed(lambda: naive(dec, cond, exc, fast_out, u, t0, 1, start))  # also the warm-up
    steps = int(max(1, min(args.naive_steps, args.budget / probe)))
    naive_out, s = timed(lambda: naive(dec, cond, exc, fast_out, u, t0, steps, start))
    row["naive"] = batch * steps / sr / s
    row["naive_same"] = agreement(naive_out, fast_out[:, t0:t0 + steps], lambda b, t: gap(b, t0 + t))
    return row


@torch.no_grad()
def reference(decoder, cond: Tensor, exc: Optional[Tensor], u: Tensor, start: int) -> Tensor:
    """`VQSpeech.generate(method="reference")`'s loop, with the uniforms given rather than drawn."""
    state = decoder.init_state(cond, exc)
    prev = torch.full((u.shape[0],), start, dtype=torch.long)
    out = torch.empty_like(u, dtype=torch.long)
    for t in range(u.shape[1]):
        prev = fast_sampler.sample_classes(decoder.step(prev, state), u[:, t], 1.0)
        out[:, t] = prev
    return out


def report(model: VQSpeech, rows: list[dict], args, command: str, started: str, note: str) -> str:
    d = model.config.decoder
    lines = [
        f"Date: {started}. Machine: {note}.",
        "",
        f"Model: the CPU config (dataclass defaults: {d.layers} layers x {d.residual_channels} residual, "
        f"skip {d.skip_channels}, head {d.output_channels}, 256 classes, hop 64, 8-harmonic excitation), random "
        f"weights (speed does not depend on them). Real-time factor (RTF) = audio seconds / wall seconds, "
        f"summed over the B streams; fast per stream = RTF / B. Fast: median of {args.repeats} runs of "
        f"{args.seconds} s per stream; reference, TorchScript and naive: each for about {args.budget} s of wall "
        f"time (at most {args.ref_seconds} s of audio / {args.naive_steps} naive steps; the sample counts are in the "
        f"second table), naive in steady state (each a forward over the whole frames covering the receptive field of "
        f"{model.decoder.receptive_field} samples).",
        "",
        "| B | threads | naive | reference | TorchScript | **fast** | fast per stream | fast / naive | fast / reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['B']} | {r['threads']} | {r['naive']:.3g} | {r['reference']:.3g} | {r['torchscript']:.3g} | "
                     f"**{r['fast']:.3g}** | {r['fast'] / r['B']:.3g} | {r['fast'] / r['naive']:,.0f}x | "
                     f"{r['fast'] / r['reference']:,.0f}x |")
    lines += ["", "Same classes as the fast kernel (same uniforms; samples compared per stream). Where a method differs, "
              "the sampling target u * sum(p) at the first difference is given as a distance from the nearest CDF "
              "boundary, relative to sum(p): the logits of the two paths differ by ~1e-7, so a target that close "
              "to a boundary can fall either side (float rounding, after which the streams diverge).", "",
              "| B | threads | naive | reference | TorchScript |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['B']} | {r['threads']} | {r['naive_same']} | {r['reference_same']} | {r['torchscript_same']} |")
    lines += ["", "Command:", "", "```", command, "```", ""]
    if args.comment:
        lines += [args.comment, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--seconds", type=float, default=2.0, help="audio per stream for the fast kernel")
    p.add_argument("--ref-seconds", type=float, default=0.25, help="at most this much audio per stream for reference and TorchScript")
    p.add_argument("--naive-steps", type=int, default=48, help="at most this many naive steps")
    p.add_argument("--budget", type=float, default=6.0, help="about this many seconds for each slow method and case")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, help="markdown report to write (atomically)")
    p.add_argument("--comment", default="", help="a line added to the report (e.g. what else ran on the machine)")
    p.add_argument("--append", action="store_true", help="add this run as a new section of an existing --out report")
    args = p.parse_args(argv)
    if not fast_sampler.available():
        sys.exit("decode_speed: numba is not installed (pip install numba)")
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    note = machine_note()
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ)
    command = f"{env} python bench/decode_speed.py {shlex.join(sys.argv[1:] if argv is None else argv)}".strip()
    torch.manual_seed(0)
    model = VQSpeech(ModelConfig()).eval()
    warm_cond, warm_exc = inputs(model, 1, 4, seed=0)  # compile (or load) the kernel, warm TorchScript
    warm_u = fast_sampler.draw_uniforms(1, 4 * model.config.hop)
    fast_sampler.generate(model.decoder, warm_cond, warm_exc, warm_u)
    for _ in range(2):
        torchscript(model.decoder, warm_cond, warm_exc, warm_u, 128)
    rows = []
    for threads in args.threads:
        for batch in args.batches:
            rows.append(run_case(model, batch, threads, args))
            r = rows[-1]
            print(f"B={batch:2d} threads={threads}: naive {r['naive']:.4f}  reference {r['reference']:.3f}  "
                  f"torchscript {r['torchscript']:.3f}  fast {r['fast']:.2f}x real time "
                  f"(same classes: {r['naive_same']}, {r['reference_same']}, {r['torchscript_same']})", flush=True)
    if args.out:
        head = "# Autoregressive decoding speed\n"
        if args.append and args.out.exists():
            head = args.out.read_text().rstrip("\n") + "\n\n---\n"
        write_atomic(args.out, head + "\n" + report(model, rows, args, command, started, note))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
