"""How much the conversion bench's judges hear prosody, and so what a conversion that keeps the source's timing and
intonation can reach with them (issue "any voice": 80 % by both judges).

    python bench/vc_prosody.py --model vqspeech/pretrained/anyvoice.pt --vcc ../shared/data/vcc2016/train \
        --targets-data ../shared/data/speechocean762 --name vc-prosody-v4

The held-out speechocean762 targets' own reference recordings (the first --per-target of the 3 that bench/vc_unseen.py
finds each voice from) are encoded and decoded in their own voice, as in that bench's ceiling, and then again with
one part of their prosody replaced, everything else (codes, voice, the other prosody) kept:
  own        nothing replaced (the codec's ceiling)
  flat       every voiced pitch symbol set to the speaker's mean: no intonation
  foreign    a VCC source sentence's intonation (its voiced pitch symbols, stretched) on the target's voiced frames
  slow       codes and pitch slowed by 1.25 (nearest-frame resampling): another speaking rate
Judged by the same two judges as bench/vc_unseen.py, among the 20 held-out voices. Writes NAME.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine_note, write_atomic  # noqa: E402
from bench.vc_sources import flat  # noqa: E402
from bench.vc_voices import SR, HeldOutVoices  # noqa: E402
from vqspeech import audio, checkpoint, conversion  # noqa: E402
from vqspeech.data import corpora  # noqa: E402
from vqspeech.models.encoding import Encoded  # noqa: E402

VARIANTS = {"own": "nothing replaced: the codec's ceiling", "flat": "intonation flattened to the speaker's mean",
            "foreign": "a VCC sentence's intonation on the target's voiced frames",
            "slow": "codes and pitch slowed by 1.25"}


def foreign(e: Encoded, source_pitch: np.ndarray) -> Encoded:
    pitch = e.pitch.clone()
    voiced = pitch > 0
    contour = source_pitch[source_pitch > 0]
    idx = np.round(np.linspace(0, len(contour) - 1, int(voiced.sum()))).astype(int)
    pitch[voiced] = torch.from_numpy(contour[idx])
    return dataclasses.replace(e, pitch=pitch)


def slow(e: Encoded, pitch_frames: int, hop: int, factor: float = 1.25) -> Encoded:
    n_pitch = int(len(e.pitch) * factor)
    pitch_idx = np.minimum((np.arange(n_pitch) / factor).astype(int), len(e.pitch) - 1)
    code_idx = np.minimum((np.arange(n_pitch * pitch_frames) / factor).astype(int), len(e.codes) - 1)
    return dataclasses.replace(e, codes=e.codes[code_idx], pitch=e.pitch[pitch_idx], n_samples=n_pitch * pitch_frames * hop)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--vcc", type=Path, required=True, help="VCC 2016 training set root (the foreign intonations)")
    p.add_argument("--targets-data", type=Path, required=True, help="speechocean762 root")
    p.add_argument("--per-target", type=int, default=2, help="reference recordings re-rendered per target")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--name", default="vc-prosody")
    args = p.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    model = checkpoint.load(args.model)
    c = model.config
    if not c.pitch:
        sys.exit(f"{args.model}: a model without pitch side information has no intonation to replace")
    voices = HeldOutVoices(args.targets_data)
    vcc = sorted((it for it in corpora.vcc2016(args.vcc) if it.split == "valid" and it.speaker in ("SF1", "SM1")),
                 key=lambda it: (it.utterance, it.speaker))[:4]
    contours = [model.encode(audio.load(it.path, SR)).pitch.numpy() for it in vcc]
    hits = {v: [] for v in VARIANTS}
    for t in voices.names:
        voice = conversion.reference_voice(model, voices.refs[t])
        for k, wav in enumerate(voices.refs[t][: args.per_target]):
            e = model.encode(wav)
            for variant, encoded in (("own", e), ("flat", flat(e, c.pitch_levels)), ("foreign", foreign(e, contours[k % len(contours)])),
                                     ("slow", slow(e, c.pitch_frames, c.hop))):
                y = conversion.render(model, encoded, voice, generator=torch.Generator().manual_seed(0))
                hits[variant].append(tuple(said == t for said in voices.judged(y)))
    n = len(hits["own"])
    lines = ["# What the conversion bench's judges hear of prosody", "",
             f"Model `{args.model}`; the 20 held-out speechocean762 speakers' own reference recordings ({args.per_target} each, "
             f"{n} in all), encoded and decoded in the voice found from their 3 references, with one part of their prosody "
             f"replaced; judged among the 20 voices as in bench/vc_unseen.py (chance 5 %). Run {(time.perf_counter() - started) / 60:.1f} min. "
             f"{machine_note()}", f"Command: `python bench/vc_prosody.py {' '.join(sys.argv[1:])}`", "",
             "| variant | what is replaced | id as target (resemblyzer) | id as target (mfcc-lda) | change (resemblyzer, mfcc-lda) |",
             "|---|---|---|---|---|"]
    own = np.mean(hits["own"], 0)
    for variant, what in VARIANTS.items():
        share = np.mean(hits[variant], 0)
        change = "-" if variant == "own" else f"{100 * (share[0] - own[0]):+.0f}, {100 * (share[1] - own[1]):+.0f} points"
        lines.append(f"| {variant} | {what} | {share[0]:.0%} | {share[1]:.0%} | {change} |")
    lines += ["", f"With {n} renderings a share moves by about ±{100 * 1.96 * np.sqrt(0.25 / n):.0f} points by chance (95 %, at 50 %); "
              "the variants are paired (the same recordings), so their differences are tighter than that.",
              "A conversion keeps the source's intonation and rate: the foreign and slow rows show what that alone costs "
              "with these judges even when the codes and the voice are the target's own."]
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
