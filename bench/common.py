"""What the benchmarks share: the machine description for a report, the atomic report write, the held-out
utterances the codec benchmarks score, and the fastest of repeated timings."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from vqspeech.fileio import atomic_open


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
    with atomic_open(path) as f:
        f.write(text)


def held_out_rows(manifest: str | Path, split: str, limit: int) -> list:
    """`limit` utterances of `split`, spread over speakers and sentences (the same ones on every call)."""
    from vqspeech.data.manifest import read_manifest

    rows = sorted(read_manifest(manifest, split), key=lambda r: (r.utterance, r.speaker))  # interleave speakers
    return rows[:: max(1, len(rows) // limit)][:limit]


def best_of(fn, repeats: int = 7) -> float:
    """Fastest wall seconds of fn() over `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
