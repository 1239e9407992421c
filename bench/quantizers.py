"""The quantizer ablation (#16): each training rule of the seeds on the same data, steps, seed and decoder.

    python bench/quantizers.py --runs ~/vqs/quantizers --manifest data/vcc2016/prepared/manifest.csv \
        --text ../shared/data/text/harvard_sentences.txt --out bench/results --name quantizers

Reads the arms that recipes/vcc2016/quantizers.sh trained (RUNS/<arm>/joint): each arm's last checkpoint encodes
and decodes (parallel decoder, the utterance's own speaker) the same `--utterances` held-out VCC 2016 sentences,
whole; PESQ-WB and STOI per sentence, and each arm's paired difference to the first arm (the default) with its
spread. On the same sentences: codebook use and perplexity, and the codes' bits per code under unigram and bigram
tables fitted on `--fit-utterances` training sentences (a prior's floor: training a prior per arm is left out).
What the codes learned (bench/codes.py's measures, on flite speech with exact phone timings): code -> phone
accuracy, and the speaker named from the codes. CPU-hours from each run's own log.

Writes NAME.md and NAME.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.codes import VOICES, code_phone_scores, flite_codes, real_voices  # noqa: E402
from bench.common import held_out_rows, machine_note, write_atomic  # noqa: E402
from bench.prior import table_bits  # noqa: E402
from vqspeech import audio, checkpoint  # noqa: E402
from vqspeech.eval import metrics  # noqa: E402

RULES = {"ema": "nearest code, EMA codebook (the default)", "codebook-loss": "nearest code, the paper's codebook loss",
         "soft-em": "Monte-Carlo soft EM (Roy et al. 2018)", "gumbel": "Gumbel-softmax relaxation (DALL-E's dVAE)",
         "two-rate": "two rates (VQ-VAE-2): K=128 bottom + K=256 top, EMA", "k128": "nearest code, EMA, K=128"}


def last_row(path: Path) -> dict:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for k, v in rows[-1].items()}


def phones(model, text: str, sentences: int) -> dict:
    """bench/codes.py's code -> phone accuracy on flite speech (the map fitted on the first half of the sentences)."""
    lines = [s.strip() for s in Path(text).read_text().splitlines() if s.strip()][:sentences]
    utts = flite_codes(model, lines, VOICES)
    half = len(lines) // 2
    fit = [(u[2], u[3]) for u in utts if u[1] < half]
    scores = code_phone_scores(fit, [(u[2], u[3]) for u in utts if u[1] >= half])[0]
    return {"phone_accuracy": scores["accuracy"], "phone_accuracy_without_pauses": scores["accuracy_speech"],
            "majority_baseline": scores["majority"], "phones": scores["phones"]}


def score_arm(arm: str, run: Path, rows: list, fit_rows: list, args) -> dict:
    path = checkpoint.latest_checkpoint(run)
    model = checkpoint.load_model(path)
    c = model.config
    K = c.quantizer.codebook_size
    quality, codes_held, codes_fit, top_held, top_fit = [], [], [], [], []
    for i, row in enumerate(rows):
        wav = audio.load(row.path, c.sample_rate)
        encoded = model.encode(wav)
        codes_held.append(encoded.codes.numpy())
        if encoded.top is not None:
            top_held.append(encoded.top.numpy())
        out = model.decode(encoded, row.speaker, decoder="parallel", generator=torch.Generator().manual_seed(i))
        quality.append(metrics.speech_quality(wav, metrics.align(wav, out[: len(wav)])))
    for row in fit_rows:
        encoded = model.encode(audio.load(row.path, c.sample_rate))
        codes_fit.append(encoded.codes.numpy())
        if encoded.top is not None:
            top_fit.append(encoded.top.numpy())
    uni, bi = table_bits(codes_fit, codes_held, K)
    # Bits a second of codes: nominal (ceil(log2 K) a code) and under the bigram tables, both levels counted.
    rate, K_top = c.sample_rate / c.hop, c.quantizer.top_codebook_size
    nominal, bigram_bps = rate * np.ceil(np.log2(K)), rate * bi
    top = {}
    if K_top:
        top_uni, top_bi = table_bits(top_fit, top_held, K_top)
        top_counts = np.bincount(np.concatenate(top_held), minlength=K_top)
        top = {"top_codebook_size": K_top, "top_codes_used": float((top_counts > 0).mean()), "top_unigram_bits": top_uni,
               "top_bigram_bits": top_bi}
        nominal += rate / c.pitch_frames * np.ceil(np.log2(K_top))
        bigram_bps += rate / c.pitch_frames * top_bi
    counts = np.bincount(np.concatenate(codes_held), minlength=K)
    p = counts / counts.sum()

    def histogram(codes):
        h = np.bincount(codes, minlength=K).astype(float)
        return h / np.linalg.norm(h)

    valid, log = last_row(run / "valid.csv"), last_row(run / "eval.csv")
    return {
        "arm": arm, "rule": RULES.get(arm, arm), "checkpoint": str(path), "step": int(valid["step"]), "codebook_size": K,
        "cpu_hours": valid["cpu_hours"],
        "pesq_wb": [q["pesq_wb"] for q in quality], "stoi": [q["stoi"] for q in quality],
        "voicing_agreement": float(np.mean([q["voicing_agreement"] for q in quality])),
        "codes_used": float((counts > 0).mean()), "perplexity": float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum())),
        "unigram_bits": uni, "bigram_bits": bi, "code_bps": float(nominal), "code_bps_bigram": float(bigram_bps), **top,
        "valid_mrstft": valid.get("recon/mrstft"), "training_eval_pesq_wb": log.get("pesq_wb"),
        "voice_from_codes": real_voices(model, args.manifest, args.per_speaker, histogram),
        **phones(model, args.text, args.sentences),
    }


