"""vqspeech: a speech codec and voice converter on VQ-VAE discrete codes.

    import vqspeech
    model = vqspeech.load()                       # the shipped model (or load("my-model.pt"))
    data = vqspeech.encode(model, wav, 16000)     # float [T] at any rate -> the bytes of a .vqs file
    out, header = vqspeech.decode(model, data)    # -> 16 kHz float32 [T], in the voice the file carries
    out, _ = vqspeech.decode(model, data, speaker="TM1")             # in a training speaker's voice
    y = vqspeech.convert(model, wav16k, references=[ref1, ref2])     # in the voice of a few seconds of audio

The same functions the command line and the demo call (vqspeech.codec.api, vqspeech.conversion). Imported on first
use, so that `import vqspeech` (and `vqspeech --help`) stays instant.
"""

__version__ = "0.1.0"

_PUBLIC = {"load": ("vqspeech.checkpoint", "load"), "encode": ("vqspeech.codec.api", "encode_audio"),
           "decode": ("vqspeech.codec.api", "decode_bytes"), "convert": ("vqspeech.conversion", "convert"),
           "Header": ("vqspeech.codec.bitstream", "Header"), "Encoded": ("vqspeech.models.vqvae", "Encoded")}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'vqspeech' has no attribute {name!r}")
    import importlib

    module, attr = _PUBLIC[name]
    return getattr(importlib.import_module(module), attr)
