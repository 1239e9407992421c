"""Corpus readers: each turns a corpus layout into a list of raw utterances with speaker and split.

All corpora end in the same manifest (see `prepare`), so training never knows which one it got.
Layouts:
    folder   ROOT/<speaker>/*.{wav,flac,...}
    vctk     0.92: ROOT/wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic{1,2}.flac
             0.80: ROOT/wav48/<spk>/<spk>_<nnn>.wav
             both: ROOT/txt/<spk>/<spk>_<nnn>.txt and ROOT/speaker-info.txt where present
    vcc2016  ROOT/<spk>/1000NN.{wav,flac}: 162 parallel sentences per speaker
    speechocean762  ROOT/audio/<spk>/<utt>.flac with speakers.tsv (age, gender) and transcripts.tsv
Splits: "valid" holds out utterances of training speakers, "unseen" holds out whole speakers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from vqspeech.audio import AUDIO_EXTENSIONS
from vqspeech.data.manifest import Speaker

log = logging.getLogger(__name__)


@dataclass
class RawUtterance:
    path: Path
    speaker: str
    utterance: str
    split: str = "train"
    text: str = ""


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _speaker_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def assign_splits(items: list[RawUtterance], valid_per_speaker: int, unseen_speakers=()) -> list[RawUtterance]:
    """Whole `unseen_speakers` -> "unseen"; of every other speaker, the last `valid_per_speaker` utterances
    (by id) -> "valid", always leaving at least one for training; the rest -> "train"."""
    by_speaker: dict[str, list[RawUtterance]] = {}
    for it in items:
        by_speaker.setdefault(it.speaker, []).append(it)
    for spk, its in by_speaker.items():
        its.sort(key=lambda it: it.utterance)
        n_valid = min(valid_per_speaker, len(its) - 1)
        for i, it in enumerate(its):
            if spk in unseen_speakers:
                it.split = "unseen"
            else:
                it.split = "valid" if n_valid > 0 and i >= len(its) - n_valid else "train"
    return items


def folder_per_speaker(root: str | Path, valid_per_speaker: int = 0, unseen_speakers: tuple[str, ...] = ()) -> list[RawUtterance]:
    """ROOT/<speaker>/*.{wav,flac,...}; the last `valid_per_speaker` files of each speaker (sorted by
    name) are held out as validation, and `unseen_speakers` as a whole as unseen speakers."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such corpus folder")
    items = [RawUtterance(f, d.name, f.stem) for d in _speaker_dirs(root) for f in _audio_files(d)]
    if not items:
        raise ValueError(f"{root}: no audio files found in ROOT/<speaker>/ folders")
    return assign_splits(items, valid_per_speaker, unseen_speakers)


# --- VCTK -------------------------------------------------------------------------------------------

# Held out whole for unseen-speaker tests: fixed, so that results are comparable between runs; both
# genders and five accents (English, Scottish, Irish, American, Canadian).
VCTK_UNSEEN = ("p226", "p228", "p234", "p245", "p262", "p273", "p294", "p302")
VCTK_MICS = ("mic1", "mic2")


def read_speaker_info(path: str | Path) -> dict[str, Speaker]:
    """VCTK speaker-info.txt -> {speaker id: Speaker}. Columns ID AGE GENDER ACCENTS REGION [COMMENTS],
    separated by runs of spaces; REGION may itself contain spaces, so everything after ACCENTS is kept
    as the region. 0.80 writes ids without the "p" (225); 0.92 with it (p225): both give "p225"."""
    out = {}
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines:
        cols = line.split()
        if not cols or cols[0].upper() == "ID":
            continue
        spk = f"p{cols[0]}" if cols[0].isdigit() else cols[0]
        out[spk] = Speaker(spk, cols[2] if len(cols) > 2 else "", cols[3] if len(cols) > 3 else "", " ".join(cols[4:]))
    return out


def _vctk_audio_dir(root: Path) -> tuple[Path, str]:
    for sub, version in (("wav48_silence_trimmed", "0.92"), ("wav48", "0.80")):
        if (root / sub).is_dir():
            return root / sub, version
    raise FileNotFoundError(f"{root}: not a VCTK folder (expected wav48_silence_trimmed/ (0.92) or wav48/ (0.80) in it)")


def _vctk_speaker_files(spk_dir: Path, version: str, mic: str) -> dict[str, Path]:
    """{utterance id: audio file} for one speaker; 0.92 keeps one microphone."""
    files = _audio_files(spk_dir)
    if version == "0.80":
        return {f.stem: f for f in files}
    by_mic = {m: {f.stem[: -len(m) - 1]: f for f in files if f.stem.endswith(f"_{m}")} for m in VCTK_MICS}
    if not by_mic[mic]:
        other = next((m for m in VCTK_MICS if by_mic[m]), None)
        if other is None:
            return {}
        # p280 has no mic2 recordings in 0.92: keep the speaker with the other microphone.
        log.warning("%s: no %s recordings; using %s", spk_dir.name, mic, other)
        return by_mic[other]
    return by_mic[mic]


def vctk(root: str | Path, mic: str = "mic1", valid_per_speaker: int = 10, unseen_speakers: tuple[str, ...] = VCTK_UNSEEN) -> list[RawUtterance]:
    """VCTK 0.92 or 0.80 (found by its folders), with transcripts where txt/ has them.

    Audio without a transcript is kept with empty text (p315 has none); transcripts without audio are
    ignored (some p362 files are missing)."""
    root = Path(root)
    if mic not in VCTK_MICS:
        raise ValueError(f"mic {mic!r}: VCTK has {' and '.join(VCTK_MICS)}")
    audio_dir, version = _vctk_audio_dir(root)
    items, no_text = [], 0
    for spk_dir in _speaker_dirs(audio_dir):
        files = _vctk_speaker_files(spk_dir, version, mic)
        if not files:
            log.warning("%s: no audio files; speaker left out", spk_dir)
        for utt, path in sorted(files.items()):
            txt = root / "txt" / spk_dir.name / f"{utt}.txt"
            text = txt.read_text(encoding="utf-8", errors="replace").strip() if txt.exists() else ""
            no_text += not text
            items.append(RawUtterance(path, spk_dir.name, utt, text=" ".join(text.split())))
    if not items:
        raise ValueError(f"{audio_dir}: no audio files found")
    log.info("VCTK %s at %s: %d utterances of %d speakers (%d without transcript)", version, root, len(items),
             len({it.speaker for it in items}), no_text)
    return assign_splits(items, valid_per_speaker, unseen_speakers)


def vctk_speakers(root: str | Path) -> dict[str, Speaker]:
    info = Path(root) / "speaker-info.txt"
    return read_speaker_info(info) if info.exists() else {}


# --- VCC 2016 ---------------------------------------------------------------------------------------

VCC2016_SOURCES = ("SF1", "SF2", "SF3", "SM1", "SM2")
VCC2016_TARGETS = ("TF1", "TF2", "TM1", "TM2", "TM3")


def vcc2016(root: str | Path, valid_sentences: int = 12) -> list[RawUtterance]:
    """VCC 2016 training set: ROOT/<spk>/1000NN.{wav,flac}, 162 parallel sentences per speaker.

    All speakers read the same sentences, so validation holds out the last `valid_sentences` sentence
    ids for every speaker: no validation sentence is ever heard in training, by any voice."""
    items = folder_per_speaker(root)
    for it in items:
        if not it.utterance.isdigit():
            log.warning("%s: not a VCC 2016 sentence file (1000NN.*); left out", it.path)
    items = [it for it in items if it.utterance.isdigit()]
    ids = sorted({it.utterance for it in items})
    held = set(ids[-valid_sentences:]) if valid_sentences else set()
    for it in items:
        it.split = "valid" if it.utterance in held else "train"
    return items


def vcc2016_speakers() -> dict[str, Speaker]:
    """Gender is in the name (SF1 = source female); the speakers are US English."""
    return {spk: Speaker(spk, spk[1], "American") for spk in VCC2016_SOURCES + VCC2016_TARGETS}


# --- speechocean762 ---------------------------------------------------------------------------------

# Held out whole from every training run: the project's own unseen real speakers. Five of each group
# (adult female, adult male, child female, child male; children are under 18), evenly spaced through each
# group's sorted ids, so benchmarks stay comparable between runs.
SPEECHOCEAN_UNSEEN = ("0094", "0104", "0575", "1027", "1156", "1203", "1408", "2007", "2112", "2438", "2917", "3021",
                      "3088", "5195", "6121", "6504", "9070", "9608", "9626", "9633")
SPEECHOCEAN_PREFIX = "so"  # speaker ids are bare numbers: prefixed, they cannot collide with another corpus's
ADULT_AGE = 18


def _read_tsv(path: Path) -> list[dict[str, str]]:
    import csv

    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (a speechocean762 folder has speakers.tsv and transcripts.tsv)")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def speechocean762(root: str | Path, valid_per_speaker: int = 1,
                   unseen_speakers: tuple[str, ...] = SPEECHOCEAN_UNSEEN) -> list[RawUtterance]:
    """speechocean762 (Zhang et al., Interspeech 2021; CC BY 4.0): ROOT/audio/<spk>/<utt>.flac, read English
    by Mandarin-L1 adults and children, with transcripts. Speakers are named so<id>; `unseen_speakers` (bare ids)
    are held out whole, and the last `valid_per_speaker` utterances of every other speaker are validation."""
    root = Path(root)
    if not (root / "audio").is_dir():
        raise FileNotFoundError(f"{root}: not a speechocean762 folder (expected audio/<speaker>/ in it)")
    texts = {r["utterance"]: " ".join(r["text"].split()) for r in _read_tsv(root / "transcripts.tsv")}
    items = [RawUtterance(f, SPEECHOCEAN_PREFIX + d.name, f.stem, text=texts.get(f.stem, ""))
             for d in _speaker_dirs(root / "audio") for f in _audio_files(d)]
    if not items:
        raise ValueError(f"{root / 'audio'}: no audio files found")
    return assign_splits(items, valid_per_speaker, tuple(SPEECHOCEAN_PREFIX + s for s in unseen_speakers))


def speechocean762_speakers(root: str | Path) -> dict[str, Speaker]:
    """Gender (F/M) and age from speakers.tsv; the region field says whether the speaker is an adult or a child."""
    out = {}
    for r in _read_tsv(Path(root) / "speakers.tsv"):
        name = SPEECHOCEAN_PREFIX + r["speaker"]
        group = "adult" if int(r["age"]) >= ADULT_AGE else "child"
        out[name] = Speaker(name, r["gender"].upper(), "Mandarin L1", group, r["age"])
    return out


# --- one entry point for the CLI --------------------------------------------------------------------

CORPORA = ("vctk", "vcc2016", "speechocean762", "folder")


def read_corpus(kind: str, root: str | Path, valid: int | None = None, unseen: tuple[str, ...] | None = None,
                mic: str = "mic1") -> tuple[list[RawUtterance], dict[str, Speaker]]:
    """(utterances with splits, what the corpus says about its speakers) for a corpus `kind`.
    `valid`: held-out utterances per speaker (sentence ids for vcc2016); `unseen`: held-out speakers.
    None keeps each corpus's default."""
    if kind == "vctk":
        kw = {k: v for k, v in (("valid_per_speaker", valid), ("unseen_speakers", unseen)) if v is not None}
        return vctk(root, mic=mic, **kw), vctk_speakers(root)
    if kind == "vcc2016":
        if unseen:
            raise ValueError("vcc2016 has no unseen-speaker split: all ten speakers are needed for its 25 pairs")
        return vcc2016(root, **({} if valid is None else {"valid_sentences": valid})), vcc2016_speakers()
    if kind == "speechocean762":
        kw = {k: v for k, v in (("valid_per_speaker", valid), ("unseen_speakers", unseen)) if v is not None}
        return speechocean762(root, **kw), speechocean762_speakers(root)
    if kind == "folder":
        return folder_per_speaker(root, 10 if valid is None else valid, unseen or ()), {}
    raise ValueError(f"unknown corpus {kind!r}: one of {', '.join(CORPORA)}")
