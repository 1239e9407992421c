"""Where bfloat16 pays, for training and for inference alike.

A CPU with bf16 instructions (AVX512-BF16 or AMX) multiplies bfloat16 matrices about twice as fast as float32; one
without them emulates bfloat16 and runs about 16x slower than float32 (measured on an AVX2-only EPYC: a training step
8.9 s against 0.55 s). So bfloat16 is used only where the device has it natively.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

FLOAT32_ENV = "VQSPEECH_FLOAT32"  # set to 1: inference in float32 even where bfloat16 is native


@functools.lru_cache(maxsize=None)
def _cpu_has_bf16() -> bool:
    try:
        flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "").split()
    except OSError:  # not Linux: assume the emulated, slow path
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(dev: torch.device) -> bool:
    """Whether bfloat16 autocast pays on `dev`: any CUDA device that supports it, or a CPU with bf16 instructions."""
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return dev.type == "cpu" and _cpu_has_bf16()


def inference_bf16(dev: torch.device) -> bool:
    """Whether inference_autocast runs bfloat16 on `dev`: natively supported there, and not turned off by
    VQSPEECH_FLOAT32."""
    return os.environ.get(FLOAT32_ENV, "") in ("", "0") and native_bf16(dev)


def inference_autocast(dev: torch.device):
    """The context inference runs its heavy layers in (the encoder's strided convolutions, the parallel decoder when
    it renders, refines or adapts to a voice): bfloat16 autocast where `dev` has it natively, else nothing. The
    decoder's output stays 42-48 dB SNR from float32's, 98-99 % of codes are the same (bench/precision.py). The
    environment variable VQSPEECH_FLOAT32=1 turns it off."""
    if not inference_bf16(dev):
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16)
