"""bfloat16 inference against float32, paired on the same files: what `Encoder.infer` and the parallel decoder's
autocast (vqspeech/precision.py) change in the codes, the bytes and the audio, and what they gain in speed.

    python bench/precision.py --model vqspeech/pretrained/default.pt --manifest data/vcc2016/manifest.csv --split valid
                              [--limit 40] [--seconds 60] [--out bench/results] [--name precision-bf16]

For every utterance: encoded twice (float32 throughout, VQSPEECH_FLOAT32=1; and as `vqspeech encode` does here), each
file decoded in float32, so the encoder's part is measured alone; then the float32 file decoded both ways, for the
decoder's part alone (the same noise: the same seed). Scored as bench/codec.py scores. Speed: the first `--seconds` of
the split put end to end, encoded and decoded in this process, one thread, each way (best of 3). On a CPU without
bfloat16 instructions both ways are float32 and the report says so.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vqspeech and bench

from bench.codec import score  # noqa: E402
from bench.common import best_of, held_out_rows, machine_note, write_atomic  # noqa: E402
from bench.paired import paired  # noqa: E402
from vqspeech import audio, checkpoint  # noqa: E402
from vqspeech.codec import api, bitstream  # noqa: E402
from vqspeech.precision import FLOAT32_ENV, native_bf16  # noqa: E402

METRICS = ("pesq_wb", "stoi", "voicing_agreement", "mel_distance")


def float32(on: bool) -> None:
    os.environ[FLOAT32_ENV] = "1" if on else "0"


def difference(a: list[dict], b: list[dict], key: str) -> str:
    """b minus a on the same files (bench/paired.py's statistic): mean ± standard error (higher on)."""
    mean, se, wins, n = paired(dict(enumerate(a)), dict(enumerate(b)), key)
    return f"{mean:+.4f} ± {se:.4f} (higher on {wins} of {n})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="valid")
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--seconds", type=float, default=60.0, help="audio for the speed rows")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--name", default="precision-bf16")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = checkpoint.load(args.model)
    rows = held_out_rows(args.manifest, args.split, args.limit)
    scores = {"float32": [], "encoder bf16": [], "decoder bf16": []}
    same, sizes = [], {"float32": 0, "encoder bf16": 0}
    for i, row in enumerate(rows):
        ref = audio.load(row.path)
        print(f"[{i + 1}/{len(rows)}] {row.speaker}/{row.utterance}", flush=True)
        float32(True)
        data32 = api.encode_audio(model, ref, speaker=api.AUTO_SPEAKER)
        dec32, _ = api.decode_bytes(model, data32, decoder="parallel", seed=i)
        float32(False)
        data16 = api.encode_audio(model, ref, speaker=api.AUTO_SPEAKER)
        dec16, _ = api.decode_bytes(model, data32, decoder="parallel", seed=i)
        float32(True)
        dec_enc16, _ = api.decode_bytes(model, data16, decoder="parallel", seed=i)
        scores["float32"].append(score(ref, dec32, None))
        scores["encoder bf16"].append(score(ref, dec_enc16, None))
        scores["decoder bf16"].append(score(ref, dec16, None))
        sizes["float32"] += len(data32)
        sizes["encoder bf16"] += len(data16)
        codes32 = np.asarray(api.symbols(model, bitstream.read(data32), None)[0])
        codes16 = np.asarray(api.symbols(model, bitstream.read(data16), None)[0])
        same.append(float(np.mean(codes32 == codes16)))
        snr = 10 * np.log10(np.sum(dec32.astype(np.float64) ** 2) / max(np.sum((dec16 - dec32).astype(np.float64) ** 2), 1e-20))
        scores["decoder bf16"][-1]["snr_db"] = float(snr)

    # Speed on one long stretch of the split, in this process (start-up excluded: bench/cli_speed.py has it).
    long = np.concatenate([audio.load(r.path) for r in held_out_rows(args.manifest, args.split, 10_000)])
    long = long[: int(args.seconds * 16000)]
    seconds = len(long) / 16000
    speed = {}
    for label, on in (("float32", True), ("bf16 where native", False)):
        float32(on)
        data = api.encode_audio(model, long, 16000, prior=False)
        speed[label] = (seconds / best_of(lambda: api.encode_audio(model, long, 16000, prior=False), 3),
                        seconds / best_of(lambda: api.decode_bytes(model, data, decoder="parallel"), 3))
    os.environ.pop(FLOAT32_ENV, None)

    native = native_bf16(torch.device("cpu"))
    mean = lambda rs, k: np.mean([r[k] for r in rs])  # noqa: E731
    lines = [f"# bfloat16 inference against float32: {args.name}", "",
             f"{date.today()}; model `{args.model}`; {len(rows)} utterances of `{args.manifest}` (split {args.split}). "
             f"{machine_note()}. bfloat16 native here: {'yes' if native else 'no (both ways are float32)'}.", "",
             f"Command: `python bench/precision.py --model {args.model} --manifest {args.manifest} --split {args.split} "
             f"--limit {args.limit} --seconds {args.seconds:g} --name {args.name}`", "",
             "## The encoder (`Encoder.infer`: its strided convolutions in bfloat16), each file decoded in float32", "",
             f"- codes the same as float32's: {np.mean(same):.3f} of them (lowest file {min(same):.3f})",
             f"- bytes (range-coded under the prior): {sizes['encoder bf16'] / sizes['float32']:.4f} of float32's", ""]
    lines += ["| metric | float32 | bf16 encoder minus float32 |", "|---|---|---|"]
    lines += [f"| {k} | {mean(scores['float32'], k):.3f} | {difference(scores['float32'], scores['encoder bf16'], k)} |" for k in METRICS]
    snrs = [r["snr_db"] for r in scores["decoder bf16"]]
    lines += ["", "## The parallel decoder (autocast to bfloat16), the same float32-encoded files and noise", "",
              f"- waveform against float32's: SNR median {np.median(snrs):.1f} dB, lowest {min(snrs):.1f} dB", "",
              "| metric | float32 | bf16 decoder minus float32 |", "|---|---|---|"]
    lines += [f"| {k} | {mean(scores['float32'], k):.3f} | {difference(scores['float32'], scores['decoder bf16'], k)} |" for k in METRICS]
    lines += ["", f"## Speed in one process, one thread, {seconds:.0f} s of the split end to end (`--no-prior` coding; best of 3 after a warm-up)", "",
              "| precision | encode (x real time) | decode, parallel (x real time) |", "|---|---|---|"]
    lines += [f"| {label} | {e:.1f} | {d:.1f} |" for label, (e, d) in speed.items()]
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
