"""The manifest: one row per prepared utterance, the only thing training knows about a corpus.

A CSV file with a header: path (relative to the manifest's folder, or absolute), speaker, utterance,
duration (seconds), split (train / valid / unseen), text (may be empty).
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

SPLITS = ("train", "valid", "unseen")


@dataclass
class Utterance:
    path: str
    speaker: str
    utterance: str
    duration: float
    split: str = "train"
    text: str = ""


def write_manifest(path: str | Path, rows: list[Utterance]) -> None:
    """Write atomically (temporary file, then rename), so a crash never leaves a broken manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(Utterance)])
            writer.writeheader()
            for row in rows:
                writer.writerow(asdict(row))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_manifest(path: str | Path, split: str | None = None) -> list[Utterance]:
    """Rows of a manifest (optionally one split), with paths made absolute."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such manifest (run the recipe's prepare stage first)")
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            u = Utterance(**{**row, "duration": float(row["duration"])})
            if not os.path.isabs(u.path):
                u.path = str(path.parent / u.path)
            if split is None or u.split == split:
                rows.append(u)
    return rows