def paired(a: list[float], b: list[float]) -> str:
    d = np.asarray(b) - np.asarray(a)
    return f"{d.mean():+.3f} ± {1.96 * d.std(ddof=1) / np.sqrt(len(d)):.3f}"


def report(args, results: list[dict], elapsed: float) -> None:
    base = results[0]
    sizes = ", ".join(f"{r['arm']} {r['codebook_size']}" for r in results)
    lines = [
        "# Quantizers: the seeds' training rules on one budget, through one decoder",
        "",
        f"Arms trained by `recipes/vcc2016/quantizers.sh` (VCC 2016; conf/cpu.yaml's model, one step of VQ-VAE "
        f"training to k-means-initialise the codebook, then codes and parallel decoder trained jointly by "
        f"conf/ablations/quantizer-arm.yaml, seed 0; one CPU thread each). Scored on {len(base['pesq_wb'])} held-out "
        f"sentences, whole, decoded in their own speaker's voice; bench run {elapsed / 60:.1f} min. {machine_note()}",
        f"Command: `python bench/quantizers.py {' '.join(sys.argv[1:])}`",
        "",
        f"| arm | training rule | step | CPU-hours | PESQ-WB | STOI | PESQ-WB vs {base['arm']} | STOI vs {base['arm']} "
        "| voicing agreement | codes used | perplexity | bits/code unigram | bits/code bigram | codes bit/s: nominal, bigram |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        vs = "" if r is base else f"{paired(base['pesq_wb'], r['pesq_wb'])} | {paired(base['stoi'], r['stoi'])}"
        vs = vs or "- | -"
        lines.append(f"| {r['arm']} | {r['rule']} | {r['step']} | {r['cpu_hours']:.2f} | {np.mean(r['pesq_wb']):.3f} | "
                     f"{np.mean(r['stoi']):.3f} | {vs} | {r['voicing_agreement']:.3f} | {r['codes_used']:.2f} | "
                     f"{r['perplexity']:.0f} | {r['unigram_bits']:.2f} | {r['bigram_bits']:.2f} | "
                     f"{r.get('code_bps', float('nan')):.0f}, {r.get('code_bps_bigram', float('nan')):.0f} |")
    lines += [
        "",
        "Paired differences: mean over the same sentences ± 1.96 standard errors. Codes used and perplexity: over the "
        f"held-out sentences' codes (each arm's own codebook: {sizes}). Bits per code: held-out codes under unigram "
        f"and bigram tables fitted on {args.fit_utterances} training sentences' codes of the same arm (the bottom codes of "
        "two-rate arms). Bits a second count both levels: nominal (ceil(log2 K) per code) and under the bigram tables.",
        *[f"- {r['arm']}'s top codes (K={r['top_codebook_size']}, one per pitch frame): {r['top_codes_used']:.0%} of the "
          f"codebook used, {r['top_unigram_bits']:.2f} / {r['top_bigram_bits']:.2f} bits per top code under unigram / "
          "bigram tables." for r in results if r.get("top_codebook_size")],
        "",
        "## What the codes learned",
        "",
        f"| arm | phone accuracy | without pauses | majority phone | VCC speaker named from the codes (chance "
        f"{base['voice_from_codes']['chance']:.0%}) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['arm']} | {r['phone_accuracy']:.1%} | {r['phone_accuracy_without_pauses']:.1%} | "
                     f"{r['majority_baseline']:.1%} | {r['voice_from_codes']['accuracy']:.0%} |")
    lines += ["", f"Phones: flite voices {', '.join(VOICES)} read {args.sentences} Harvard sentences; the code -> phone "
              "map fitted on the first half, scored on the other half (bench/codes.py). Speaker from the codes: code "
              f"histograms, nearest class mean, {args.per_speaker} training and held-out utterances per VCC speaker."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{args.name}.md", "\n".join(lines) + "\n")
    write_atomic(out / f"{args.name}.json", json.dumps(results, indent=1))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="recipes/vcc2016/quantizers.sh's --run-dir")
    ap.add_argument("--arms", nargs="+", default=list(RULES), help="the first is the one the others are compared with")
    ap.add_argument("--manifest", required=True, help="the prepared VCC 2016 manifest the arms trained on")
    ap.add_argument("--text", required=True, help="sentences for flite (../shared/data/text/harvard_sentences.txt)")
    ap.add_argument("--utterances", type=int, default=30)
    ap.add_argument("--fit-utterances", type=int, default=60)
    ap.add_argument("--sentences", type=int, default=20, help="flite sentences per voice for the phone measure")
    ap.add_argument("--per-speaker", type=int, default=4)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--name", default="quantizers")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    rows = held_out_rows(args.manifest, "valid", args.utterances)
    fit_rows = held_out_rows(args.manifest, "train", args.fit_utterances)
    results = []
    for arm in args.arms:
        run = Path(args.runs) / arm / "joint"
        if not (run / "valid.csv").exists():
            sys.exit(f"{run}: no finished run of arm {arm} (recipes/vcc2016/quantizers.sh trains it)")
        results.append(score_arm(arm, run, rows, fit_rows, args))
        print(f"{arm}: PESQ-WB {np.mean(results[-1]['pesq_wb']):.3f}", file=sys.stderr)
    report(args, results, time.time() - started)


if __name__ == "__main__":
    main()
