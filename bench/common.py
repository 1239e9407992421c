"""What the benchmarks share: the machine description for a report and the atomic report write."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import torch


def machine_note() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    try:
        import numba
        numba_version = numba.__version__
    except ImportError:
        numba_version = "not installed"
    return (f"{cpu}, {os.cpu_count()} logical CPUs, load average before the run "
            f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, numba {numba_version}")


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: a report is either the old one or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
