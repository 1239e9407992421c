"""Seams of chunked decoding: does a long file decoded in chunks click where the chunks meet?

    python bench/seams.py --manifest data/vcc2016/manifest.csv [--model M.pt] [--seconds 60] [--chunk 5]
                          [--decoder parallel] [--out bench/results] [--name seams]

Concatenates held-out utterances into one long recording, encodes it once, and decodes it in chunks of
--chunk seconds with the crossfade (decode_stream's default overlap) and without it (overlap 0). A click is a
burst of broadband energy: for each seam, the high-band (4-8 kHz) log-energy of the 8 ms around it, minus the
median of the same measure over the seconds around the seam; compared with the same statistic at random
points that are not seams (the noise floor of this measure). Also how the two decodings differ away from seams.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vqspeech and bench

from bench.common import held_out_rows, machine_note, write_atomic  # noqa: E402
from vqspeech import audio, checkpoint  # noqa: E402
from vqspeech.codec import stream  # noqa: E402

WINDOW = 128  # samples: 8 ms at 16 kHz


def high_band_energy(wav: np.ndarray) -> np.ndarray:
    """log-energy above 4 kHz in hops of WINDOW samples, [len(wav) // WINDOW]."""
    frames = wav[: len(wav) // WINDOW * WINDOW].reshape(-1, WINDOW) * np.hanning(WINDOW)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return np.log(spec[:, WINDOW // 4:].sum(1) + 1e-9)  # bins above fs/4 = 4 kHz


def excess(energy: np.ndarray, samples: list[int], context: int = 60) -> np.ndarray:
    """For each sample position: its frame's high-band log-energy minus the median of the frames within
    `context` frames (about a second) around it."""
    out = []
    for s in samples:
        i = s // WINDOW
        lo, hi = max(0, i - context), min(len(energy), i + context)
        out.append(energy[i] - np.median(energy[lo:hi]))
    return np.array(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model file (default: the shipped one)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--chunk", type=float, default=5.0, help="chunk length in seconds (the codec's default is 20)")
    p.add_argument("--decoder", default=None, help="default: the model's default decoder")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--name", default="seams")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = checkpoint.load(args.model)
    decoder = args.decoder or model.default_decoder
    pieces, total = [], 0
    for row in held_out_rows(args.manifest, "valid", 200):
        wav = audio.load(row.path)
        pieces.append(wav)
        total += len(wav)
        if total >= args.seconds * 16000:
            break
    long = np.concatenate(pieces)
    encoded = model.encode(long)
    results = {}
    for label, overlap in (("crossfade", stream.CROSSFADE_SECONDS), ("no overlap", 0.0)):
        out = np.concatenate(list(stream.decode_stream(model, encoded, model.speaker_names[0], chunk_seconds=args.chunk,
                                                       generator=torch.Generator().manual_seed(0), decoder=decoder,
                                                       overlap_seconds=overlap)))
        results[label] = out
    chunk = round(args.chunk * 16000 / model.config.hop) // model.config.pitch_frames * model.config.pitch_frames * model.config.hop
    seams = list(range(chunk, len(long) - WINDOW, chunk))
    rng = np.random.default_rng(0)
    others = [int(x) for x in rng.integers(WINDOW * 100, len(long) - WINDOW * 100, 400) if min(abs(x - s) for s in seams) > 4000]
    lines = [f"# Chunk seams: {args.name}", "", machine_note(), "",
             f"Command: `python bench/seams.py --manifest {args.manifest} --seconds {args.seconds:g} --chunk {args.chunk:g}"
             f"{' --model ' + args.model if args.model else ''}`", "",
             f"{len(long) / 16000:.1f} s of held-out speech ({len(pieces)} utterances joined), decoder {decoder}, chunks of "
             f"{chunk / 16000:.2f} s: {len(seams)} seams. High-band (4-8 kHz) log-energy of the 8 ms frame at a point, minus "
             "the median over the second around it (nats; a click shows as a large positive value).", "",
             "| decoding | at seams: mean | at seams: max | at other points: mean | other points: 95th percentile |",
             "|---|---|---|---|---|"]
    for label, out in results.items():
        e = high_band_energy(out)
        at, away = excess(e, seams), excess(e, others)
        lines.append(f"| {label} | {at.mean():.2f} | {at.max():.2f} | {away.mean():.2f} | {np.percentile(away, 95):.2f} |")
    away_mask = np.ones(len(long), bool)
    for s in seams:
        away_mask[max(0, s - 8000): s + 8000] = False
    diff = np.abs(results["crossfade"] - results["no overlap"])[away_mask].max()
    lines += ["", f"Away from seams (more than 0.5 s) the two decodings differ by at most {diff:.2e} "
              "(the chunks' own noise draws differ once an overlap shifts them)."]
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
