"""Learning curves of prior runs side by side: held-out bits per code (float model) against steps and CPU-hours.

    python bench/prior_curves.py RUN_DIR=LABEL [RUN_DIR=LABEL ...] --name NAME [--title T] [--out bench/results]

Reads each RUN_DIR/valid.csv (written by `vqspeech train-prior`) and writes NAME.md: one table per run, and a
table with every run's lowest held-out bits per code per set (and the step it came at), so that a run which
overfits is judged at its best, not its last, validation, and a last table of each later run against the first at
the steps both reached (a run stopped early is compared where it stood, not with the other's end). The coder's own
figures (the exact twin) come from bench/prior.py.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

SETS = {"valid-vcc2016": "VCC 2016 held-out", "valid-speechocean762": "speechocean762 held-out", "unseen": "unseen speakers"}


def read_valid(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / "valid.csv"
    if not path.exists():
        raise SystemExit(f"{path}: no such file (not a train-prior run folder?)")
    with open(path) as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    if not rows:
        raise SystemExit(f"{path}: no validation yet (a header only)")
    return rows


def curve_table(rows: list[dict[str, float]]) -> list[str]:
    sets = [s for s in SETS if f"{s}/bits/code" in rows[0]]
    lines = ["| step | CPU-hours | " + " | ".join(SETS[s] for s in sets) + " |", "|---" * (2 + len(sets)) + "|"]
    for r in rows:
        lines.append(f"| {r['step']:.0f} | {r['cpu_hours']:.3f} | " + " | ".join(f"{r[f'{s}/bits/code']:.3f}" for s in sets) + " |")
    return lines


def against_first(runs: list[tuple[Path, str, list[dict[str, float]]]], sets: list[str]) -> list[str]:
    """Each later run's held-out bits minus the first run's, in per cent of the first's, at every step both logged."""
    if len(runs) < 2:
        return []
    first_label, first = runs[0][1], {r["step"]: r for r in runs[0][2]}
    lines = ["", f"## against {first_label}, at the steps both reached (per cent; below 0: fewer bits)", "",
             "| run | step | " + " | ".join(SETS[s] for s in sets) + " |", "|---" * (2 + len(sets)) + "|"]
    key = [f"{s}/bits/code" for s in sets]
    for _, label, rows in runs[1:]:
        for r in rows:
            base = first.get(r["step"])
            if base is not None:
                lines.append(f"| {label} | {r['step']:.0f} | " + " | ".join(f"{100 * (r[k] / base[k] - 1):+.1f}" for k in key) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="RUN_DIR=LABEL")
    ap.add_argument("--name", required=True)
    ap.add_argument("--title", default="Learning curves of prior runs")
    ap.add_argument("--note", default="", help="a paragraph under the title (what the runs share)")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    runs = []
    for spec in args.runs:
        path, _, label = spec.partition("=")
        runs.append((Path(path), label or Path(path).name, read_valid(Path(path))))
    lines = [f"# {args.title}", "", "Held-out bits per code of the float model during training (`RUN_DIR/valid.csv`, "
             "written by `vqspeech train-prior`). Command: `python bench/prior_curves.py "
             + " ".join(f"{p.name}={label!r}" if " " in label else f"{p.name}={label}" for p, label, _ in runs) + "`.", ""]
    if args.note:
        lines += [args.note, ""]
    for path, label, rows in runs:
        lines += [f"## {label} (`{path}`)", ""] + curve_table(rows) + [""]
    sets = [s for s in SETS if all(f"{s}/bits/code" in rows[0] for _, _, rows in runs)]
    lines += ["## lowest held-out bits per code of each run (at step)", "",
              "| run | " + " | ".join(SETS[s] for s in sets) + " | CPU-hours in all |", "|---" * (2 + len(sets)) + "|"]
    for _, label, rows in runs:
        best = [min(rows, key=lambda r, s=s: r[f"{s}/bits/code"]) for s in sets]
        lines.append(f"| {label} | " + " | ".join(f"{b[f'{s}/bits/code']:.3f} ({b['step']:.0f})" for s, b in zip(sets, best))
                     + f" | {rows[-1]['cpu_hours']:.2f} |")
    lines += against_first(runs, sets)
    out = Path(args.out) / f"{args.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print(out)


if __name__ == "__main__":
    main()
