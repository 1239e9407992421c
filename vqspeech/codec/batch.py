"""Many files at once, for the command line: files, folders and glob patterns in, outputs planned
beside them or mirrored under a folder, each file's one-line error collected instead of stopping.

    expand_inputs(items, extensions) -> (inputs, failures, several)
    plan_outputs(inputs, output, rename, several) -> (jobs, failures)
    run_batch(jobs, work) -> failures
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path

from vqspeech.audio import AUDIO_EXTENSIONS
from vqspeech.codec.bitstream import VQS_EXTENSION

Failure = tuple[str, str]  # (input as given or found, one-line reason)


def expand_inputs(items: list[str], extensions: tuple[str, ...]) -> tuple[list[tuple[Path, Path]], list[Failure], bool]:
    """Files, folders (searched recursively for `extensions`) and glob patterns -> inputs.

    Returns ([(path, relative path to mirror under an output folder)], failures, whether any item
    could stand for several files (a folder or a pattern))."""
    found: list[tuple[Path, Path]] = []
    failures: list[Failure] = []
    several = False
    for item in items:
        p = Path(item)
        if p.is_dir():
            several = True
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in extensions and not f.name.startswith("."))
            found += [(f, f.relative_to(p)) for f in files]
            if not files:
                failures.append((item, f"{item}: no {'/'.join(extensions)} files in this folder"))
        elif p.exists():
            found.append((p, Path(p.name)))
        elif any(ch in item for ch in "*?["):
            several = True
            files = sorted(Path(f) for f in glob.glob(item, recursive=True) if Path(f).is_file() and Path(f).suffix.lower() in extensions)
            found += [(f, Path(f.name)) for f in files]
            if not files:
                failures.append((item, f"{item}: no {'/'.join(extensions)} files match"))
        else:
            failures.append((item, f"{item}: no such file or folder"))
    unique, seen = [], set()
    for path, rel in found:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append((path, rel))
    return unique, failures, several


def plan_outputs(inputs: list[tuple[Path, Path]], output: str | None, rename: Callable[[str], str],
                 several: bool = False) -> tuple[list[tuple[Path, Path]], list[Failure]]:
    """Pair each input with its output: beside it by default, `output` itself for one file, or mirrored
    under the folder `output` (which several inputs require). Two inputs that would write the same
    output are a failure of the second, not a silent overwrite."""
    to_folder = output is not None and (several or len(inputs) > 1 or Path(output).is_dir() or output.endswith(("/", os.sep)))
    if to_folder and Path(output).exists() and not Path(output).is_dir():
        raise ValueError(f"-o {output}: several inputs need an output folder, and this is a file")
    jobs, failures, taken = [], [], {}
    for src, rel in inputs:
        if output is None:
            dst = src.with_name(rename(src.name))
        elif to_folder:
            dst = Path(output) / rel.with_name(rename(rel.name))
        else:
            dst = Path(output)
        key = dst.resolve()
        if key in taken:
            failures.append((str(src), f"{src}: would write {dst}, as {taken[key]} does"))
            continue
        taken[key] = src
        jobs.append((src, dst))
    return jobs, failures


def encoded_name(name: str) -> str:
    """a.wav -> a.vqs"""
    return str(Path(name).with_suffix(VQS_EXTENSION))


def decoded_name(name: str) -> str:
    """a.vqs -> a.decoded.wav"""
    return Path(name).stem + ".decoded.wav"


def run_batch(jobs: list[tuple[Path, Path]], work: Callable[[Path, Path], str], progress: bool = True,
              echo: Callable[[str], None] = print) -> list[Failure]:
    """Run work(src, dst) for each job under a progress bar; echo what it returns; collect the
    failures (ValueError, OSError: our one-line errors) instead of stopping at the first."""
    from tqdm import tqdm

    failures: list[Failure] = []
    bar = tqdm(jobs, unit="file", disable=True if not progress or len(jobs) < 2 else None, dynamic_ncols=True)
    for src, dst in bar:
        try:
            line = work(src, dst)
        except (ValueError, OSError) as e:
            message = (str(e).splitlines() or [type(e).__name__])[0]
            failures.append((str(src), message if str(src) in message else f"{src}: {message}"))
            continue
        if line:
            (tqdm.write if not bar.disable else echo)(line)
    return failures


def input_extensions(decode: bool) -> tuple[str, ...]:
    return (VQS_EXTENSION,) if decode else AUDIO_EXTENSIONS
