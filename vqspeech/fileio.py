"""Atomic file writes: the one place that makes a temporary file beside a target and renames it over.

    with atomic_path(out) as tmp:       # write anything that takes a path (soundfile, torch.save, flite)
        torch.save(state, tmp)
    with atomic_open(out) as f:         # text
        f.write(...)

A crash or Ctrl-C at any moment leaves the old file or the whole new one, never half of one, and no
temporary file behind (short of a kill -9). The new file gets the permissions a plainly created one
would (0o666 less the umask), not tempfile.mkstemp's owner-only 0o600.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


def refuse_existing(path: Path, overwrite: bool) -> None:
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: exists (use --force to overwrite)")


@contextlib.contextmanager
def temp_path(beside: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A new empty file in `beside`'s folder (created if missing), removed on leaving the block.

    Same folder, so same file system, so os.replace onto `beside` is atomic. Hidden (leading dot)
    and named after `beside`, so a leftover is easy to trace."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = beside.parent / f".{beside.name}.{secrets.token_hex(4)}{suffix}"
        try:
            # mode 0o666 through os.open lets the kernel apply the umask (and any default ACL) exactly
            # as for open(path, "w"); O_EXCL makes the name ours alone, as mkstemp would.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"{beside.parent}: no free temporary file name")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    overwrite=False refuses an existing `path` with FileExistsError, both before the block (no work
    wasted) and just before the rename (it may have appeared meanwhile)."""
    path = Path(path)
    refuse_existing(path, overwrite)
    with temp_path(path) as tmp:
        yield tmp
        refuse_existing(path, overwrite)
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_open(path: str | Path, overwrite: bool = True, newline: str = "", encoding: str = "utf-8") -> Iterator[TextIO]:
    """A text file for writing that replaces `path` only when the block succeeds (see atomic_path).
    newline="" writes "\\n" as given, which the csv module needs."""
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", newline=newline, encoding=encoding) as f:
        yield f


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files temp_path left in `folder` when a writer was killed mid-write (kill -9, power
    loss): hidden, named `.NAME.<8 hex>.tmp`. Call it where no other writer can be at work (a run starting or
    resuming owns its folder). -> the files removed."""
    import re

    pattern = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
    removed = [p for p in Path(folder).glob(".*.tmp") if pattern.match(p.name) and p.is_file()]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed
