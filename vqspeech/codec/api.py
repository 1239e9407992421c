"""The codec's library face, shared by the command line and the demo.

    encode_audio(model, wav) -> bytes                    a waveform in memory -> a .vqs file's bytes
    decode_bytes(model, data) -> (wav, header)           and back
    encode_file(model, src, dst) / decode_file(...)      the same on files, streamed in bounded memory
    convert_file(model, src, dst, target=...)            an audio file in another voice (vqspeech.conversion)

Every expected problem (bad audio, bad .vqs, output exists) is a ValueError or OSError whose message
is one line naming the file; `codec.batch.run_batch` collects them so one bad file does not stop the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr
import torch

from vqspeech import audio
from vqspeech.audio import AudioError
from vqspeech.codec import bitstream, entropy, stream
from vqspeech.data import codes as code_streams
from vqspeech.codec.bitstream import VQS_EXTENSION, BitstreamError, Header
from vqspeech.fileio import atomic_path
from vqspeech.models import encoding, refine
from vqspeech.models.vqvae import Encoded, VQSpeech, model_fingerprint



# --- models ------------------------------------------------------------------------------------------

def fingerprint(model: VQSpeech) -> str:
    """The model's fingerprint as hex (a few milliseconds; not cached, so it can never go stale)."""
    return model_fingerprint(model).hex()


def check_model(model: VQSpeech, header: Header, force: bool = False) -> None:
    """Refuse to decode codes made by another model (unless forced), and always when shapes differ."""
    c = model.config
    ours = dict(sample_rate=c.sample_rate, hop=c.hop, codebook_size=c.quantizer.codebook_size,
                top_codebook_size=c.quantizer.top_codebook_size, pitch_levels=c.pitch_levels if c.pitch else 0,
                pitch_frames=c.pitch_frames)
    if not ours["pitch_levels"] and not ours["top_codebook_size"]:
        ours.pop("pitch_frames")
    for key, value in ours.items():
        if getattr(header, key) != value:
            raise BitstreamError(f"cannot be decoded by this model: the file has {key}={getattr(header, key)}, the model {value}")
    if header.pitch_levels and header.n_frames % header.pitch_frames:
        raise BitstreamError(f"{header.n_frames} codes are not a whole number of pitch frames ({header.pitch_frames} codes each)")
    this_model = bitstream.short_fingerprint(fingerprint(model))  # a file keeps only the first bytes: compare those
    if header.model != this_model and not force:
        raise BitstreamError(f"made by another model (file {header.model}, this model {this_model}): its codes "
                             "mean nothing to this model; force to decode anyway (--force-model)")


# --- in memory -----------------------------------------------------------------------------------------

def speaker_name(model: VQSpeech, speaker: str | int) -> str:
    """A speaker's name from its name or index (an index may come as a string: "0")."""
    if isinstance(speaker, str) and speaker not in model.speaker_names and speaker.isdigit():
        speaker = int(speaker)
    return model.speaker_names[model.speaker_index(speaker)]


def _header(model: VQSpeech, enc: Encoded, speaker: str | int | None) -> Header:
    c = model.config
    if speaker is not None:
        speaker = speaker_name(model, speaker)
    return Header(model=fingerprint(model), sample_rate=c.sample_rate, hop=c.hop, codebook_size=c.quantizer.codebook_size,
                  pitch_levels=c.pitch_levels if c.pitch else 0, pitch_frames=c.pitch_frames, n_frames=int(enc.codes.shape[0]),
                  n_samples=enc.n_samples, speaker=speaker, lf0_mean=enc.lf0_mean, lf0_std=enc.lf0_std,
                  voice=None if enc.voice is None else tuple(enc.voice.tolist()), top_codebook_size=c.quantizer.top_codebook_size)


AUTO_SPEAKER = "auto"
VOICE_OF_THE_FILE = "of the file"  # how decode_file names the voice when the file's own voice vector rendered it


