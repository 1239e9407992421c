"""Content kept through conversion: the words pocketsphinx (its shipped en-us model) hears in two signals.

There are no transcripts for VCC 2016 here, so the converted audio is compared with the recogniser's
reading of the source audio, not with the truth: agreement = 1 - word edit distance / source words
(clipped at 0). Pocketsphinx is a weak recogniser (it misreads much of clean VCC speech): the figure says
whether the output sounds like the same words to it, not whether either reading is right.
"""

from __future__ import annotations

import numpy as np


def recognise(wav: np.ndarray) -> list[str]:
    """float32 [T] at 16 kHz -> the words pocketsphinx hears (lower case).

    A fresh decoder each time (~0.6 s to load): a reused one carries state from the utterances before
    (not only its CMN estimate: resetting that, batch CMN and no noise removal all still left the
    reading of the same audio depending on what came before), and a measure must not depend on order."""
    from pocketsphinx import Decoder

    d = Decoder(samprate=16000, logfn="/dev/null")
    d.start_utt()
    d.process_raw((np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes(), full_utt=True)
    d.end_utt()
    hyp = d.hyp()
    return hyp.hypstr.lower().split() if hyp is not None else []


def edit_distance(a: list[str], b: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions, deletions each cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def agreement(source: list[str], converted: list[str]) -> float:
    """1 - edit distance / len(source), in [0, 1]; NaN when the recogniser heard nothing in the source."""
    if not source:
        return float("nan")
    return max(0.0, 1.0 - edit_distance(source, converted) / len(source))


ALIGN_FRAME_SECONDS = 0.01  # pocketsphinx's frame rate


def align_phones(wav: np.ndarray, text: str) -> list[tuple[str, float]] | None:
    """Forced alignment of a known transcript: float32 [T] at 16 kHz, its words -> [(phone, end time in s)] over the
    whole signal (pocketsphinx's en-us model and dictionary: 39 phones without stress, SIL for silence), or None
    where it cannot align (a word outside the dictionary, or the search not reaching the end).

    Two passes, as pocketsphinx's API has them: the words first, then the phones inside each word. `bestpath` is off
    (with it the second pass often fails to reach the final state: cmusphinx/pocketsphinx#339)."""
    from pocketsphinx import Decoder

    data = (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()
    d = Decoder(samprate=16000, logfn="/dev/null", bestpath=False)
    try:
        d.set_align_text(text.lower())
        for second in (False, True):
            if second:
                d.set_alignment()
            d.start_utt()
            d.process_raw(data, full_utt=True)
            d.end_utt()
        phones = [(p.name, (p.start + p.duration) * ALIGN_FRAME_SECONDS) for p in d.get_alignment().phones()]
    except (RuntimeError, KeyError, ValueError):
        return None
    return phones or None
