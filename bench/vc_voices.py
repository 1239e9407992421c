"""The held-out voices the conversion benches convert to (vc_unseen, vc_prosody, vc_adapt_ceiling): each speaker's
first N_REFERENCES recordings are the references a voice is found from; the others enrol two judges that name a
recording's speaker among them (resemblyzer's d-vector centroids, and the MFCC judge that owes nothing to it)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from vqspeech import audio, speaker_encoder
from vqspeech.data import corpora
from vqspeech.eval import speaker_id, speaker_judge

SR = 16000
N_REFERENCES = 3


def speechocean_voices(root: Path, speakers) -> tuple[dict[str, list[np.ndarray]], dict[str, str]]:
    """speaker -> recordings (sorted by utterance id, loaded as the CLI loads audio), speaker -> group, for the
    speechocean762 speakers named."""
    recordings: dict[str, list[np.ndarray]] = defaultdict(list)
    for it in sorted(corpora.speechocean762(root), key=lambda it: it.utterance):
        if it.speaker in speakers:
            recordings[it.speaker].append(audio.load(it.path, SR))
    info = corpora.speechocean762_speakers(root)
    groups = {s: f"{info[s].region} {'female' if info[s].gender == 'F' else 'male'}" for s in recordings}
    return dict(recordings), groups


def unseen_speakers(root: Path) -> tuple[dict[str, list[np.ndarray]], dict[str, str]]:
    """The held-out speakers' recordings and groups (speechocean_voices)."""
    return speechocean_voices(root, {it.speaker for it in corpora.speechocean762(root) if it.split == "unseen"})


def seen_lookalikes(root: Path, seed: int = 0) -> list[str]:
    """As many training speakers of speechocean762 as there are held-out ones, group for group (adult/child x
    female/male), drawn at random: a control set of voices the model heard, for the same bench."""
    items = corpora.speechocean762(root)
    info = corpora.speechocean762_speakers(root)
    group = {s: (info[s].region, info[s].gender) for s in info}
    unseen = sorted({it.speaker for it in items if it.split == "unseen"})
    seen = sorted({it.speaker for it in items if it.split != "unseen"})
    rng = np.random.default_rng(seed)
    chosen = []
    for g in sorted({group[s] for s in unseen}):
        pool = [s for s in seen if group[s] == g]
        chosen += rng.choice(pool, size=sum(group[s] == g for s in unseen), replace=False).tolist()
    return sorted(chosen)


class HeldOutVoices:
    """The 20 held-out voices as the conversion benches use them (or other speechocean762 speakers, `speakers`):
    each speaker's first N_REFERENCES recordings are the references a voice is found from, the rest enrol the two
    judges, which name a recording's speaker."""

    def __init__(self, root: Path, speakers=None):
        recordings, self.groups = unseen_speakers(root) if speakers is None else speechocean_voices(root, set(speakers))
        self.names = sorted(recordings)
        self.refs = {t: recordings[t][:N_REFERENCES] for t in self.names}
        enrol = {t: recordings[t][N_REFERENCES:] for t in self.names}
        self.centroids = np.stack([speaker_encoder.embed_speaker(enrol[t]) for t in self.names])
        self.judge = speaker_judge.SpeakerJudge.fit(enrol)

    def judged(self, wav: np.ndarray) -> tuple[str, str]:
        """-> (the speaker resemblyzer names, the speaker the MFCC judge names)."""
        return speaker_id.nearest(speaker_encoder.embed(wav), self.names, self.centroids), self.judge.identify(wav)