def _resolve_speaker(model: VQSpeech, speaker: str | None, head: np.ndarray, enc: Encoded) -> str | None:
    """speaker "auto": the nearest training voice to `head` (the recording's first seconds, normalised); for a
    vector-voice model, the nearest by the d-vector the encoding already has."""
    if speaker != AUTO_SPEAKER:
        return speaker
    if enc.dvector is not None:
        return model.nearest_voice(enc.dvector)[0]
    from vqspeech import conversion

    return conversion.nearest_speaker(model, head)


def _entropy_model(model: VQSpeech, prior) -> "entropy.Prior | None":
    """prior: False (pack plainly), True (the model's prior if one lies beside its file, else pack plainly), or a
    path (that prior file, which must exist) -> the Prior to code with, or None."""
    if prior is False or prior is None:
        return None
    if prior is True:
        path = model.prior_path
        if path is None or not Path(path).exists():
            return None
        return entropy.prior_for(model)
    return entropy.prior_for(model, prior)


def _pack(model: VQSpeech, enc: Encoded, speaker: str | None, prior=True) -> bytes:
    pitch = None if enc.pitch is None else enc.pitch.numpy()
    header = _header(model, enc, speaker)
    coder = _entropy_model(model, prior)
    if coder is None:
        return bitstream.pack(header, enc.codes.numpy(), pitch, None if enc.top is None else enc.top.numpy())
    header.prior = coder.id
    tokens = code_streams.tokens_of(enc.codes.numpy(), pitch, code_streams.TokenLayout.of(model.config))
    return bitstream.pack_coded(header, entropy.encode_tokens(coder, tokens, code_streams.default_voice(model, header)))


