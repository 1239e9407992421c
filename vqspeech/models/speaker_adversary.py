"""A speaker adversary on the codes, for joint training: the codes should carry what was said, not who said it.

Conversion decodes one speaker's codes with another's embedding; whatever voice the codes still carry comes
through as the source's (bench/vc.py: converted audio nearer in mel-cepstrum to the source's recording of the
sentence than to the target's). A small classifier learns to name the speaker from the quantized code vectors;
a gradient-reversal layer (Ganin & Lempitsky 2015) hands the encoder the negated, scaled gradient, so the encoder
learns to make that classifier fail while the classifier keeps trying. Only the encoder side is pushed: the
codebook's own EMA update is untouched.
"""

from __future__ import annotations

import torch

from vqspeech.models.speaker_classifier import PooledConvClassifier


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient comes back multiplied by -scale."""
    return _ReverseGradient.apply(x, scale)


class CodeSpeakerAdversary(PooledConvClassifier):
    def __init__(self, code_dim: int, n_speakers: int, channels: int = 128):
        super().__init__(code_dim, n_speakers, channels, layers=2)

    def forward(self, quantized: torch.Tensor, reversal: float) -> torch.Tensor:
        """quantized [B, D, F] (the straight-through code vectors) -> speaker logits [B, n_speakers], pooled over
        time. The encoder behind `quantized` receives -reversal times this classifier's gradient."""
        return super().forward(reverse_gradient(quantized.float(), reversal))
