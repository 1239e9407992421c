"""The codec: the .vqs bitstream (`bitstream`), chunked encoding and decoding (`stream`), and the
file-level API the command line and the demo share (`api`, which imports torch: import it explicitly)."""

from vqspeech.codec.bitstream import BitstreamError, Header, pack, unpack

__all__ = ["BitstreamError", "Header", "pack", "unpack"]