def symbols(model: VQSpeech, parsed: bitstream.Parsed, prior_path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A file as read -> (codes [n_frames], pitch or None): as packed, or range-decoded under the prior it names
    (the model's, an earlier one of the model kept beside it, or `prior_path`)."""
    if parsed.words is None:
        return parsed.codes, parsed.pitch
    h = parsed.header
    coder = entropy.prior_named(model, h.prior, prior_path)
    if coder.id != h.prior:
        raise BitstreamError(f"range-coded under prior {h.prior}, but this model's prior is {coder.id} ({coder.path}): "
                             "decode with the prior that encoded it (--prior)")
    layout = code_streams.TokenLayout.of(model.config)
    n_tokens = h.n_frames + (h.n_pitch if layout.pitch_levels else 0)
    tokens = entropy.decode_tokens(coder, parsed.words, n_tokens, code_streams.default_voice(model, h))
    return code_streams.split_tokens(tokens, layout)


def encode_audio(model: VQSpeech, wav: np.ndarray, sample_rate: int | None = None, speaker: str | None = None,
                 prior=True, refine_steps: int = 0, **chunking) -> bytes:
    """A waveform (float [T] or [T, channels], at `sample_rate`, default the model's) -> .vqs bytes.
    speaker: a training speaker to record in the file, "auto" (the nearest voice), or None. prior: True (range-code
    under the model's prior where it has one: version 4), False (pack plainly: version 3), or a prior file's path.

    Mixed to mono, resampled and loudness-normalised as audio.load does, then encoded in chunks. refine_steps: analysis
    by synthesis of the codes and voice (models/refine.py), 0 for the encoder's plain choice."""
    wav = np.asarray(wav, dtype=np.float32)
    wav = wav.mean(axis=1) if wav.ndim == 2 else wav.reshape(-1)
    rate = sample_rate or model.config.sample_rate
    if wav.size and rate != model.config.sample_rate:
        wav = soxr.resample(wav, rate, model.config.sample_rate, quality="HQ").astype(np.float32)
    level = audio.measure_level([wav])
    wav = (wav * level.gain).astype(np.float32)
    enc = encoding.encode_stream(model, [wav], level.n_samples, peak=level.peak, **chunking)
    speaker = _resolve_speaker(model, speaker, wav, enc)
    enc = refine.refine(model, [wav], level.n_samples, enc, refine_steps, speaker)
    return _pack(model, enc, speaker, prior)


def _voice(model: VQSpeech, header: Header, speaker: str | int | None) -> tuple[str | None, tuple[float, float] | None]:
    """Which training speaker renders the codes (None: the voice vector the file carries), and in which pitch range.

    Default: the file's voice vector if it has one and the model reads vectors; else the speaker recorded in
    the file if this model knows them, else the model's first. The pitch keeps the recording's own range,
    unless `speaker` names someone other than the recorded speaker: then it moves into the target's range
    (voice conversion)."""
    if speaker is None:
        return code_streams.default_speaker(model, header), None
    name = speaker_name(model, speaker)
    converting = header.speaker is not None and name != header.speaker and model.config.pitch
    return name, (model.speaker_pitch(name) if converting else None)


def _encoded(header: Header, codes: np.ndarray, pitch: np.ndarray | None, top: np.ndarray | None = None) -> Encoded:
    voice = None if header.voice is None else torch.tensor(header.voice, dtype=torch.float32)
    return Encoded(codes=torch.from_numpy(codes), pitch=None if pitch is None else torch.from_numpy(pitch),
                   lf0_mean=header.lf0_mean, lf0_std=header.lf0_std, n_samples=header.n_samples, voice=voice,
                   top=None if top is None else torch.from_numpy(top))


def decode_bytes(model: VQSpeech, data: bytes, speaker: str | int | None = None, force: bool = False, seed: int = 0,
                 chunk_seconds: float = stream.DECODE_CHUNK_SECONDS, decoder: str | None = None,
                 prior_path: str | Path | None = None) -> tuple[np.ndarray, Header]:
    """.vqs bytes -> (waveform float32 [n_samples] at the model's rate, header). `force`: decode codes
    from another model anyway (never when the shapes differ). decoder: "autoregressive" or "parallel"."""
    parsed = bitstream.read(data)
    header = parsed.header
    check_model(model, header, force)
    codes, pitch = symbols(model, parsed, prior_path)
    name, lf0 = _voice(model, header, speaker)
    pieces = list(stream.decode_stream(model, _encoded(header, codes, pitch, parsed.top), name, lf0, chunk_seconds,
                                       torch.Generator().manual_seed(seed), decoder))
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), header


# --- files ---------------------------------------------------------------------------------------------

def check_output(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output that is the input or exists (unless `overwrite`)."""
    if dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: the output would overwrite the input")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst}: exists (use --force to overwrite)")


def write_atomic(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Write bytes to a temporary file beside `path`, then rename: never half a file."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)


def encode_file(model: VQSpeech, in_path: str | Path, out_path: str | Path, force: bool = False,
                speaker: str | None = None, prior=True, refine_steps: int = 0, **chunking) -> Header:
    """Audio file (any soundfile format and rate) -> .vqs file. `force`: overwrite out_path.

    Streams: two passes over the file (level, then codes; a third to refine them), memory independent of its length.
    speaker, refine_steps: as encode_audio's."""
    src, dst = Path(in_path), Path(out_path)
    if dst.suffix.lower() != VQS_EXTENSION:
        raise ValueError(f"{dst}: an encoded file's name must end in {VQS_EXTENSION}")
    check_output(src, dst, force)
    rate = model.config.sample_rate
    level = audio.measure_level(audio.read_blocks(src, rate), name=str(src))
    head: list[np.ndarray] = []  # speaker "auto": the first seconds, which place the voice, kept as they stream by

    def blocks():
        from vqspeech.conversion import FIT_MAX_SECONDS

        wanted = int(FIT_MAX_SECONDS * rate) if speaker == AUTO_SPEAKER and model.config.voice == "table" else 0
        for x in audio.read_blocks(src, rate):
            x = (x * level.gain).astype(np.float32)
            if wanted > 0:
                head.append(x[:wanted])
                wanted -= len(x)
            yield x

    try:
        enc = encoding.encode_stream(model, blocks(), level.n_samples, peak=level.peak, **chunking)
    except ValueError as e:
        raise AudioError(f"{src}: {e}") from None
    speaker = _resolve_speaker(model, speaker, np.concatenate(head) if head else np.zeros(0, np.float32), enc)
    if refine_steps > 0:
        normalised = ((x * level.gain).astype(np.float32) for x in audio.read_blocks(src, rate))
        enc = refine.refine(model, normalised, level.n_samples, enc, refine_steps, speaker)
    data = _pack(model, enc, speaker, prior)
    write_atomic(dst, data, force)
    return bitstream.read(data).header


def read_vqs(path: str | Path) -> tuple[bitstream.Parsed, int]:
    """A .vqs file -> (its Parsed contents, file size in bytes); BitstreamError naming the file (bitstream.read_file)."""
    return bitstream.read_file(path)


def decode_file(model: VQSpeech, in_path: str | Path, out_path: str | Path, force: bool = False,
                force_model: bool = False, speaker: str | int | None = None, sample_rate: int | None = None,
                seed: int = 0, chunk_seconds: float = stream.DECODE_CHUNK_SECONDS, decoder: str | None = None,
                prior_path: str | Path | None = None) -> tuple[Header, str]:
    """.vqs file -> audio file (.wav, .flac or .ogg by its extension) at `sample_rate` (default the
    model's), written piece by piece and renamed into place at the end. `force`: overwrite out_path;
    `force_model`: decode codes from another model. Returns (header, the voice that rendered it: a training
    speaker's name, or "of the file" for the voice vector it carries)."""
    src, dst = Path(in_path), Path(out_path)
    check_output(src, dst, force)
    parsed, _ = read_vqs(src)
    header = parsed.header
    try:
        check_model(model, header, force_model)
        codes, pitch = symbols(model, parsed, prior_path)
    except (BitstreamError, entropy.PriorError) as e:
        raise type(e)(f"{src}: {e}") from None
    name, lf0 = _voice(model, header, speaker)
    rate = model.config.sample_rate
    with audio.AudioWriter(dst, sample_rate or rate, rate, overwrite=force) as out:
        for piece in stream.decode_stream(model, _encoded(header, codes, pitch, parsed.top), name, lf0, chunk_seconds,
                                          torch.Generator().manual_seed(seed), decoder):
            out.write(piece)
    if name and speaker is None and header.speaker is not None and header.speaker not in model.speaker_names:
        # --force-model on another model's file: say whose voice it became, not only its name.
        return header, f"{name} (the file's speaker {header.speaker!r} is not one of this model's; its first voice)"
    return header, name or VOICE_OF_THE_FILE


def convert_file(model: VQSpeech, in_path: str | Path, out_path: str | Path, target: str | None = None,
                 voice=None, force: bool = False, decoder: str | None = None,
                 seed: int = 0, latent_map=None) -> tuple[float, float]:
    """Audio file -> converted audio file (.wav, .flac or .ogg by its extension), to `target` (a training
    speaker) or `voice` (a conversion.Voice from reference_voice, computed once for many files; `latent_map`: a
    latent_match.LatentMatch of the same references, or None). Written to a temporary
    file and renamed; an existing output is refused unless `force`, before any work is done.
    Returns (seconds of audio, seconds of conversion per second of audio)."""
    import time

    from vqspeech import audio, conversion

    src, dst = Path(in_path), Path(out_path)
    if (target is None) == (voice is None):
        raise ValueError("give exactly one of a target speaker or a voice")
    rate = model.config.sample_rate
    writer = audio.AudioWriter(dst, rate, rate, overwrite=force)  # refuses an unknown format now, not after the work
    check_output(src, dst, force)
    wav = audio.load(src, rate)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    if voice is None:
        out = conversion.convert(model, wav, target=target, decoder=decoder, generator=generator)
    else:
        match = latent_map if latent_map is None else latent_map.for_source(model, wav)
        out = conversion.render(model, model.encode(wav, latent_map=match), voice, decoder=decoder, generator=generator)
    seconds = len(wav) / model.config.sample_rate
    rtf = (time.perf_counter() - start) / seconds
    with writer as f:
        f.write(out)
    return seconds, rtf
