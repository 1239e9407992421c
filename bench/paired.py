"""Paired comparison of two bench runs on the same utterances: B minus A, mean ± standard error, and how often B is higher.

    python bench/paired.py bench/results/codec-v4.1-so762-unseen.json /tmp/codec-new.json      # codec.py JSONs
    python bench/paired.py bench/results/vc-unseen-v4.1-80.csv /tmp/vc-unseen-new.csv          # vc_unseen.py / vc.py CSVs

Codec JSONs pair the `--system` rows (default vqspeech-parallel) by utterance; conversion CSVs pair the `--system` rows
(default vqspeech) by source sentence and target. Utterances present in only one run are left out, and said so. Two
runs of different models on the same utterances differ far less from each other than either does from the mean, which
is why the runs are paired: the spread of the difference is what says whether a change is real.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

CODEC_METRICS = ("pesq_wb", "stoi", "voicing_agreement", "speaker_similarity", "id_resemblyzer", "id_mfcc")
VC_METRICS = ("id_resemblyzer", "id_mfcc", "id_target", "mcdid_target", "mcd_target", "words")  # vc_unseen.py; vc.py


def as_number(value) -> float:
    if value in ("True", "False"):
        return float(value == "True")
    return float(value) if value not in ("", None) else math.nan


def load_rows(path: Path, system: str | None) -> tuple[dict[tuple, dict], tuple[str, ...]]:
    """-> ({pairing key: row}, metrics) of one run's rows of `system`."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such file")
    if path.suffix == ".json":
        results = json.loads(path.read_text())
        name = system or "vqspeech-parallel"
        if name not in results:
            raise SystemExit(f"{path}: no system {name!r} (it has {', '.join(results)})")
        return {(r["utterance"],): r for r in results[name]}, CODEC_METRICS
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["system"] == (system or "vqspeech")]
        if not rows:
            raise SystemExit(f"{path}: no rows of system {system or 'vqspeech'!r}")
        return {(r["source"], r["sentence"], r["target"]): r for r in rows}, VC_METRICS
    raise SystemExit(f"{path}: not a bench JSON (codec.py) or CSV (vc.py, vc_unseen.py)")


def paired(a: dict[tuple, dict], b: dict[tuple, dict], metric: str) -> tuple[float, float, int, int] | None:
    """-> (mean of b - a, its standard error, how many b > a, pairs) over the keys both have the metric for."""
    d = [as_number(b[k][metric]) - as_number(a[k][metric]) for k in a.keys() & b.keys()
         if metric in a[k] and metric in b[k]]
    d = [x for x in d if math.isfinite(x)]
    if len(d) < 2:
        return None
    mean = sum(d) / len(d)
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))
    return mean, se, sum(x > 0 for x in d), len(d)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="the run compared against")
    p.add_argument("b", type=Path, help="the run whose gain is measured")
    p.add_argument("--system", help="the system's rows in both (default vqspeech-parallel / vqspeech)")
    p.add_argument("--system-b", help="another system's rows in B (e.g. codec2-2400 of the same run)")
    args = p.parse_args(argv)
    a, metrics = load_rows(args.a, args.system)
    b, _ = load_rows(args.b, args.system_b or args.system)
    only = len(a.keys() ^ b.keys())
    print(f"B = {args.b} minus A = {args.a}: {len(a.keys() & b.keys())} pairs" + (f" ({only} unpaired left out)" if only else ""))
    for metric in metrics:
        result = paired(a, b, metric)
        if result:
            mean, se, wins, n = result
            print(f"  {metric}: {mean:+.4f} ± {se:.4f} (B higher on {wins} of {n})")


if __name__ == "__main__":
    sys.exit(main())
