"""Learning per CPU-hour: held-out speech metrics and validation loss of a training run, plotted.

    python bench/learning_curve.py RUN_DIR [RUN_DIR ...] [--out bench/results] [--name vcc-cpu]

Reads RUN_DIR/valid.csv (teacher-forced loss, codebook perplexity) and RUN_DIR/eval.csv (decoded held-out
audio: voicing agreement, STOI, PESQ-WB), both written by the training loop with the CPU-hours spent so far,
and writes NAME-curve.png and NAME-curve.md. Several RUN_DIRs are a chain: each run started from the previous
one's last checkpoint (e.g. `train-parallel --base-model` on a parallel checkpoint, to fine-tune), so its steps
and CPU-hours are counted on from where the previous one ended.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--name", default=None)
    args = p.parse_args()
    name = args.name or args.run_dirs[-1].name
    valid, evals = [], []
    for run_dir in args.run_dirs:
        v, e = read(run_dir / "valid.csv"), read(run_dir / "eval.csv")
        if not v:
            raise SystemExit(f"{run_dir}/valid.csv: no validation rows yet")
        step0, hours0 = (valid[-1]["step"], valid[-1]["cpu_hours"]) if valid else (0.0, 0.0)
        valid += [{**r, "step": r["step"] + step0, "cpu_hours": r["cpu_hours"] + hours0} for r in v]
        evals += [{**r, "step": r["step"] + step0, "cpu_hours": r["cpu_hours"] + hours0} for r in e]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = [r["cpu_hours"] for r in valid]
    losses = [k for k in valid[0] if k.split("/")[0] in ("recon", "aux") and all(k in r for r in valid)]  # whatever the objective logs
    for k in losses:
        axes[0].plot(x, [r[k] for r in valid], marker=".", label=f"held-out {k}")
    if "vq/perplexity" in valid[0]:
        ax2 = axes[0].twinx()
        ax2.plot(x, [r["vq/perplexity"] for r in valid], color="gray", ls="--", label="codebook perplexity")
        ax2.legend(loc="center right")
    axes[0].set_xlabel("CPU-hours")
    axes[0].legend(loc="upper right")
    if evals:
        xe = [r["cpu_hours"] for r in evals]
        axes[1].plot(xe, [r["voicing_agreement"] for r in evals], marker="o", label="voicing agreement")
        axes[1].plot(xe, [r["voiced_dec"] for r in evals], marker="o", label="voiced share, decoded")
        axes[1].plot(xe, [r["voiced_ref"] for r in evals], ls=":", label="voiced share, original")
        axes[1].plot(xe, [r["stoi"] for r in evals], marker="s", label="STOI")
        axes[1].set_ylim(0, 1)
        axes[1].legend()
        axes[2].plot(xe, [r["pesq_wb"] for r in evals], marker="o", label="PESQ-WB")
        axes[2].plot(xe, [r["mel_distance"] for r in evals], marker="s", label="log-mel distance")
        axes[2].legend()
    for ax in axes[1:]:
        ax.set_xlabel("CPU-hours")
    fig.suptitle(f"{name}: held-out VCC 2016 sentences against training CPU-hours")
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / f"{name}-curve.png", dpi=90)
    runs = " ".join(str(d) for d in args.run_dirs)
    lines = [f"# Learning curve: {name}", "", f"Runs (a chain, each from the previous one's end): `{runs}`; "
             f"`python bench/learning_curve.py {runs} --name {name}`", "",
             "| step | CPU-hours | " + " | ".join(f"held-out {k}" for k in losses) + " | perplexity | voicing agreement | voiced (dec / orig) | STOI | PESQ-WB |",
             "|---" * (len(losses) + 7) + "|"]
    by_step = {int(r["step"]): r for r in evals}
    for r in valid:
        e = by_step.get(int(r["step"]))
        tail = (f"{e['voicing_agreement']:.2f} | {e['voiced_dec']:.2f} / {e['voiced_ref']:.2f} | {e['stoi']:.3f} | {e['pesq_wb']:.2f}"
                if e else " | | | ")
        loss_cells = " | ".join(f"{r[k]:.3f}" for k in losses)
        perplexity = f"{r['vq/perplexity']:.0f}" if "vq/perplexity" in r else ""
        lines.append(f"| {int(r['step'])} | {r['cpu_hours']:.3f} | {loss_cells} | {perplexity} | {tail} |")
    (args.out / f"{name}-curve.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / (name + '-curve.png')} and .md")


if __name__ == "__main__":
    main()
