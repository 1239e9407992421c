"""Voice conversion to voices the model never heard: VCC 2016 held-out sentences converted to each held-out
speechocean762 speaker (corpora.SPEECHOCEAN_UNSEEN: 20 speakers, adults and children, both genders, in no
training run), the voice taken from 3 of the target's recordings, judged among the 20 held-out voices.

    python bench/vc_unseen.py --model M.pt --vcc ../shared/data/vcc2016/train \
        --targets-data ../shared/data/speechocean762 [--sources SF1 SM1 ...] [--per-source 2] [--name vc-unseen]

Systems, per (source utterance, target) (`--targets seen`: the same for 20 speechocean762 speakers the model trained
on, group for group like the held-out ones, as a control; plus vqspeech-bank, their training voice, as --to renders it):
  none         the source recording itself
  pitch-shift  the source shifted to the references' median F0 (librosa.effects.pitch_shift)
  vqspeech     conversion.reference_voice(model, references) rendered by the model, the latents not matched
               (`--to-reference --match-k 0`; the CLI's default is vqspeech-cknn4-b0.35 for a vector-voice model)
  vqspeech-knnK  the same, the source's latents first matched to the references' K nearest frames
               (latent_match.LatentMatch; `--match-k K`), for each K of --match-k
  vqspeech-warp  the same with the source's formants first raised or lowered to the references' (vocal tract
               length normalisation: formant_scale, warped; `--warp`), and vqspeech-warp-knnK both
  vqspeech-knnK-bB  kNN matching blended: each latent frame (1 - B) * its own + B * its matches (`--match-blend`)
  vqspeech-cknnK-bB  the same with the neighbours searched after removing the source's and the references' mean
               latents (LatentMatch's source_mean; `--match-search centred`); sknn: the kept share shifted by their difference
  vqspeech-gcknnK-bB  gated: each frame moves B times a weight by how near its matches are (`--match-gate on`)
  vqspeech-twice the unmatched conversion encoded and converted again (`--twice`): its codes come from speech already
               in the target's voice; vqspeech-twice-knnK... match those latents
  vqspeech-flat  the same with the source's intonation flattened (flat; `--flat-pitch`): with
               --unseen-sources, how much of "heard as the source" the intonation carries
  vqspeech-tempo the same with the source slowed or sped, in whole pitch frames, to the references' tempo
               (their mean code run length over the source's; `--tempo`): how much the source's timing holds back;
               with --match-k, vqspeech-tempo-cknnK... both
Judges, each choosing among the 20 held-out voices, enrolled on each target's 5 recordings that are not the
references:
  resemblyzer  nearest centroid of d-vectors: the embedding model the vector-voice decoder is conditioned on, so
               it flatters such a model
  mfcc-lda     vqspeech.eval.speaker_judge: MFCC statistics and shrinkage LDA, no neural embedding at all
Also pocketsphinx word agreement with the source, per group (adult/child x female/male), and the judges'
ceilings on the targets' real reference recordings. Writes NAME.md and NAME.csv into --out.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vqspeech import audio, checkpoint, conversion, latent_match  # noqa: E402
from vqspeech.data import corpora  # noqa: E402
from vqspeech.eval import words  # noqa: E402
from bench.vc_sources import flat, formant_scale, run_length, stretch, warped  # noqa: E402
from bench.vc_voices import N_REFERENCES, SR, HeldOutVoices, seen_lookalikes  # noqa: E402

PREFIX = {"plain": "", "centred": "c", "shifted": "s"}  # latent_match.SEARCHES -> the kNN systems' name prefix
SEARCH = {prefix: search for search, prefix in PREFIX.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--vcc", type=Path, required=True, help="VCC 2016 training set root (the sources' held-out sentences)")
    p.add_argument("--targets-data", type=Path, required=True, help="speechocean762 root (../shared/data/speechocean762)")
    p.add_argument("--sources", nargs="+", default=list(corpora.VCC2016_SOURCES))
    p.add_argument("--per-source", type=int, default=2, help="held-out sentences per source speaker")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--name", default="vc-unseen")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", choices=("unseen", "seen"), default="unseen",
                   help="seen: a control, 20 speechocean762 speakers the model trained on, group for group like the "
                        "held-out ones (seen_lookalikes), converted alike; plus vqspeech-bank, their training voice (--to)")
    p.add_argument("--method", choices=conversion.METHODS, default=None,
                   help="how the voice is found from the references (conversion.reference_voice; default: the model's own)")
    p.add_argument("--adapt-steps", type=int, default=None,
                   help=f"steps of method adapt's fine-tuning (default conversion.ADAPT_STEPS, {conversion.ADAPT_STEPS})")
    p.add_argument("--adapt-lr", type=float, default=None,
                   help=f"step size of method adapt's fine-tuning (default conversion.ADAPT_LR, {conversion.ADAPT_LR:g})")
    p.add_argument("--revoice", type=int, default=None, metavar="N",
                   help="adaptation also reads the references' codes re-voiced in N training voices (default "
                        "conversion.REVOICE_VOICES; 0: their own codes only, as before session 19)")
    p.add_argument("--match-k", type=int, nargs="*", default=[], help="also convert with kNN-matched latents, for each K")
    p.add_argument("--match-blend", type=float, nargs="+", default=[1.0], metavar="B",
                   help="kNN systems, for each B: each latent frame (1 - B) * its own + B * the mean of its matches "
                        "(1, the default: kNN-VC's; other values name the system vqspeech-knnK-bB)")
    p.add_argument("--match-search", nargs="+", choices=latent_match.SEARCHES, default=["plain"],
                   help="kNN systems for each: neighbours searched as they are (vqspeech-knnK-bB), after removing the "
                        "source's and the references' mean latents (cknn), and the kept share shifted by their "
                        "difference too (sknn)")
    p.add_argument("--match-gate", nargs="+", choices=("off", "on"), default=["off"],
                   help="kNN systems for each: every frame moved B of the way (off), or B times a weight by how near "
                        "its matches are (on: LatentMatch gated; the systems vqspeech-g[cs]knnK-bB)")
    p.add_argument("--mean-floor-db", type=float, default=None,
                   help="centred and shifted searches: the mean latents over the frames within this many dB of each "
                        "recording's loudest (speech, not pauses; default latent_match.MEAN_FLOOR_DB)")
    p.add_argument("--twice", action="store_true",
                   help="also convert the unmatched conversion again (vqspeech-twice, and -knnK systems on it)")
    p.add_argument("--flat-pitch", action="store_true", help="also convert with the source's intonation flattened")
    p.add_argument("--tempo", action="store_true",
                   help="also convert with the source slowed or sped to the references' tempo (mean code run length)")
    p.add_argument("--warp", action="store_true",
                   help="also convert with the source's formants warped to the target's (vocal tract length normalisation)")
    p.add_argument("--unseen-sources", nargs="+", default=None, metavar="SPEAKER",
                   help="sources from the held-out speechocean762 speakers instead of VCC 2016: each one's first enrolment "
                        "recording converted to every other held-out voice (same corpus, accent and channels as the targets)")
    args = p.parse_args()
    if args.unseen_sources and args.targets == "seen":
        p.error("--unseen-sources converts held-out speakers to each other: it needs --targets unseen")
    torch.set_num_threads(1)
    conversion.ADAPT_STEPS = args.adapt_steps or conversion.ADAPT_STEPS
    conversion.ADAPT_LR = args.adapt_lr or conversion.ADAPT_LR
    conversion.REVOICE_VOICES = conversion.REVOICE_VOICES if args.revoice is None else args.revoice
    latent_match.MEAN_FLOOR_DB = args.mean_floor_db if args.mean_floor_db is not None else latent_match.MEAN_FLOOR_DB
    t0 = time.perf_counter()
    import librosa

    model = checkpoint.load(args.model)
    voices = HeldOutVoices(args.targets_data, seen_lookalikes(args.targets_data, args.seed) if args.targets == "seen" else None)
    names, groups, refs, judged = voices.names, voices.groups, voices.refs, voices.judged

    ceiling = {t: [judged(w) for w in refs[t]] for t in names}
    sources = []
    if args.unseen_sources:  # the speaker's first recording after its references (it enrols that speaker's judges)
        unknown = sorted(set(args.unseen_sources) - set(names))
        if unknown:
            sys.exit(f"--unseen-sources {' '.join(unknown)}: not held-out speechocean762 speakers ({' '.join(names)})")
        held = sorted((it for it in corpora.speechocean762(args.targets_data) if it.speaker in args.unseen_sources),
                      key=lambda it: it.utterance)
        sources = [[it for it in held if it.speaker == s][N_REFERENCES] for s in args.unseen_sources]
        args.sources = args.unseen_sources
    else:
        vcc = [it for it in corpora.vcc2016(args.vcc) if it.split == "valid" and it.speaker in args.sources]
        for s in args.sources:
            mine = sorted((it for it in vcc if it.speaker == s), key=lambda it: it.utterance)
            sources += mine[:: max(1, len(mine) // args.per_source)][: args.per_source]
    voices = {}
    voice_seconds = []
    for t in names:
        start = time.perf_counter()
        voices[t] = conversion.reference_voice(model, refs[t], method=args.method)
        voice_seconds.append(time.perf_counter() - start)
    ref_encoded = {t: [model.encode(w) for w in refs[t]] for t in names}  # for the resynthesis and the tempo
    scale = {t: formant_scale(refs[t]) for t in names} if args.warp else {}
    tempo = {t: float(np.mean([run_length(e.codes) for e in ref_encoded[t]])) for t in names} if args.tempo else {}

    # What the codec itself keeps of each target: its own reference recordings encoded and decoded in the voice found
    # from them. A conversion keeps less (the source's timing, intonation and accent stay), so this bounds it.
    resynthesis = {t: [judged(conversion.render(model, e, voices[t], generator=torch.Generator().manual_seed(args.seed)))
                       for e in ref_encoded[t]] for t in names}

    rows, matchers = [], {}
    for k, it in enumerate(sources):
        src = audio.load(it.path, SR)
        heard = words.recognise(src)
        encoded = model.encode(src)
        source_f0 = math.exp(conversion.reference_pitch(model, [src])[0])
        source_scale = formant_scale([src]) if args.warp else None
        rendered = {}  # target -> the unmatched conversion, which vqspeech-twice encodes again
        for t in names:
            if t == it.speaker:  # a held-out source is not converted to itself
                continue
            knn = [f"{g}{c}knn{k}" + ("" if b == 1.0 else f"-b{b:g}") for g in ("g" if x == "on" else "" for x in args.match_gate)
                   for c in (PREFIX[x] for x in args.match_search) for k in args.match_k for b in args.match_blend]
            bank = ["vqspeech-bank"] if args.targets == "seen" else []
            for system in ("none", "pitch-shift", "vqspeech", *bank, *(f"vqspeech-{x}" for x in knn),
                           *(f"vqspeech-warp-{x}" for x in (knn if args.warp else [])),
                           *(f"vqspeech-tempo-{x}" for x in (knn if args.tempo else [])),
                           *(["vqspeech-flat"] if args.flat_pitch else []), *(["vqspeech-tempo"] if args.tempo else []),
                           *(["vqspeech-warp"] if args.warp else []),
                           *(f"vqspeech-twice{x}" for x in (["", *(f"-{x}" for x in knn)] if args.twice else []))):
                start = time.perf_counter()
                if system == "none":
                    y = src
                elif system == "pitch-shift":
                    steps = 12 * math.log2(math.exp(voices[t].lf0[0]) / source_f0)
                    y = librosa.effects.pitch_shift(src, sr=SR, n_steps=steps).astype(np.float32)
                elif system == "vqspeech":
                    y = rendered[t] = conversion.render(model, encoded, voices[t], generator=torch.Generator().manual_seed(args.seed))
                elif system == "vqspeech-bank":  # the training voice, as `vqspeech convert --to` renders it
                    y = model.decode(encoded, t, lf0=model.speaker_pitch(t), generator=torch.Generator().manual_seed(args.seed))
                elif system == "vqspeech-tempo":
                    ratio = float(np.clip(tempo[t] / run_length(encoded.codes), 0.6, 1.6))
                    y = conversion.render(model, stretch(encoded, ratio, model.config.pitch_frames), voices[t],
                                       generator=torch.Generator().manual_seed(args.seed))
                elif system == "vqspeech-warp":
                    ratio = float(np.clip(scale[t] / source_scale, 0.8, 1.4))
                    y = conversion.render(model, warped(model, src, encoded, ratio), voices[t],
                                       generator=torch.Generator().manual_seed(args.seed))
                elif system == "vqspeech-twice":
                    y = conversion.render(model, model.encode(rendered[t]), voices[t],
                                          generator=torch.Generator().manual_seed(args.seed))
                elif system == "vqspeech-flat":
                    y = conversion.render(model, flat(encoded, model.config.pitch_levels), voices[t],
                                       generator=torch.Generator().manual_seed(args.seed))
                else:
                    gate, centre, k_nearest, b = re.fullmatch(r"vqspeech-(?:warp-|twice-|tempo-)?(g?)([cs]?)knn(\d+)(?:-b([\d.]+))?",
                                                              system).groups()
                    key = (t, int(k_nearest), float(b or 1.0), SEARCH[centre], gate == "g")
                    if key not in matchers:  # the references' latents, once per target (not in the RTF)
                        seconds_before = time.perf_counter()
                        matchers[key] = latent_match.LatentMatch(model, refs[t], *key[1:])
                        start += time.perf_counter() - seconds_before
                    blended = matchers[key].for_source(
                        model, rendered[t] if system.startswith("vqspeech-twice-") else src)
                    if system.startswith("vqspeech-warp-"):
                        ratio = float(np.clip(scale[t] / source_scale, 0.8, 1.4))
                        matched = warped(model, src, encoded, ratio, latent_map=blended)
                    elif system.startswith("vqspeech-twice-"):
                        matched = model.encode(rendered[t], latent_map=blended)
                    else:
                        matched = model.encode(src, latent_map=blended)
                    if system.startswith("vqspeech-tempo-"):
                        ratio = float(np.clip(tempo[t] / run_length(encoded.codes), 0.6, 1.6))
                        matched = stretch(matched, ratio, model.config.pitch_frames)
                    y = conversion.render(model, matched, voices[t], generator=torch.Generator().manual_seed(args.seed))
                seconds = time.perf_counter() - start
                by_resemblyzer, by_mfcc = judged(y)
                rows.append({"source": it.speaker, "sentence": it.utterance, "target": t, "group": groups[t], "system": system,
                             "id_resemblyzer": by_resemblyzer == t, "id_mfcc": by_mfcc == t,
                             "resemblyzer_said": by_resemblyzer, "mfcc_said": by_mfcc,
                             # The source itself agrees with itself: recognising it again would only cost time.
                             "words": 1.0 if system == "none" else words.agreement(heard, words.recognise(y)),
                             "rtf": seconds / (len(src) / SR)})
        so_far = []
        for system in dict.fromkeys(r["system"] for r in rows if r["system"].startswith("vqspeech")):
            done = [r for r in rows if r["system"] == system]
            so_far.append(f"{system} {np.mean([r['id_resemblyzer'] for r in done]):.0%} / {np.mean([r['id_mfcc'] for r in done]):.0%}"
                          f" / words {np.nanmean([r['words'] for r in done]):.2f}")
        print(f"[{k + 1}/{len(sources)}] {it.speaker}/{it.utterance} so far (resemblyzer / mfcc-lda): {'; '.join(so_far)}", flush=True)
    write_report(args, rows, ceiling, groups, float(np.mean(voice_seconds)), time.perf_counter() - t0, model.config.voice,
                 resynthesis)


def adapt_note() -> str:
    """How method adapt ran, for the report."""
    revoiced = (f", {conversion.REVOICE_SHARE:g} of its crops from the references' codes re-voiced in {conversion.REVOICE_VOICES} "
                "training voices" if conversion.REVOICE_VOICES else ", the references' own codes only")
    return f", {conversion.ADAPT_STEPS} steps at lr {conversion.ADAPT_LR:g}{revoiced}"


def share(rows: list[dict], key: str) -> str:
    return f"{np.mean([r[key] for r in rows]):.0%}" if rows else "-"


def write_report(args, rows, ceiling, groups, voice_seconds, wall, model_voice: str = "vector", resynthesis=None) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"{args.name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    ckpt = torch.load(args.model, map_location="cpu", weights_only=True)
    n_targets = len(ceiling)
    method = args.method or conversion.default_method_name(model_voice)
    systems = list(dict.fromkeys(r["system"] for r in rows))
    converters = [x for x in systems if x.startswith("vqspeech")]
    lines = [
        "# Voice conversion to voices the model never heard" if args.targets == "unseen" else
        "# Voice conversion to voices the model trained on (the control for conversion to voices it never heard)",
        "",
        f"Model `{args.model}` (step {ckpt.get('step')}); sources: {len({(r['source'], r['sentence']) for r in rows})} "
        f"{'recordings of held-out speechocean762 speakers (each converted to the 19 others)' if args.unseen_sources else 'VCC 2016 held-out sentences'} "
        f"({' '.join(args.sources)}); targets: "
        + (f"the {n_targets} held-out speechocean762 speakers (corpora.SPEECHOCEAN_UNSEEN)" if args.targets == "unseen" else
           f"{n_targets} speechocean762 speakers of the training set, as many per group as the held-out ones "
           f"(seen_lookalikes, seed {args.seed}: {' '.join(ceiling)})")
        + f", each from {N_REFERENCES} of its recordings; {len(rows) // len(systems)} conversions per system; "
        f"whole run {wall / 60:.1f} min on one CPU thread.",
        f"Command: `python bench/vc_unseen.py {' '.join(sys.argv[1:])}`",
        "",
        f"Identified as the target among the {n_targets} {'held-out' if args.targets == 'unseen' else 'target'} voices (chance 5 %), by two judges enrolled on each target's "
        f"other {len(next(iter(ceiling.values())))}+ recordings; word agreement: pocketsphinx on the output against its "
        "reading of the source.",
        "",
        "| system | id as target (resemblyzer) | id as target (mfcc-lda) | word agreement | RTF |"
        + (" heard as the source (resemblyzer / mfcc-lda) |" if args.unseen_sources else ""),
        "|---|---|---|---|---|" + ("---|" if args.unseen_sources else ""),
    ]
    for system in systems:
        r = [x for x in rows if x["system"] == system]
        # Held-out sources are among the 20 voices the judges choose from: a conversion can be heard as its source.
        as_source = (f" {np.mean([x['resemblyzer_said'] == x['source'] for x in r]):.0%} / "
                     f"{np.mean([x['mfcc_said'] == x['source'] for x in r]):.0%} |") if args.unseen_sources else ""
        lines.append(f"| {system} | {share(r, 'id_resemblyzer')} | {share(r, 'id_mfcc')} | "
                     f"{np.nanmean([x['words'] for x in r]):.2f} | {np.mean([x['rtf'] for x in r]):.3f} |" + as_source)
    real = [j for t, js in ceiling.items() for j in js]
    lines += [
        "",
        f"Judges' ceiling, on the targets' own reference recordings ({len(real)}): resemblyzer "
        f"{np.mean([j[0] == t for t, js in ceiling.items() for j in js]):.0%}, mfcc-lda "
        f"{np.mean([j[1] == t for t, js in ceiling.items() for j in js]):.0%}.",
    ]
    if resynthesis:
        lines += [
            "",
            f"What the codec keeps of the targets themselves: the same {len(real)} reference recordings encoded and decoded "
            "in the voice found from them, judged alike: resemblyzer "
            f"{np.mean([j[0] == t for t, js in resynthesis.items() for j in js]):.0%}, mfcc-lda "
            f"{np.mean([j[1] == t for t, js in resynthesis.items() for j in js]):.0%}. A conversion keeps the source's timing, "
            "intonation and accent on top of what the codec loses, so this is its practical ceiling with these judges."
            + (" With method adapt these are the very recordings the decoder was adapted to, so this ceiling flatters it."
               if method == "adapt" else ""),
        ]
    if len(converters) > 1:
        lines += ["", "Paired with vqspeech on the same conversions (mean difference ± standard error, in points for the "
                  "judges):", ""]
        base = {(x["source"], x["sentence"], x["target"]): x for x in rows if x["system"] == "vqspeech"}
        for system in converters[1:]:
            mine = [x for x in rows if x["system"] == system]
            parts = []
            for key, scale in (("id_resemblyzer", 100), ("id_mfcc", 100), ("words", 1)):
                d = np.array([scale * (float(x[key]) - float(base[x["source"], x["sentence"], x["target"]][key])) for x in mine])
                d = d[np.isfinite(d)]
                parts.append(f"{key} {d.mean():+.{0 if scale > 1 else 3}f} ± {d.std(ddof=1) / math.sqrt(len(d)):.{1 if scale > 1 else 3}f}")
            lines.append(f"- {system}: " + "; ".join(parts))
    lines += [
        "",
        "Per group of targets:",
        "",
        "| group | system | conversions | id as target (resemblyzer) | id as target (mfcc-lda) | word agreement |",
        "|---|---|---|---|---|---|",
    ]
    for group in sorted(set(groups.values())):
        for system in converters:
            r = [x for x in rows if x["system"] == system and x["group"] == group]
            lines.append(f"| {group} | {system} | {len(r)} | {share(r, 'id_resemblyzer')} | {share(r, 'id_mfcc')} | "
                         f"{np.nanmean([x['words'] for x in r]):.2f} |")
    lines += [
        "",
        "Per source speaker:",
        "",
        "| source | system | id as target (resemblyzer) | id as target (mfcc-lda) |",
        "|---|---|---|---|",
    ]
    for s in args.sources:
        for system in converters:
            r = [x for x in rows if x["system"] == system and x["source"] == s]
            lines.append(f"| {s} | {system} | {share(r, 'id_resemblyzer')} | {share(r, 'id_mfcc')} |")
    lines += [
        "",
        f"- Finding each voice from its references (method {method}{adapt_note() if method == 'adapt' else ''}) took "
        f"{voice_seconds:.2f} s (once per target, not in the RTF).",
        ("- This model (voice=vector) is conditioned on resemblyzer d-vectors: the resemblyzer column grades it with its "
         "own teacher. " if model_voice == "vector" else
         "- This model (voice=table) finds the voice by conversion.reference_voice's method 'fit' (a blend of its table rows), "
         "with no speaker-embedding model: both judges are independent of it. ") +
        "The mfcc-lda judge (vqspeech/eval/speaker_judge.py) shares nothing with resemblyzer; it is channel-sensitive, "
        "so decoded speech starts at a disadvantage with it that real recordings do not have.",
    ]
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print((args.out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
