"""Print rows of a manifest as speaker<TAB>utterance<TAB>path, for the recipes' shell loops.

    python recipes/utils/manifest_rows.py MANIFEST --split valid --per-speaker 2 --speakers SF1,SM1
"""

from __future__ import annotations

import argparse
import sys

from vqspeech.data.manifest import SPLITS, read_manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--split", choices=SPLITS, default="valid")
    parser.add_argument("--per-speaker", type=int, default=0, help="the first N of each speaker (by utterance id); 0 = all")
    parser.add_argument("--speakers", default="", help="comma-separated speakers; empty = all")
    args = parser.parse_args()
    try:
        rows = read_manifest(args.manifest, args.split)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"manifest_rows.py: error: {e}")
    wanted = [s for s in args.speakers.split(",") if s]
    missing = set(wanted) - {r.speaker for r in rows}
    if missing:
        sys.exit(f"manifest_rows.py: error: {args.manifest}: no {args.split} utterances of {', '.join(sorted(missing))}")
    taken: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: (r.speaker, r.utterance)):
        if wanted and row.speaker not in wanted:
            continue
        taken[row.speaker] = taken.get(row.speaker, 0) + 1
        if args.per_speaker and taken[row.speaker] > args.per_speaker:
            continue
        print(f"{row.speaker}\t{row.utterance}\t{row.path}")
    if not taken:
        sys.exit(f"manifest_rows.py: error: {args.manifest}: no {args.split} utterances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
