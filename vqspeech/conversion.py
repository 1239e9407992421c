"""Voice conversion: one person's codes rendered in another voice.

    convert(model, wav, target="TF1")          to a training speaker: its voice and its pitch range
    convert(model, wav, references=[w1, w2])   to an unseen voice heard in a few seconds of audio
    convert(model, wav, references=..., match_k=0)  ... without the source's latents matched to the references'
                                                    (latent_match.LatentMatch: on by default for vector-voice models)
    convert(model, wav, references=..., voices=ReferenceVoices())  ... the voice found once, reused for the same references
    speakers(model) -> [{name, gender, accent, f0_hz}]
    reference_voice(model, references, method) -> Voice, the speaker vector and pitch range used above

Unseen voices, vector-voice models (config voice="vector", model v4 on): the decoder reads a voice as the
speaker's d-vector through a learned map, so a new voice is the references' d-vector mapped (method "embed",
instant), and by default the parallel decoder then fine-tuned to the references (method "adapt": speaker
adaptation after Arik et al. 2018, "Neural voice cloning with a few samples": ADAPT_STEPS Adam steps on a copy of
the decoder so that it renders the references' own codes and pitch as close to the references as it can, by the
multi-resolution STFT loss it was trained with; 30-40 s on one core). "adapt" uses no speaker embedding's judgement
of its output, only the references' spectra. Then, by default (latent_match.MATCH_K, MATCH_BLEND, MATCH_SEARCH), the source's
encoder latents move a third of the way to their nearest frames in the references' latents before quantisation (LatentMatch;
kNN-VC's matching, blended because a few seconds of references cover few of the source's phones; the neighbours
found with each side's mean latent removed, so that the offset between two speakers does not pick wrong phones):
the codes carry less of the source.
Re-voiced references (adapt_decoder's `revoice`, `vqspeech convert --revoice N`; on by default): the source's codes still carry some
of its speaker, and the decoder adapted to the references' own codes has only ever seen codes that carry the target.
So adaptation can also read each reference's codes as they come back from the encoder after the reference was
rendered in N training voices (revoiced_codes: the same words, timing and audio to aim at, another speaker's trace in
the codes), teaching the adapted decoder to render the target from codes that carry another voice.
Refining the voice vector alone the same way as "adapt" moved held-out recordings of the voice by 0.01 in that loss:
the decoder, not the vector's place, limits an unseen voice.

Unseen voices, table-voice models (v1-v3). The decoder reads the speaker through one table row per training
speaker, so a new voice must become a vector it can read. Three ways, all measured by bench/vc.py:
  "fit"    (the default) the convex blend of table rows whose conditioning best explains the references'
           log-mel spectra through the model's own auxiliary mel head (the references' codes and pitch in;
           a few dozen Adam steps on the blend's softmax weights). Needs nothing but the model, and no
           speaker-embedding model, so a speaker-embedding evaluation of it is independent of it.
  "blend"  rows weighted by the resemblyzer similarity of the references to each training speaker's
           centroid (softmax at BLEND_TEMPERATURE). Needs the voice bank (speaker_encoder.VoiceBank).
  "ridge"  a linear map from d-vectors to rows (ridge regression on the training speakers' centroids
           and rows); the only one that can leave the rows' convex hull. Needs the voice bank.
With few training speakers (VCC 2016 has 10) the first two can only land near voices the model knows.
The pitch range (log-F0 mean and std) always comes from the references: the register carries much of
what a listener hears as identity, and a blend of rows cannot give it.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from vqspeech import features
from vqspeech.latent_match import reference_match
from vqspeech.models.vqvae import VQSpeech
from vqspeech.precision import inference_autocast

METHODS = ("embed", "adapt", "fit", "blend", "ridge")
VECTOR_METHODS = ("embed", "adapt")  # what a vector-voice model can do
TABLE_METHODS = ("fit", "blend", "ridge")  # what a table-voice model can do; "embed" is a vector-voice model's
MIN_REFERENCE_SECONDS = 1.0  # of audio in all: less does not place a voice
SILENCE_RMS = 1e-3  # about -60 dBFS: a reference quieter than this over its whole length is silence
FIT_STEPS = 60
FIT_LR = 0.1
FIT_MAX_SECONDS = 20.0  # references beyond this are not used by the fit (its cost grows with their length)
# Conversions to 20 unseen voices, own codes only, at lr 1e-4: 25 / 60 / 150 steps named the target 69 / 77 / 85 % (MFCC
# judge), 59-61 % (resemblyzer), words unchanged; 60 steps at 3e-4: the same as 150 at 1e-4. Half the steps on re-voiced
# codes (below) need twice the steps, so that the references' own codes get as many as before.
ADAPT_STEPS = 120
ADAPT_LR = 3e-4
ADAPT_CROP_SECONDS = 2.0  # each step renders a random crop of every reference, so a step costs the same for any length
# Re-voiced references (see above): REVOICE_VOICES training voices (drawn at random, seeded), on REVOICE_SHARE of each
# reference's crops. 160 conversions to the 20 held-out voices (bench/results/vc-unseen-v4.1-adapt120-revoice4-160.md,
# against ...-adapt-cknn4-s19-160.md, the session-15 default rerun beside it): resemblyzer 73 -> 82 %, MFCC judge
# 86 -> 88 %, words 0.24 -> 0.21; 120 steps on the references' own codes alone: -3 / +7 points, words -0.01 (probe).
REVOICE_VOICES = 4
REVOICE_SHARE = 0.5
BLEND_TEMPERATURE = 0.02  # cosine similarities of d-vectors differ by ~0.1-0.2 between voices
RIDGE_LAMBDA = 0.1  # on centred unit d-vectors, whose squared distances are ~0.1-0.5
MIN_VOICED_SECONDS = 0.3


@dataclass
class Voice:
    """What the decoder needs to speak in a voice."""

    vector: torch.Tensor  # [speaker_dim]
    lf0: tuple[float, float]  # log-F0 mean and std the pitch is rendered in
    weights: dict[str, float] | None  # share of each training speaker's row (None for "ridge")
    decoder: torch.nn.Module | None = None  # a parallel decoder adapted to this voice (method "adapt"), else the model's


def convert(model: VQSpeech, wav: np.ndarray, target: str | None = None, references: list[np.ndarray] | None = None,
            decoder: str | None = None, generator: torch.Generator | None = None, match_k: int | None = None,
            match_blend: float | None = None, match_search: str | None = None, adapt_steps: int | None = None,
            revoice: int | None = None, voices: ReferenceVoices | None = None) -> np.ndarray:
    """wav: float32 [T] at the model's rate (as audio.load gives it) -> the same words in another voice [T].

    Exactly one of `target` (a training speaker's name) or `references` (waveforms of an unseen voice,
    a few seconds in all) names the voice. decoder: "autoregressive" or "parallel". match_k > 0 (with
    references): the source's latents are moved `match_blend` of the way to the mean of their match_k nearest
    reference frames first, searched as `match_search` says (latent_match.reference_match; None: its defaults); 0: not matched.
    adapt_steps, revoice: how a vector-voice model's decoder adapts to the references (adapt_decoder's steps and revoice).
    voices: a ReferenceVoices that keeps the voice found from these references (and their matcher) for the next call
    with the same ones; None finds it anew each time."""
    if (target is None) == (references is None):
        raise ValueError("give exactly one of a target speaker or reference recordings")
    if target is not None:
        if match_k:
            raise ValueError("matching the latents needs reference recordings of the target")
        return model.decode(model.encode(wav), target, lf0=model.speaker_pitch(target), decoder=decoder, generator=generator)
    voice, match = (voices or ReferenceVoices(size=0)).find(model, references, adapt_steps=adapt_steps, revoice=revoice,
                                                            match_k=match_k, match_blend=match_blend, match_search=match_search)
    encoded = model.encode(wav, latent_map=match if match is None else match.for_source(model, wav))
    return render(model, encoded, voice, decoder=decoder, generator=generator)


class ReferenceVoices:
    """Voices found from reference recordings, kept for the next conversion to the same ones: finding one is the slow
    step (a vector-voice model adapts a decoder copy, 30-40 s on one core), and a person trying the demo converts many
    recordings to one uploaded clip. Keyed by the model, the references' samples and the settings; the `size` most
    recently used are kept (each holds an adapted decoder, ~6 MB)."""

    def __init__(self, size: int = 4):
        self.size = size
        self._found: OrderedDict[tuple, tuple[Voice, object]] = OrderedDict()

    @staticmethod
    def _recordings(model: VQSpeech, references: list[np.ndarray]) -> tuple[int, str]:
        digest = hashlib.sha256()
        for r in references:
            digest.update(np.ascontiguousarray(r, np.float32).tobytes() + b"|")
        return id(model), digest.hexdigest()

    def find(self, model: VQSpeech, references: list[np.ndarray], adapt_steps: int | None = None,
             revoice: int | None = None, match_k: int | None = None, match_blend: float | None = None,
             match_search: str | None = None) -> tuple[Voice, object]:
        """-> (reference_voice(model, references, bank=model.voice_bank, adapt_steps=, revoice=), the
        latent_match.reference_match(model, references, match_k, match_blend, match_search) for it, or None)."""
        key = (*self._recordings(model, references), adapt_steps, revoice, match_k, match_blend, match_search)
        if key in self._found:
            self._found.move_to_end(key)
            return self._found[key]
        voice = reference_voice(model, references, bank=model.voice_bank, adapt_steps=adapt_steps, revoice=revoice)
        found = voice, reference_match(model, references, match_k, match_blend, match_search)
        if self.size > 0:
            self._found[key] = found
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return found

    def knows(self, model: VQSpeech, references: list[np.ndarray]) -> bool:
        """Whether a voice found from these references (with any settings) is kept: the next find is instant."""
        recordings = self._recordings(model, references)
        return any(k[:2] == recordings for k in self._found)


def default_method(model: VQSpeech) -> str:
    """How --to-reference finds a voice by default: a vector-voice model maps the references' d-vector and adapts
    its decoder to them ("adapt": bench/results/vc-unseen-v4.1-adapt*-160.md, against "embed"'s
    vc-unseen-v4.1-160.md); a table-voice model fits a blend of its rows ("fit")."""
    return default_method_name(model.config.voice)


def default_method_name(voice: str) -> str:
    """default_method for a model whose config.voice is `voice` ("vector" or "table")."""
    return "adapt" if voice == "vector" else "fit"


def render(model: VQSpeech, encoded, voice: Voice, decoder: str | None = None,
           generator: torch.Generator | None = None) -> np.ndarray:
    """Encoded -> waveform [n_samples] in `voice` (a Voice from reference_voice)."""
    return model.decode(encoded, None, lf0=voice.lf0, decoder=decoder, generator=generator, speaker_vector=voice.vector,
                        parallel=voice.decoder)


def speakers(model: VQSpeech) -> list[dict]:
    """The model's training speakers: name, gender and accent (where the checkpoint's `speaker_info`
    says; else None) and median F0 in Hz (exp of the log-F0 mean measured on the training data)."""
    info = model.speaker_info
    out = []
    for name in model.speaker_names:
        mean, _ = model.speaker_pitch(name)
        meta = info.get(name) or {}
        out.append({"name": name, "gender": meta.get("gender"), "accent": meta.get("accent"), "f0_hz": math.exp(mean)})
    return out


# --- unseen voices ---------------------------------------------------------------------------------------

def check_references(model: VQSpeech, references: list[np.ndarray]) -> None:
    """A one-line ValueError for references that cannot place a voice: too short, silent."""
    sr = model.config.sample_rate
    seconds = sum(r.size for r in references) / sr
    if seconds < MIN_REFERENCE_SECONDS:
        raise ValueError(f"the reference audio is too short ({seconds:.2f} s); give at least {MIN_REFERENCE_SECONDS:g} s of speech")
    rms = float(np.sqrt(np.mean(np.concatenate(references).astype(np.float64) ** 2)))
    if rms < SILENCE_RMS:
        raise ValueError(f"the reference audio is silent (RMS {20 * np.log10(max(rms, 1e-12)):.0f} dBFS); give a recording of speech")


def reference_pitch(model: VQSpeech, references: list[np.ndarray]) -> tuple[float, float]:
    """Log-F0 mean and std over the voiced frames of all references; an error if there are almost none (noise,
    music, whispering: nothing a voice can be heard in)."""
    c = model.config
    f0 = np.concatenate([features.extract_pitch(r, c.pitch_hop, c.sample_rate).f0 for r in references])
    voiced_seconds = (f0 > 0).sum() * c.pitch_hop / c.sample_rate
    if voiced_seconds < MIN_VOICED_SECONDS:
        raise ValueError(f"the reference audio has {voiced_seconds:.2f} s of voiced speech (is it speech?); "
                         "give a few seconds of speech")
    return features.Pitch(f0, c.pitch_hop).log_stats()


def reference_voice(model: VQSpeech, references: list[np.ndarray], method: str | None = None, bank=None,
                    exclude: tuple[str, ...] = (), adapt_steps: int | None = None, revoice: int | None = None) -> Voice:
    """references: float32 waveforms [T_i] of one voice at the model's rate -> Voice.

    method: None for the model's default (default_method). bank: a speaker_encoder.VoiceBank (methods "blend"
    and "ridge"). exclude: training speakers whose rows may not be used (the benchmark leaves the target out,
    so a training speaker stands for an unseen one; "embed" uses no rows). adapt_steps, revoice: method "adapt"'s
    adapt_decoder(steps=, revoice=) (None: ADAPT_STEPS, REVOICE_VOICES)."""
    method = method or default_method(model)
    if method not in METHODS:
        raise ValueError(f"unknown reference method {method!r}: choose {', '.join(METHODS)}")
    references = [np.asarray(r, np.float32).reshape(-1) for r in references or []]
    if not references or any(r.size == 0 for r in references):
        raise ValueError("no reference audio (or an empty one)")
    if (method in VECTOR_METHODS) != (model.config.voice == "vector"):
        raise ValueError(f"method {method!r} is for {'vector' if method in VECTOR_METHODS else 'table'}-voice models; this "
                         f"model has voice={model.config.voice} (use {default_method(model)!r})")
    if method in ("blend", "ridge") and bank is None:
        raise ValueError(f"method {method!r} needs the model's voice bank (build it: vqspeech speakers --enroll CORPUS)")
    check_references(model, references)
    if method in VECTOR_METHODS:
        from vqspeech import speaker_encoder
        from vqspeech.codec.bitstream import quantise_voice

        lf0 = reference_pitch(model, references)
        d = torch.from_numpy(speaker_encoder.embed_speaker([r[: int(FIT_MAX_SECONDS * model.config.sample_rate)] for r in references]))
        vector = quantise_voice(model.dvector_voice(d[None])[0])
        adapted = adapt_decoder(model, references, vector, adapt_steps, revoice=revoice) if method == "adapt" else None
        return Voice(vector, lf0, None, adapted)
    allowed = [i for i, n in enumerate(model.speaker_names) if n not in exclude]
    if not allowed:
        raise ValueError("every training speaker is excluded")
    if method != "fit" and bank is None:
        raise ValueError(f"method {method!r} needs the model's voice bank (build it: vqspeech speakers --enroll CORPUS)")
    lf0 = reference_pitch(model, references)
    rows = model.speaker_embedding.weight.detach()[allowed]
    if method == "fit":
        weights = _fit_weights(model, references, rows)
    else:
        from vqspeech import speaker_encoder

        d = torch.from_numpy(speaker_encoder.embed_speaker(references))
        centroids = torch.from_numpy(bank.centroids)[[bank.names.index(model.speaker_names[i]) for i in allowed]]
        if method == "ridge":
            return Voice(_ridge(centroids, rows, d), lf0, None)
        weights = torch.softmax(centroids @ d / BLEND_TEMPERATURE, 0)
    names = [model.speaker_names[i] for i in allowed]
    return Voice(weights @ rows, lf0, dict(zip(names, weights.tolist())))


def nearest_speaker(model: VQSpeech, wav: np.ndarray) -> str | None:
    """The training voice nearest to this recording (float32 [T] at the model's rate), or None when it cannot
    tell (too little voiced speech, or no mel head). The codec records it, so that decoding renders an unknown
    talker in the nearest voice the model knows. With the model's voice bank (and resemblyzer): the nearest
    speaker centroid; else the training speaker whose row the "fit" weighs most (a weaker guess: on held-out
    VCC 2016 sentences it named the right training speaker for 8 of 20)."""
    from vqspeech import speaker_encoder

    head = wav[: int(FIT_MAX_SECONDS * model.config.sample_rate)]
    if model.config.voice == "vector":
        _, dvector = model.voice_of(head)
        return model.nearest_voice(dvector)[0]
    bank = model.voice_bank
    if bank is not None and speaker_encoder.available():
        d = speaker_encoder.embed_speaker([head])
        return bank.names[int(np.argmax(bank.centroids @ d))]
    try:
        voice = reference_voice(model, [head], method="fit")
    except ValueError:
        return None
    return max(voice.weights, key=voice.weights.get)


def _fit_weights(model: VQSpeech, references: list[np.ndarray], rows: torch.Tensor) -> torch.Tensor:
    """Softmax weights [K] over `rows` [K, D] that minimise the mel head's L1 error on the references."""
    if model.mel_head is None:
        raise ValueError("method 'fit' needs a model trained with the auxiliary mel loss (mel_weight > 0); use 'blend'")
    c = model.config
    budget = int(FIT_MAX_SECONDS * c.sample_rate)
    batch = []  # (quantized [1, D, F], pitch [1, P] or None, log-mel [1, n_mels, F]) per reference
    for r in references:
        if budget <= 0:
            break
        r, budget = r[:budget], budget - len(r)
        enc = model.encode(r)
        padded = F.pad(torch.from_numpy(r), (0, model.pad_length(len(r)) - len(r)))
        mel = features.log_mel(padded[None], c.hop, c.sample_rate, c.n_mels)
        batch.append((model.dequantise(enc.codes[None], None if enc.top is None else enc.top[None]), None if enc.pitch is None else enc.pitch[None], mel))
    logits = torch.zeros(rows.shape[0], requires_grad=True)
    opt = torch.optim.Adam([logits], lr=FIT_LR)
    with torch.enable_grad():
        for _ in range(FIT_STEPS):
            vector = (torch.softmax(logits, 0) @ rows)[None]
            loss = sum(F.l1_loss(model.mel_head(model.condition(q, vector, p)), mel) for q, p, mel in batch) / len(batch)
            (logits.grad,) = torch.autograd.grad(loss, [logits])  # the model's weights get no gradient
            opt.step()
    return torch.softmax(logits.detach(), 0)


def revoiced_codes(model: VQSpeech, encoded, voices: list[tuple[torch.Tensor, tuple[float, float]]],
                   seed: int = 0) -> list[torch.Tensor]:
    """One reference's Encoded -> its codes [F] as the encoder gives them back after the reference is rendered in
    each of `voices` ((voice vector [speaker_dim], log-F0 mean and std) each): the same words and timing, with
    another speaker's trace in the codes, as a source's codes carry its speaker's."""
    out = []
    for i, (vector, lf0) in enumerate(voices):
        rendered = model.decode(encoded, None, lf0=lf0, speaker_vector=vector, decoder="parallel",
                                generator=torch.Generator().manual_seed(seed + i))
        out.append(model.encode(rendered).codes)
    return out


def training_voices(model: VQSpeech, count: int, seed: int = 0) -> list[tuple[torch.Tensor, tuple[float, float]]]:
    """`count` of the model's training speakers, drawn at random (seeded): [(voice vector, log-F0 mean and std)]."""
    picks = np.random.default_rng(seed).choice(len(model.speaker_names), min(count, len(model.speaker_names)), replace=False)
    with torch.no_grad():
        return [(model.speaker_voice(torch.tensor([int(i)], device=model.device))[0].float().cpu(), model.speaker_pitch(int(i)))
                for i in picks]


def adapt_decoder(model: VQSpeech, references: list[np.ndarray], vector: torch.Tensor, steps: int | None = None,
                  lr: float | None = None, seed: int = 0, revoice: int | None = None) -> torch.nn.Module:
    """A copy of the model's parallel decoder fine-tuned on the references [T_i], each decoded from its own codes,
    pitch and log-F0 statistics in voice `vector` [speaker_dim], by the multi-resolution STFT loss it was trained
    with. The model itself is untouched. Each step takes one random ADAPT_CROP_SECONDS crop of every reference
    (seeded: the same references give the same decoder) and fresh decoder noise; on REVOICE_SHARE of them the crop's
    codes are the reference's re-voiced ones (revoiced_codes, in `revoice` random training voices; None:
    REVOICE_VOICES, 0: none). steps, lr: ADAPT_STEPS, ADAPT_LR."""
    from vqspeech.models.parallel import stft_loss

    if model.parallel is None:
        raise ValueError("method 'adapt' fine-tunes the parallel decoder, which this model does not have")
    c = model.config
    loss_fn = stft_loss()
    budget = int(FIT_MAX_SECONDS * c.sample_rate)
    crop = int(ADAPT_CROP_SECONDS * c.sample_rate) // c.pitch_hop * c.pitch_frames  # code frames, whole pitch frames
    dev = model.device
    voice = vector.float().reshape(1, -1).to(dev)
    others = training_voices(model, REVOICE_VOICES if revoice is None else revoice, seed)
    items = []  # ([cond [1, C, F]: own codes, then re-voiced], f0 [1, F * hop], waveform [F * hop]) per reference
    with torch.no_grad():
        for k, r in enumerate(references):
            if budget <= 0:
                break
            r, budget = r[:budget], budget - len(r)
            enc = model.encode(r)
            top = None if enc.top is None else enc.top[None].to(dev)
            pitch = None if enc.pitch is None else enc.pitch[None].to(dev)
            conds = [model.condition(model.dequantise(codes[None].to(dev), top), voice, pitch).float()
                     for codes in [enc.codes, *revoiced_codes(model, enc, others, seed + 7 * k)]]
            f0 = model.f0(pitch, torch.tensor([[enc.lf0_mean, enc.lf0_std]], device=dev))
            items.append((conds, f0, F.pad(torch.from_numpy(r), (0, model.pad_length(len(r)) - len(r))).to(dev)))
    decoder = copy.deepcopy(model.parallel).float().train()
    opt = torch.optim.Adam(decoder.parameters(), lr=lr or ADAPT_LR)
    generator = torch.Generator().manual_seed(seed)
    with torch.enable_grad(), inference_autocast(dev):  # bfloat16 where native, as decoding renders
        for _ in range(steps or ADAPT_STEPS):
            loss = 0.0
            for conds, f0, wav in items:
                n = conds[0].shape[-1]
                start = int(torch.randint(0, max(1, (n - crop) // c.pitch_frames + 1), (1,), generator=generator)) * c.pitch_frames
                cond = conds[0]
                if len(conds) > 1 and float(torch.rand(1, generator=generator)) < REVOICE_SHARE:
                    cond = conds[1 + int(torch.randint(0, len(conds) - 1, (1,), generator=generator))]
                frames = slice(start, min(start + crop, n))
                samples = slice(frames.start * c.hop, frames.stop * c.hop)
                noise = torch.randn(1, samples.stop - samples.start, generator=generator).to(dev)
                out = decoder(cond[..., frames], f0[:, samples], noise, voice=voice)
                loss = loss + loss_fn(out[:, None], wav[samples][None, None])
            opt.zero_grad()
            (loss / len(items)).backward()
            opt.step()
    return decoder.eval().requires_grad_(False)


def _ridge(centroids: torch.Tensor, rows: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Ridge regression from d-vectors to rows, fitted on (centroids [K, E], rows [K, D]), applied to d [E].

    Solved in its dual form (K x K) since there are far fewer speakers than dimensions; both sides centred,
    so a voice unlike every training speaker falls back to the mean row."""
    cm, rm = centroids.mean(0), rows.mean(0)
    x, y = centroids - cm, rows - rm
    alpha = torch.linalg.solve(x @ x.T + RIDGE_LAMBDA * torch.eye(len(x)), y)
    return rm + (d - cm) @ x.T @ alpha
