"""Whole-process codec speed, as a user meets it: `vqspeech encode` / `decode` run as commands on one thread, start-up
included, on a long file and on a short one, with codec2 and Opus on the same files in the same run.

    python bench/cli_speed.py --manifest data/vcc2016/prepared/manifest.csv [--model M] [--seconds 410] \
        [--repeats 3] [--out bench/results] [--name cli-speed]

The long file is held-out sentences of the manifest put end to end (about --seconds); the short one its first 1.5 s.
Each command runs --repeats times as a fresh process with OMP_NUM_THREADS=1; the table gives the fastest (the least
disturbed by whatever else runs) and the median. Real-time factor = audio seconds / wall seconds (higher is faster).
vqspeech is timed with the prior (the default coding) and with --no-prior, the speaker recorded as by default
("auto": the nearest training voice, which loads the speaker-embedding model for a vector-voice model) and as
"none"; the start-up rows time the interpreter alone and `import torch`, the floor under every command. Writes NAME.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import held_out_rows, machine_note, write_atomic  # noqa: E402

SR = 16000


def timed(cmd: list[str], repeats: int, env: dict) -> tuple[float, float]:
    """-> (fastest, median) wall seconds of `cmd` as a fresh process; a failure stops the bench with its message."""
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    return min(walls), statistics.median(walls)


def long_recording(manifest: str, seconds: float) -> np.ndarray:
    import librosa

    parts, total = [], 0
    for row in held_out_rows(manifest, "valid", 10_000):
        wav, _ = librosa.load(row.path, sr=SR)
        parts.append(wav)
        total += len(wav)
        if total >= seconds * SR:
            break
    return np.concatenate(parts)[: int(seconds * SR)].astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--model", default=None, help="a model file (default: the shipped one)")
    ap.add_argument("--seconds", type=float, default=410.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--name", default="cli-speed")
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    vqs = [sys.executable, "-m", "vqspeech"]
    model = ["--model", args.model] if args.model else []
    rows = []  # (case, system, seconds of audio, fastest, median)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        long = long_recording(args.manifest, args.seconds)
        for case, wav in (("long", long), ("short", long[: int(1.5 * SR)])):
            seconds = len(wav) / SR
            src = tmp / f"{case}.wav"
            sf.write(src, wav, SR, subtype="PCM_16")
            for label, extra in (("prior, speaker auto", []), ("prior, speaker none", ["--speaker", "none"]),
                                 ("--no-prior, speaker none", ["--speaker", "none", "--no-prior"])):
                vq = tmp / f"{case}.vqs"
                enc = timed([*vqs, "encode", str(src), "-o", str(vq), "--force", "-q", *model, *extra], args.repeats, env)
                dec = timed([*vqs, "decode", str(vq), "-o", str(tmp / f"{case}.out.wav"), "--force", "-q", *model],
                            args.repeats, env)
                rows += [(case, f"vqspeech encode ({label})", seconds, *enc), (case, f"vqspeech decode ({label})", seconds, *dec)]
            if shutil.which("c2enc"):
                raw = tmp / f"{case}.raw"
                raw.write_bytes((np.clip(soxr.resample(wav, SR, 8000), -1, 1) * 32767).astype("<i2").tobytes())
                bits = tmp / f"{case}.bit"
                rows.append((case, "codec2 2400 encode (8 kHz PCM in)", seconds,
                             *timed(["c2enc", "2400", str(raw), str(bits)], args.repeats, env)))
                rows.append((case, "codec2 2400 decode", seconds,
                             *timed(["c2dec", "2400", str(bits), str(tmp / "c2.raw")], args.repeats, env)))
            if shutil.which("opusenc"):
                ogg = tmp / f"{case}.opus"
                rows.append((case, "Opus 6k encode (opusenc)", seconds, *timed(
                    ["opusenc", "--quiet", "--bitrate", "6", "--speech", str(src), str(ogg)], args.repeats, env)))
                rows.append((case, "Opus 6k decode (opusdec)", seconds, *timed(
                    ["opusdec", "--quiet", "--rate", str(SR), str(ogg), str(tmp / "opus.wav")], args.repeats, env)))
    # The floor under any short file: the interpreter, and importing torch (which every vqspeech command does).
    for label, code in (("python -c pass (the interpreter alone)", "pass"), ("python -c 'import torch'", "import torch")):
        rows.append(("start-up", label, 0.0, *timed([sys.executable, "-c", code], args.repeats, env)))
    lines = [
        "# Whole-process codec speed, one thread",
        "",
        f"Model: {args.model or 'the shipped default'}. A {len(long) / SR:.0f} s file of held-out sentences put end to end "
        f"(--seconds {args.seconds:g}, or all the held-out split has), "
        f"and its first 1.5 s; each command a fresh process, {args.repeats} runs, OMP_NUM_THREADS=1. {machine_note()}",
        f"Command: `python bench/cli_speed.py {' '.join(sys.argv[1:])}`",
        "",
        "| file | command | audio s | wall s (fastest / median) | real-time factor (fastest) |",
        "|---|---|---|---|---|",
    ]
    for case, system, seconds, fastest, median in rows:
        factor = f"{seconds / fastest:.1f}x" if seconds else ""
        lines.append(f"| {case} | {system} | {seconds:.1f} | {fastest:.2f} / {median:.2f} | {factor} |")
    lines += ["", "The short file's wall time is almost all start-up (Python, torch, the model, and for speaker auto the "
              "speaker-embedding model); the start-up rows are the part of it no model or code path can remove."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
