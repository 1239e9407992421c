"""The manifest: one row per prepared utterance, the only thing training knows about a corpus.

A CSV file with a header: path (relative to the manifest's folder, or absolute), speaker, utterance,
duration (seconds), split (train / valid / unseen), text (may be empty). Beside it, speakers.csv
holds what the corpus says about each speaker (gender, accent, region), where it says anything.
"""

from __future__ import annotations

import csv
import os
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from vqspeech.fileio import atomic_open  # also imported from here by the corpus writers

SPLITS = ("train", "valid", "unseen")


@dataclass
class Utterance:
    path: str
    speaker: str
    utterance: str
    duration: float
    split: str = "train"
    text: str = ""


@dataclass
class Speaker:
    speaker: str
    gender: str = ""  # "F" / "M" as the corpus gives it; empty when unknown
    accent: str = ""
    region: str = ""


def _write_rows(path: str | Path, cls: type, rows: list) -> None:
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(cls)])
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def _read_rows(path: Path, cls: type) -> list[dict]:
    """Rows as dicts; the columns without a default must be there (older files may lack the others)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        required = {f.name for f in fields(cls) if f.default is MISSING}
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: not a {cls.__name__.lower()} table (missing columns {sorted(missing)})")
        return list(reader)


def write_manifest(path: str | Path, rows: list[Utterance]) -> None:
    """Write atomically (temporary file, then rename), so a crash never leaves a broken manifest."""
    _write_rows(path, Utterance, rows)


def read_manifest(path: str | Path, split: str | None = None) -> list[Utterance]:
    """Rows of a manifest (optionally one split), with paths made absolute."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such manifest (run the recipe's prepare stage first)")
    rows = []
    for row in _read_rows(path, Utterance):
        u = Utterance(**{**row, "duration": float(row["duration"])})
        if not os.path.isabs(u.path):
            u.path = str(path.parent / u.path)
        if split is None or u.split == split:
            rows.append(u)
    return rows


def write_speakers(path: str | Path, speakers: list[Speaker]) -> None:
    _write_rows(path, Speaker, speakers)


def read_speakers(path: str | Path) -> dict[str, Speaker]:
    """speakers.csv -> {speaker: Speaker}; an absent file means nothing is known (empty dict)."""
    path = Path(path)
    if not path.exists():
        return {}
    return {row["speaker"]: Speaker(**row) for row in _read_rows(path, Speaker)}
