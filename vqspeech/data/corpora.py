"""Corpus readers: each turns a corpus layout into a list of raw utterances with speaker and split.

All corpora end in the same manifest (see `prepare`), so training never knows which one it got.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vqspeech.audio import AUDIO_EXTENSIONS


@dataclass
class RawUtterance:
    path: Path
    speaker: str
    utterance: str
    split: str = "train"
    text: str = ""


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def folder_per_speaker(root: str | Path, valid_per_speaker: int = 0, unseen_speakers: tuple[str, ...] = ()) -> list[RawUtterance]:
    """ROOT/<speaker>/*.{wav,flac,...}; the last `valid_per_speaker` files of each speaker (sorted by
    name) are held out as validation, and `unseen_speakers` as a whole as unseen speakers."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such corpus folder")
    items = []
    for spk_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = _audio_files(spk_dir)
        for i, f in enumerate(files):
            if spk_dir.name in unseen_speakers:
                split = "unseen"
            elif i >= len(files) - valid_per_speaker:
                split = "valid"
            else:
                split = "train"
            items.append(RawUtterance(f, spk_dir.name, f.stem, split))
    if not items:
        raise ValueError(f"{root}: no audio files found in ROOT/<speaker>/ folders")
    return items


VCC2016_SOURCES = ("SF1", "SF2", "SF3", "SM1", "SM2")
VCC2016_TARGETS = ("TF1", "TF2", "TM1", "TM2", "TM3")


def vcc2016(root: str | Path, valid_sentences: int = 12) -> list[RawUtterance]:
    """VCC 2016 training set: ROOT/<spk>/1000NN.{wav,flac}, 162 parallel sentences per speaker.

    All speakers read the same sentences, so validation holds out the last `valid_sentences` sentence
    ids for every speaker: no validation sentence is ever heard in training, by any voice."""
    items = folder_per_speaker(root)
    ids = sorted({it.utterance for it in items})
    held = set(ids[-valid_sentences:]) if valid_sentences else set()
    for it in items:
        it.split = "valid" if it.utterance in held else "train"
    return items
