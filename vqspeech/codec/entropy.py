"""The prior as the bitstream's entropy model: token streams range-coded under the prior's predictions.

    prior = load_prior(path, model)                a prior file, refused unless it is of `model`
    prior = prior_named(model, id)                 the prior a file names: the model's, or an earlier one kept beside it
    retire_prior(model_path)                       before retraining: the model's prior kept beside it by id, compressed
    words = encode_tokens(prior, tokens, voice)    tokens [N] -> the range coder's 32-bit words
    tokens = decode_tokens(prior, words, N, voice)
    write_prior(exact, model_fingerprint, info, out)  an exact prior -> a prior file (train/prior_loop.export_prior)

The coder is constriction's range coder (a queue: symbols come out in the order they went in) with its
Categorical model (perfect=False), fed integer frequencies from the exact prior (models/prior_exact.py): the
encoder and the decoder derive the same integers on every machine, and constriction quantises identical inputs
identically. Lossless: decode_tokens returns exactly the tokens encode_tokens was given.

The stream is coded in pieces of CHUNK tokens with the prior's state carried across, so memory stays bounded
(the state is the last window of each layer's keys and values) however long the file.

A prior file (torch.save of integer tensors and primitives, loaded with weights_only=True) holds the exact prior's
integers, its layout, the fingerprint of the codec model whose codes it models, and its own fingerprint
(PRIOR_ID_BYTES of sha256 over its contents), which every file it codes records. Earlier priors kept for old files
are the same file xz-compressed (PRIOR.pt.xz, a third smaller; the id is of the contents, so it does not change).
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vqspeech.models.frame_prior_exact import ExactFramePrior
from vqspeech.models.prior_exact import ExactPrior

FORMAT = "vqspeech-prior"
PRIOR_ID_BYTES = 4
CHUNK = 640  # tokens fed to the prior at once when encoding (any size gives the same bytes; 160-1280 ran alike)
# Decoding steps one token at a time. Below this many tokens (about 10 s of speech) NumPy's step (~150-250 us a
# token) finishes before the compiled step has loaded (0.6-0.7 s a process, then ~30 us a token): measured on the
# default model's frame prior, one thread.
COMPILED_FROM_TOKENS = 3000
_WEIGHT_DTYPES = (torch.int16, torch.int32, torch.int64)
PRIOR_KINDS = {"token": ExactPrior, "frame": ExactFramePrior}  # meta["kind"] -> the exact twin that runs it


class PriorError(ValueError):
    """A prior file that is missing, unreadable, corrupt, or of another model."""


@dataclass
class Prior:
    exact: ExactPrior
    model_fingerprint: str  # hex, the codec model's (codec.api.fingerprint), cut to what a .vqs keeps
    id: str  # hex, PRIOR_ID_BYTES
    info: dict  # training: steps, cpu_seconds, and the held-out figures at export
    path: str = ""


def _prior_id(tensors: dict[str, np.ndarray], meta: dict) -> str:
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name], "<i8").tobytes())
    return digest.hexdigest()[: 2 * PRIOR_ID_BYTES]


def write_prior(exact: ExactPrior, model_fingerprint: str, info: dict, out: str | Path) -> "Prior":
    """An exact prior of the codec model `model_fingerprint` -> a prior file at `out` (written atomically)."""
    from vqspeech.codec.bitstream import short_fingerprint
    from vqspeech.fileio import atomic_path

    tensors = {}
    for name, v in exact.tensors.items():
        peak = int(np.abs(v).max()) if v.size else 0
        dtype = torch.int16 if peak < 1 << 15 else torch.int32 if peak < 1 << 31 else torch.int64
        tensors[name] = torch.from_numpy(np.asarray(v, np.int64)).to(dtype)
    state = {"format": FORMAT, "meta": exact.meta, "model_fingerprint": short_fingerprint(model_fingerprint),
             "tensors": tensors, "info": info}
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    return load_prior(out)


def load_prior(path: str | Path, model=None) -> Prior:
    """A prior file -> Prior; with `model`, refused unless it models that model's codes. Every problem is one
    PriorError naming the file."""
    path = Path(path)
    if not path.exists():
        raise PriorError(f"{path}: no such prior file (train one: vqspeech train-prior)")
    try:
        data = path.read_bytes()
        if path.suffix == ".xz":  # an earlier prior kept for old files (retire_prior)
            data = lzma.decompress(data)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except lzma.LZMAError as e:
        raise PriorError(f"{path}: not a readable prior file (a corrupt xz stream: {e})") from None
    except Exception as e:
        from vqspeech.checkpoint import why_unreadable

        raise PriorError(f"{path}: not a readable prior file ({why_unreadable(e)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PriorError(f"{path}: not a vqspeech prior file")
    try:
        tensors = {k: v.numpy().astype(np.int64) for k, v in state["tensors"].items() if v.dtype in _WEIGHT_DTYPES}
        meta = state["meta"]
        kind = meta.get("kind", "token")  # files before the frame prior have no kind
        if kind not in PRIOR_KINDS:
            raise PriorError(f"{path}: a prior of kind {kind!r}, which this version of vqspeech does not know")
        exact = PRIOR_KINDS[kind](tensors, meta)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise PriorError(f"{path}: a corrupt prior file ({type(e).__name__}: {e})") from None
    prior = Prior(exact, state["model_fingerprint"], _prior_id(tensors, meta), state.get("info") or {}, str(path))
    if model is not None:
        from vqspeech.codec import bitstream
        from vqspeech.models.vqvae import model_fingerprint

        ours = bitstream.short_fingerprint(model_fingerprint(model).hex())
        if prior.model_fingerprint != ours:
            raise PriorError(f"{path}: a prior of another model (model {prior.model_fingerprint}, this model {ours}); "
                             "train one for this model: vqspeech train-prior")
        if meta.get("voice_dim") != model.config.speaker_dim:
            raise PriorError(f"{path}: a prior for voices of size {meta.get('voice_dim')}, this model's have {model.config.speaker_dim}")
    return prior


def prior_for(model, path: str | Path | None = None) -> Prior:
    """The prior of `model`: the file at `path`, else the one beside the model's file (checkpoint.prior_path), read
    once and kept on the model."""
    path = Path(path) if path else model.prior_path
    if path is None:
        raise PriorError("this model was not loaded from a file, so no prior lies beside it: give the prior's path")
    cached = getattr(model, "_prior", None)
    if cached is None or cached.path != str(path):
        cached = model._prior = load_prior(path, model)
    return cached


def prior_named(model, prior_id: str, path: str | Path | None = None) -> Prior:
    """The prior a file records by id: the model's own (prior_for), else, for files coded before its prior was
    retrained, an earlier one kept beside the model as MODEL.prior.<id>.pt.xz (retire_prior) or MODEL.prior.<id>.pt
    (the model's own where none matches: the caller reports the mismatch). A prior given by `path` is the only one
    tried."""
    current = prior_for(model, path)
    if current.id == prior_id or path or model.prior_path is None:
        return current
    compressed = kept_prior_path(model.prior_path, prior_id)
    earlier = next((p for p in (compressed, compressed.with_suffix("")) if p.exists()), None)
    if earlier is None:
        return current
    kept = model.__dict__.setdefault("_earlier_priors", {})
    if prior_id not in kept:
        prior = load_prior(earlier, model)
        if prior.id != prior_id:
            raise PriorError(f"{earlier}: named for prior {prior_id}, but it holds prior {prior.id}")
        kept[prior_id] = prior
    return kept[prior_id]


def kept_prior_path(prior_path: str | Path, prior_id: str) -> Path:
    """Where a model whose prior lives at `prior_path` (MODEL.prior.pt) keeps its earlier prior `prior_id`:
    MODEL.prior.<id>.pt.xz."""
    return Path(prior_path).with_suffix(f".{prior_id}.pt.xz")


def retire_prior(model_path: str | Path) -> Path:
    """Before a model's prior is replaced: its prior file moved beside it as MODEL.prior.<id>.pt.xz, so that the files
    it coded still decode (prior_named) -> that path. xz, because a kept prior is read only for old files and its
    small integers compress by a third."""
    from vqspeech.checkpoint import prior_path
    from vqspeech.fileio import atomic_path

    current = prior_path(model_path)
    prior = load_prior(current)
    kept = kept_prior_path(current, prior.id)
    with atomic_path(kept) as tmp:
        Path(tmp).write_bytes(lzma.compress(current.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
    if load_prior(kept).id != prior.id:  # never drop the only copy on a bad write
        raise PriorError(f"{kept}: the compressed copy does not read back as prior {prior.id}")
    current.unlink()
    return kept


def _frequency_pieces(exact: ExactPrior, tokens: np.ndarray, voice: np.ndarray):
    """The exact prior run along a known stream (ExactPrior.frequencies_along), about CHUNK positions at a time (whole
    frames of a frame prior): yields (first position, frequencies [m, V] those m positions are coded under)."""
    state = exact.start(voice)
    inputs = np.concatenate([[exact.start_token], np.asarray(tokens, np.int64)[:-1]])
    piece = max(1, CHUNK // exact.period) * exact.period
    for a in range(0, len(tokens), piece):
        yield a, exact.frequencies_along(state, inputs[a : a + piece], a)


def encode_tokens(prior: Prior, tokens: np.ndarray, voice: np.ndarray) -> np.ndarray:
    """tokens [N] (data.codes.tokens_of), voice [voice_dim] -> uint32 words of the range coder.

    Every token is known, so the prior runs over pieces of the stream at once in NumPy: the frequencies that
    decoding's steps derive, with memory bounded by the piece."""
    import constriction

    tokens = np.asarray(tokens, np.int64)
    encoder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    for a, freqs in _frequency_pieces(prior.exact, tokens, voice):
        encoder.encode(tokens[a : a + len(freqs)].astype(np.int32), family, freqs)
    return encoder.get_compressed()


def decode_tokens(prior: Prior, words: np.ndarray, n: int, voice: np.ndarray) -> np.ndarray:
    """The inverse of encode_tokens: uint32 words, the number of tokens, the same voice -> tokens [n]."""
    import constriction

    exact = prior.exact
    decoder = constriction.stream.queue.RangeDecoder(np.asarray(words, np.uint32))
    stream = exact.stepper(voice, compiled=n >= COMPILED_FROM_TOKENS)
    out = np.empty(n, np.int64)
    previous = exact.start_token
    for t in range(n):
        freqs = stream.next_frequencies(previous)
        previous = out[t] = decoder.decode(constriction.stream.model.Categorical(freqs, perfect=False))
    return out


def token_bits(prior: Prior, tokens: np.ndarray, voice: np.ndarray) -> np.ndarray:
    """-log2 p of each token under the exact prior [N] (what the coder spends, to ~1e-4 bits a token)."""
    tokens = np.asarray(tokens, np.int64)
    bits = np.empty(len(tokens))
    for a, f in _frequency_pieces(prior.exact, tokens, voice):
        own = f[np.arange(len(f)), tokens[a : a + len(f)]]
        bits[a : a + len(f)] = np.log2(f.sum(1)) - np.log2(own)
    return bits
