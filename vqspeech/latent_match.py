"""kNN matching of a source's encoder latents to a target voice's reference recordings, before quantisation: what
conversion to references does by default on vector-voice models (conversion.convert, `vqspeech convert
--to-reference`, the `--match-*` options).

    match = reference_match(model, references)          # the defaults below; None where the model does not match
    model.encode(wav, latent_map=match.for_source(model, wav))
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.nn import functional as F

from vqspeech.models.vqvae import VQSpeech

MATCH_K = 4  # conversion to references, vector-voice models: each source latent frame moved MATCH_BLEND of the way
MATCH_BLEND = 0.35  # to the mean of its MATCH_K nearest reference frames, found by the MATCH_SEARCH below
# (2 or 8 nearest frames gave the same figures: bench/results/vc-unseen-v4.1-adapt-cknn-k-160.md)
SEARCHES = ("plain", "centred", "shifted")  # how LatentMatch finds the neighbours (and moves the rest of each frame)
# Neighbours searched with each side's mean latent removed. On 160 conversions to unseen voices (bench/results/
# vc-unseen-v4.1-adapt-*knn4*-160.md) at blend 0.35: +6 +- 2 points of resemblyzer over the plain search at 0.5, the
# same words and MFCC judge; 0.5 adds 2 points for 0.02 of the words; "shifted" 6 more, but costs 0.06 of the words
# at any blend (0.2-0.5)
MATCH_SEARCH = "centred"
MEAN_FLOOR_DB = None  # the means over every frame; a floor (e.g. 40 dB) leaves the pauses out of them (40: a null)
GATE_QUANTILES = (0.25, 0.75)  # of the source's match distances: a gated matching's full and no move
MAX_SECONDS = 20.0  # of each recording the latents are read from (the cost of the search grows with the bank)


def default_match_k(model: VQSpeech) -> int:
    """How many reference frames a conversion to references matches each source frame to by default: MATCH_K for a
    vector-voice model (measured there), 0 (no matching) for a table-voice model (not measured)."""
    return MATCH_K if model.config.voice == "vector" else 0


def reference_match(model: VQSpeech, references: list[np.ndarray], k: int | None = None,
                    blend: float | None = None, search: str | None = None, gated: bool = False) -> LatentMatch | None:
    """The latent matching a conversion to `references` uses: k None for default_match_k(model), blend None for
    MATCH_BLEND, search None for MATCH_SEARCH; None (no matching) when k is 0. Apply it to a source through
    its for_source(model, wav)."""
    k = default_match_k(model) if k is None else k
    if not k:
        return None
    return LatentMatch(model, references, k, MATCH_BLEND if blend is None else blend,
                       MATCH_SEARCH if search is None else search, gated)


class LatentMatch:
    """kNN matching of content latents to a target voice's (after kNN-VC, Baas et al. 2023, here on this model's own
    encoder latents instead of WavLM features).

    Each frame of a source's encoder latents is replaced, before quantisation, by the mean of its k nearest frames
    (Euclidean, the quantiser's own distance) among the latents of the target's reference recordings. The codes are
    then ones the target speaker produced, in the source's order: whatever of the speaker the codes still carry is
    the target's. With blend < 1 each frame moves only that share of the way to its matches, keeping more of the
    source's phones (the references are seconds long, kNN-VC's minutes). Frame by frame, so chunked encoding is
    unchanged (encode_stream's latent_map).

    search "centred": the neighbours are searched with the source's mean latent and the references' removed from
    each side, so that a constant offset between the two speakers does not choose the wrong phones (the frames
    taken are still the references' own); "shifted": also the kept share (1 - blend) of each frame is moved by the
    difference of the means. Both need the source: for_source(model, wav) before encoding it.

    gated: each frame moves blend x a weight in [0, 1] of the way, by how near its matches are: 1 for a frame whose
    mean distance to its k matches is within the nearest quarter of the source's frames' (GATE_QUANTILES), 0 beyond
    the farthest quarter, linear between. Three recordings cover few of a source's phones; a frame whose phone they
    lack keeps its own latent instead of taking another phone's. The quartiles come from the source (for_source), so
    the weights stay frame by frame. Measured a null (session 16, the first 60 of the bench's 160 conversions to
    unseen voices): at blend 0.7 / 1 it named the target less often than the plain blend at the same word agreement
    (73 % resemblyzer at 0.27 / 0.21, against 77 % at 0.29 for 0.35 and 82 % at 0.22 for 0.7), so it is no default."""

    def __init__(self, model: VQSpeech, references: list[np.ndarray], k: int = 4, blend: float = 1.0,
                 search: str = "plain", gated: bool = False):
        if k < 1:
            raise ValueError(f"k={k}: the number of matched frames must be at least 1")
        if not 0.0 < blend <= 1.0:
            raise ValueError(f"blend={blend:g}: the share of the way to the matches must be in (0, 1]")
        if search not in SEARCHES:
            raise ValueError(f"search={search!r}: one of {', '.join(SEARCHES)}")
        self.blend, self.search, self.gated = blend, search, gated
        self.bank = latents(model, references)  # [N, D]
        speech = self.bank if MEAN_FLOOR_DB is None else latents(model, references, MEAN_FLOOR_DB)
        self.bank_mean = speech.mean(0)  # [D]
        self.source_mean: torch.Tensor | None = None  # [D], set by for_source
        self.gate_range: tuple[float, float] | None = None  # the source's GATE_QUANTILES of match distance, for_source
        self.k = min(k, self.bank.shape[0])

    def for_source(self, model: VQSpeech, wav: np.ndarray) -> LatentMatch:
        """This matching for one source recording (float32 [T]): a copy that knows its mean latent (over its first
        MAX_SECONDS) and, gated, its quartiles of match distance; the plain search ungated needs nothing of the
        source and returns itself."""
        if self.search == "plain" and not self.gated:
            return self
        match = copy.copy(self)
        own = latents(model, [wav])  # [F, D]
        match.source_mean = (own if MEAN_FLOOR_DB is None else latents(model, [wav], MEAN_FLOOR_DB)).mean(0)
        if self.gated:
            distance = match._nearest(own.T[None])[1][0]  # [F]
            lo, hi = torch.quantile(distance, torch.tensor(GATE_QUANTILES)).tolist()
            match.gate_range = (lo, max(hi, lo + 1e-6))
        return match

    def _nearest(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [B, D, F] -> (the indices of each frame's k nearest bank frames [B, F, k], their mean distance [B, F]),
        searched as self.search says."""
        q, bank = z.transpose(1, 2).float(), self.bank  # [B, F, D], [N, D]
        if self.search != "plain":
            if self.source_mean is None:
                raise ValueError(f"the {self.search} search needs the source's mean latent: call for_source first")
            q, bank = q - self.source_mean, bank - self.bank_mean
        distance, nearest = torch.cdist(q, bank[None].expand(q.shape[0], -1, -1)).topk(self.k, largest=False)
        return nearest, distance.mean(2)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D, F] -> [B, D, F], each frame the mean of its k nearest reference frames (blend of the way there)."""
        nearest, distance = self._nearest(z)
        own = z
        if self.search == "shifted":
            own = z + (self.bank_mean - self.source_mean).to(z.dtype)[None, :, None]
        matched = self.bank[nearest].mean(2).transpose(1, 2).to(z.dtype)  # [B, F, k, D] -> [B, D, F]
        blend: float | torch.Tensor = self.blend
        if self.gated:
            if self.gate_range is None:
                raise ValueError("a gated matching needs the source's match distances: call for_source first")
            lo, hi = self.gate_range
            blend = self.blend * ((hi - distance) / (hi - lo)).clamp(0.0, 1.0)[:, None, :].to(z.dtype)  # [B, 1, F]
        return matched if not self.gated and self.blend == 1.0 else (1.0 - blend) * own + blend * matched


def latents(model: VQSpeech, recordings: list[np.ndarray], floor_db: float | None = None) -> torch.Tensor:
    """The encoder's latents of each recording (its first MAX_SECONDS), frames of all stacked: [N, D]. With
    floor_db, only the frames whose waveform energy is within floor_db of the recording's loudest frame (speech, not
    the pauses around it)."""
    sr, hop = model.config.sample_rate, model.config.hop
    frames = []
    with torch.no_grad():
        for r in recordings:
            r = np.asarray(r, np.float32).reshape(-1)[: int(MAX_SECONDS * sr)]
            padded = F.pad(torch.from_numpy(r), (0, model.pad_length(len(r)) - len(r)))
            z = model.encoder.infer(padded[None, None].to(model.device))[0].T  # [F_i, D]
            if floor_db is not None:
                energy = padded[: z.shape[0] * hop].reshape(z.shape[0], hop).pow(2).mean(1) + 1e-12
                z = z[10 * torch.log10(energy / energy.max()) > -floor_db]
            frames.append(z)
    return torch.cat(frames).float()
