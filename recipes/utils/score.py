"""Score decoded speech against the originals: voicing agreement, STOI, PESQ, mel distance.

    python recipes/utils/score.py PAIRS.tsv -o SCORES.csv
PAIRS.tsv: speaker<TAB>utterance<TAB>original<TAB>decoded per line. Writes one row per pair and prints
the means.
"""

from __future__ import annotations

import argparse
import csv
import sys

import numpy as np
import torch

from vqspeech import audio
from vqspeech.data.manifest import atomic_open
from vqspeech.eval.metrics import speech_quality


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs")
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with open(args.pairs, encoding="utf-8") as f:
        for line in f:
            speaker, utterance, original, decoded = line.rstrip("\n").split("\t")
            try:
                scores = speech_quality(audio.load(original, normalise_level=False), audio.load(decoded, normalise_level=False))
            except audio.AudioError as e:
                sys.exit(f"score.py: error: {e}")
            rows.append({"speaker": speaker, "utterance": utterance, **{k: round(v, 4) for k, v in scores.items()}})
    if not rows:
        sys.exit(f"score.py: error: {args.pairs}: no pairs to score")
    with atomic_open(args.out) as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    means = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0] if k not in ("speaker", "utterance")}
    print(f"{args.out}: {len(rows)} utterances; mean " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
