"""What the codes learned: phones, and how much of the voice is left in them.

    python bench/codes.py --model vqspeech/pretrained/default.pt --text ../shared/data/text/harvard_sentences.txt \
        --sentences 40 --out bench/results --name codes-default

Phones (the VQ-VAE paper's speech section: each code mapped to its most frequent phone, 49.3 % frame accuracy
against 7.2 % for the majority baseline over 41 phones). Here on flite speech, whose phone timings are exact
(`flite -psdur`): the flite voices read `--sentences` Harvard sentences; every code frame (64 samples) is labelled
with the phone at its centre. The code -> phone map is fitted on the first half of the sentences and scored on
the other half (other words, same voices), against the majority phone of the fitting half and chance (1 / phones).

Voice: a speaker classifier on the codes alone (each utterance as its code histogram, nearest class mean by cosine,
fitted on the fitting half's utterances) names the flite voice of the other half's utterances; chance is
1 / voices. It reads how much of the speaker the codes still carry, which the speaker adversary (train.joint)
works to remove.

Writes NAME.md, NAME.json and NAME-confusion.png (codes grouped by their phone, against the phones).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_note, write_atomic  # noqa: E402
from vqspeech import audio, checkpoint  # noqa: E402

VOICES = ("slt", "awb", "rms", "kal16")


def synthesize(voice: str, text: str, out: Path) -> list[tuple[str, float]]:
    """flite speaks `text` into `out` (16 kHz) -> [(phone, end time in s)] from its -psdur report."""
    done = subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out), "-psdur"], capture_output=True,
                          text=True, check=True)
    pairs = [item.rsplit(":", 1) for item in done.stdout.split() if ":" in item]
    return [(p, float(t)) for p, t in pairs]


def frame_labels(segments: list[tuple[str, float]], n_frames: int, hop: int, rate: int) -> list[str]:
    ends = np.array([t for _, t in segments])
    centres = (np.arange(n_frames) * hop + hop / 2) / rate
    idx = np.minimum(np.searchsorted(ends, centres, side="right"), len(segments) - 1)
    return [segments[i][0] for i in idx]


def flite_codes(model, sentences: list[str], voices) -> list[tuple[str, int, np.ndarray, list[str]]]:
    """Each flite voice reads each sentence -> [(voice, sentence index, the model's codes [F], phone per frame [F])]."""
    c = model.config
    utts = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice in voices:
            for i, text in enumerate(sentences):
                path = Path(tmp) / f"{voice}-{i}.wav"
                segments = synthesize(voice, text, path)
                wav = audio.load(path, c.sample_rate)
                codes = model.encode(wav).codes.numpy()[: len(wav) // c.hop]
                utts.append((voice, i, codes, frame_labels(segments, len(codes), c.hop, c.sample_rate)))
    return utts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--text", required=True)
    ap.add_argument("--sentences", type=int, default=40)
    ap.add_argument("--voices", nargs="+", default=list(VOICES))
    ap.add_argument("--manifest", default=None,
                    help="a prepared manifest of real speakers (e.g. VCC 2016's): also name them from their codes")
    ap.add_argument("--per-speaker", type=int, default=12, help="utterances per speaker and split for --manifest")
    ap.add_argument("--speechocean", default=None,
                    help="speechocean762's folder: also score code -> phone on its held-out speakers' real speech, the "
                         "phones from pocketsphinx's forced alignment of the transcripts")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--name", default="codes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    model = checkpoint.load(args.model)
    c = model.config
    sentences = [s.strip() for s in Path(args.text).read_text().splitlines() if s.strip()][: args.sentences]
    half = len(sentences) // 2
    utts = flite_codes(model, sentences, args.voices)
    fit = [u for u in utts if u[1] < half]
    test = [u for u in utts if u[1] >= half]
    scores, mapping, counts, pairs = code_phone_scores([(u[2], u[3]) for u in fit], [(u[2], u[3]) for u in test])
    phones = sorted({ph for u in fit for ph in u[3]})
    # Voice from the codes: code histograms, nearest class mean by cosine.
    K = c.quantizer.codebook_size

    def histogram(codes):
        h = np.bincount(codes, minlength=K).astype(float)
        return h / np.linalg.norm(h)

    means = {v: np.mean([histogram(u[2]) for u in fit if u[0] == v], 0) for v in args.voices}
    named = [max(means, key=lambda v: float(means[v] @ histogram(u[2]))) == u[0] for u in test]
    voice_accuracy = float(np.mean(named))
    used = len({int(k) for _, _, codes, _ in utts for k in codes})
    real = real_voices(model, args.manifest, args.per_speaker, histogram) if args.manifest else None
    real_phones = speechocean_phones(model, args.speechocean) if args.speechocean else None
    result = dict(phone_accuracy=scores["accuracy"], phone_accuracy_without_pauses=scores["accuracy_speech"],
                  majority_baseline=scores["majority"], majority_phone=scores["majority_phone"], chance=scores["chance"],
                  phones=scores["phones"], codes_used=used,
                  frames_scored=len(pairs), voice_accuracy=voice_accuracy, voice_chance=1 / len(args.voices),
                  utterances_scored=len(test), real_speakers=real, real_phones=real_phones)
    plot_confusion(args, pairs, phones, mapping, counts)
    report(args, model, result, time.time() - started)


def code_phone_scores(fit: list[tuple], test: list[tuple]) -> tuple[dict, dict, dict, list]:
    """fit, test: [(codes [F], phone labels [F])] -> (scores: code -> most frequent phone (fitted on `fit`) scored on
    `test`, against the fitting half's majority phone and chance, also without the silence frames; the map; the fitting
    counts per code; the scored (predicted, true) pairs)."""
    counts: dict[int, Counter] = {}
    for codes, labels in fit:
        for k, ph in zip(codes, labels):
            counts.setdefault(int(k), Counter())[ph] += 1
    mapping = {k: ctr.most_common(1)[0][0] for k, ctr in counts.items()}
    phone_counts = Counter(ph for _, labels in fit for ph in labels)
    majority = phone_counts.most_common(1)[0][0]
    pairs = [(mapping.get(int(k), majority), ph) for codes, labels in test for k, ph in zip(codes, labels)]
    speech = [(p, t) for p, t in pairs if t not in ("pau", "SIL")]
    speech_majority = Counter(t for _, labels in fit for t in labels if t not in ("pau", "SIL")).most_common(1)[0][0]
    scores = {"accuracy": float(np.mean([p == t for p, t in pairs])), "majority": float(np.mean([t == majority for _, t in pairs])),
              "majority_phone": majority, "accuracy_speech": float(np.mean([p == t for p, t in speech])),
              "majority_speech": float(np.mean([t == speech_majority for _, t in speech])), "phones": len(phone_counts),
              "chance": 1 / len(phone_counts), "frames": len(pairs)}
    return scores, mapping, counts, pairs


def speechocean_phones(model, root: str) -> dict:
    """Code -> phone on real speech no training run heard: the 20 held-out speechocean762 speakers (adults and children,
    Mandarin L1), every code frame labelled with the phone pocketsphinx force-aligns at its centre. The map is fitted on
    half of the speakers and scored on the other half (other voices, other sentences)."""
    from vqspeech.data import corpora
    from vqspeech.eval.words import align_phones

    c = model.config
    items = sorted((it for it in corpora.speechocean762(root) if it.split == "unseen"), key=lambda it: it.utterance)
    speakers = sorted({it.speaker for it in items})
    fit_speakers = set(speakers[::2])
    utts, failed = {"fit": [], "test": []}, 0
    for it in items:
        wav = audio.load(it.path, c.sample_rate)
        segments = align_phones(wav, it.text)
        if segments is None:
            failed += 1
            continue
        codes = model.encode(wav).codes.numpy()[: len(wav) // c.hop]
        utts["fit" if it.speaker in fit_speakers else "test"].append((codes, frame_labels(segments, len(codes), c.hop, c.sample_rate)))
    return {**code_phone_scores(utts["fit"], utts["test"])[0], "speakers": len(speakers), "utterances": len(items) - failed,
            "unaligned": failed}


def real_voices(model, manifest: str, per_speaker: int, histogram) -> dict:
    """Real speakers named from their codes: class means of code histograms over `per_speaker` training
    utterances each, scored on as many held-out ("valid") utterances each."""
    from vqspeech.data.manifest import read_manifest

    rows = read_manifest(manifest)
    names = sorted({r.speaker for r in rows if r.split == "valid"})
    hist = {}
    for split in ("train", "valid"):
        for name in names:
            chosen = [r for r in rows if r.speaker == name and r.split == split][:per_speaker]
            hist[split, name] = [histogram(model.encode(audio.load(r.path, model.config.sample_rate)).codes.numpy())
                                 for r in chosen]
    means = {n: np.mean(hist["train", n], 0) for n in names}
    right = [max(means, key=lambda m: float(means[m] @ h)) == n for n in names for h in hist["valid", n]]
    return {"speakers": len(names), "utterances": len(right), "accuracy": float(np.mean(right)), "chance": 1 / len(names)}


def plot_confusion(args, pairs, phones, mapping, counts) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = {p: i for i, p in enumerate(phones)}
    m = np.zeros((len(phones), len(phones)))
    for predicted, true in pairs:
        if predicted in index and true in index:
            m[index[true], index[predicted]] += 1
    m = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.imshow(m, cmap="Greys", vmin=0, vmax=1)
    ax.set_xticks(range(len(phones)), phones, rotation=90, fontsize=7)
    ax.set_yticks(range(len(phones)), phones, fontsize=7)
    ax.set_xlabel("phone of the code (its most frequent phone in the fitting half)")
    ax.set_ylabel("true phone (flite -psdur)")
    ax.set_title(f"{args.name}: code -> phone on held-out sentences (rows sum to 1)")
    fig.tight_layout()
    fig.savefig(Path(args.out) / f"{args.name}-confusion.png", dpi=110)


def report(args, model, r, elapsed) -> None:
    lines = [f"# What the codes learned: `{args.name}`", "",
             f"Model `{args.model or checkpoint.default_model_path()}`; flite voices {', '.join(args.voices)} reading "
             f"{args.sentences} Harvard sentences (the first half fits, the second half is scored: "
             f"{r['utterances_scored']} utterances, {r['frames_scored']} code frames). Run took {elapsed / 60:.1f} min; "
             f"{machine_note()}.",
             f"Command: `python bench/codes.py --model {args.model} --text {args.text} --sentences {args.sentences} "
             + (f"--manifest {args.manifest} --per-speaker {args.per_speaker} " if args.manifest else "")
             + (f"--speechocean {args.speechocean} " if args.speechocean else "")
             + f"--name {args.name}`", "",
             "| measure | vqspeech codes | majority baseline | chance | the paper (VCTK, 41 phones) |",
             "|---|---|---|---|---|",
             f"| frame phone accuracy, code -> its most frequent phone | **{100 * r['phone_accuracy']:.1f} %** | "
             f"{100 * r['majority_baseline']:.1f} % ('{r['majority_phone']}') | {100 * r['chance']:.1f} % ({r['phones']} phones) | "
             "49.3 % against 7.2 % |",
             f"| the same, frames inside pauses left out | {100 * r['phone_accuracy_without_pauses']:.1f} % | | | |",
             f"| speaker named from the codes alone (code histogram) | {100 * r['voice_accuracy']:.0f} % | | "
             f"{100 * r['voice_chance']:.0f} % ({len(args.voices)} voices) | |"]
    if r.get("real_phones"):
        rp = r["real_phones"]
        lines.append(f"| frame phone accuracy on real speech: the {rp['speakers']} held-out speechocean762 speakers "
                     f"(pocketsphinx forced alignment; fitted on half of them, scored on the others: {rp['frames']} frames "
                     f"of {rp['utterances']} utterances, {rp['unaligned']} not aligned) | **{100 * rp['accuracy']:.1f} %** | "
                     f"{100 * rp['majority']:.1f} % ('{rp['majority_phone']}') | {100 * rp['chance']:.1f} % ({rp['phones']} phones) | |")
        lines.append(f"| the same, silence frames left out | {100 * rp['accuracy_speech']:.1f} % | {100 * rp['majority_speech']:.1f} % | | |")
    if r.get("real_speakers"):
        rs = r["real_speakers"]
        lines.append(f"| real speakers named from their codes (`{args.manifest}`: {rs['speakers']} speakers, "
                     f"{rs['utterances']} held-out utterances) | {100 * rs['accuracy']:.0f} % | | {100 * rs['chance']:.0f} % | |")
    lines += ["",
             f"{r['codes_used']} of {model.config.quantizer.codebook_size} codes occur. Confusion matrix: "
             f"`{args.name}-confusion.png`. flite's voices are synthetic and none was in training; phone timings are "
             "flite's own, so the labels are exact for what it said."]
    out = Path(args.out)
    write_atomic(out / f"{args.name}.md", "\n".join(lines) + "\n")
    write_atomic(out / f"{args.name}.json", json.dumps(r, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
