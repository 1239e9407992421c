"""How fast can encoding be on one thread? The encoder's arithmetic against what this core can do.

    python bench/encoder_bound.py [--model default] [--seconds 390] [--out bench/results] [--name encoder-bound]

Counts the multiply-adds of every layer of the model's encoder per second of audio, times each layer on the 2 s
windows encode_stream feeds it (one thread) in the precision Encoder.infer runs it (the strided convolutions in
bfloat16 where the CPU has it natively, vqspeech/precision.py; the rest in float32), and times this core's best case
for the same arithmetic: a large matrix product in that precision (torch.mm, 1024 x 1024 x 1024), which no
convolution beats. With the pitch
tracker's measured cost and the start-up of a fresh `vqspeech encode` process, it gives the fastest whole-process
encode of a --seconds file that this encoder could reach if every layer ran at the matrix product's rate: the
ceiling for issue 11's "encode >= 100x real time" on this machine. Writes NAME.md.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import best_of, machine_note, write_atomic  # noqa: E402
from vqspeech import audio, checkpoint, features  # noqa: E402
from vqspeech.models.encoding import encoder_context  # noqa: E402
from vqspeech.precision import inference_autocast, inference_bf16  # noqa: E402


def matmul_rate(dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a 1024^3 matrix product in `dtype` on this thread: the practical peak."""
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    return 2 * 1024**3 / best_of(lambda: torch.mm(a, b)) / 1e9


def layer_costs(encoder: nn.Module, x: torch.Tensor) -> list[tuple[str, float, float, bool]]:
    """x [1, 1, T] -> [(layer, GFLOP, seconds, in bf16)] for each layer of encoder.net in order (2 FLOP per
    multiply-add), each run as Encoder.infer runs it."""
    rows = []
    with torch.no_grad():
        for i, layer in enumerate(encoder.net):
            low = i < encoder.n_strided and inference_bf16(x.device)
            if i == encoder.n_strided:
                x = x.float()
            context = inference_autocast(x.device) if i < encoder.n_strided else contextlib.nullcontext()
            with context:
                y = layer(x)
            flop = 0.0
            for conv in [m for m in layer.modules() if isinstance(m, nn.Conv1d)]:
                # every conv of a residual block keeps the length; a strided one's output length is y's
                out_len = y.shape[-1]
                flop += 2.0 * conv.out_channels * conv.in_channels * conv.kernel_size[0] * out_len
            with context:
                rows.append((type(layer).__name__, flop / 1e9, best_of(lambda layer=layer, x=x: layer(x)), low))
            x = y
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--seconds", type=float, default=390.0, help="length of the file the whole-process bound is for")
    p.add_argument("--speech", type=Path, default=REPO.parent / "shared/data/vcc2016/train/SF1/100001.flac",
                   help="a recording to time the pitch tracker on (default: a VCC 2016 sentence beside the checkout)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--name", default="encoder-bound")
    args = p.parse_args()
    torch.set_num_threads(1)
    note = machine_note()
    model = checkpoint.load(args.model)
    c = model.config
    window = 2 * c.sample_rate + 2 * encoder_context(model)  # encode_stream's 2 s encoder window with its context
    window = model.pad_length(window)
    x = torch.randn(1, 1, window) * 0.1
    rows = layer_costs(model.encoder.eval(), x)
    audio_s = window / c.sample_rate
    flop_per_s = sum(r[1] for r in rows) / audio_s  # GFLOP per second of audio
    enc_s_per_s = sum(r[2] for r in rows) / audio_s
    peak = matmul_rate()
    low = [r for r in rows if r[3]]
    peak_bf16 = matmul_rate(torch.bfloat16) if low else peak
    wav = audio.load(args.speech, c.sample_rate)
    pitch_s_per_s = best_of(lambda: features.extract_pitch(wav, c.pitch_hop, c.sample_rate), 3) / (len(wav) / c.sample_rate)
    start = time.perf_counter()  # a fresh process that imports the package and loads the model: start-up
    subprocess.run([sys.executable, "-c", f"from vqspeech import checkpoint; checkpoint.load({args.model!r})"],
                   check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, cwd=REPO)
    startup = time.perf_counter() - start
    # encoder seconds per audio second with each layer at the matrix product's rate in its precision
    at_peak = sum(r[1] / (peak_bf16 if r[3] else peak) for r in rows) / audio_s
    bound = args.seconds / (startup + args.seconds * (at_peak + pitch_s_per_s))
    now = args.seconds / (startup + args.seconds * (enc_s_per_s + pitch_s_per_s))
    lines = [
        f"# How fast encoding can be on one thread: `{args.name}`", "",
        f"Model `{args.model}`; {note}. Command: `python bench/encoder_bound.py --model {args.model} --seconds {args.seconds:g}`", "",
        f"Encoder layers on one {audio_s:.2f} s window (encode_stream's 2 s plus context), one thread:", "",
        "| layer | precision | GFLOP per audio second | ms per audio second | GFLOP/s |", "|---|---|---|---|---|",
        *[f"| {i} {name} | {'bf16' if b else 'fp32'} | {g / audio_s:.3f} | {1000 * s / audio_s:.2f} | {g / s:.1f} |"
          for i, (name, g, s, b) in enumerate(rows) if g > 0],
        "", f"- The encoder: **{flop_per_s:.2f} GFLOP per second of audio**, run at {flop_per_s / enc_s_per_s:.0f} GFLOP/s: "
            f"{1 / enc_s_per_s:.0f}x real time for the encoder alone.",
        f"- This core's matrix product: **{peak:.0f} GFLOP/s** in float32"
            + (f", **{peak_bf16:.0f} GFLOP/s** in bfloat16" if low else "")
            + f"; with every layer at that rate in its precision the encoder alone would run {1 / at_peak:.0f}x real time.",
        f"- Pitch tracking (Praat, on `{args.speech.name}`): {1 / pitch_s_per_s:.0f}x real time; start-up of a fresh process "
            f"(import, load the model): {startup:.2f} s.",
        f"- Whole-process encode of a {args.seconds:g} s file: {now:.0f}x real time from these parts as they run now; "
            f"**at most {bound:.0f}x** if every encoder layer ran at the matrix product's rate.", "",
        f"- Time spent by a {args.seconds:g} s encode at that bound: start-up {startup:.2f} s, pitch "
            f"{args.seconds * pitch_s_per_s:.2f} s, encoder {args.seconds * at_peak:.2f} s; 100x real time allows "
            f"{args.seconds / 100:.2f} s in all.", "",
        "Everything but the encoder's arithmetic (audio reading, quantisation, packing) is left out, so both figures "
        "are upper bounds. Above the bound needs less arithmetic (a smaller encoder, hence new codes and a retrained "
        "model) or lower precision than the layers run in now (int8 kernels, whose codes would differ).",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
