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
    corpus: str = ""  # which corpus the row came from, in a combined manifest (data.corpus_weights samples by it)


@dataclass
class Speaker:
    speaker: str
    gender: str = ""  # "F" / "M" as the corpus gives it; empty when unknown
    accent: str = ""
    region: str = ""
    age: str = ""  # years, where the corpus gives it


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


def combine_manifests(paths: list[str | Path], out_dir: str | Path) -> tuple[Path, dict[str, int]]:
    """Several prepared corpora -> out_dir/manifest.csv (paths made relative to out_dir) and speakers.csv.

    Every row keeps its corpus (a manifest written before rows named it takes its folder's name), which
    `data.corpus_weights` samples by. Speaker names must not repeat across corpora. Returns (manifest path,
    {corpus: utterances})."""
    out_dir = Path(out_dir)
    rows, speakers, owner, counts = [], {}, {}, {}
    resolved = [Path(p).resolve() for p in paths]
    for path in {p for p in resolved if resolved.count(p) > 1}:
        raise ValueError(f"{path}: given twice")
    for path in map(Path, paths):
        corpus_rows = read_manifest(path)
        for r in corpus_rows:
            r.corpus = r.corpus or path.parent.name
            if owner.setdefault(r.speaker, r.corpus) != r.corpus:
                raise ValueError(f"{path}: speaker {r.speaker} is also in corpus {owner[r.speaker]}")
            counts[r.corpus] = counts.get(r.corpus, 0) + 1
        rows += corpus_rows
        speakers.update(read_speakers(path.parent / "speakers.csv"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for r in rows:
        r.path = os.path.relpath(r.path, out_dir)
    write_manifest(out_dir / "manifest.csv", rows)
    write_speakers(out_dir / "speakers.csv", [speakers.get(s, Speaker(s)) for s in sorted(owner)])
    return out_dir / "manifest.csv", counts
