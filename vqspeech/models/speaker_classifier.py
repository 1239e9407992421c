"""A small speaker classifier on log-mel, the judge inside the parallel decoder's conversion loss.

Conversion decodes one speaker's codes with another's embedding. Trained on reconstruction alone, the decoder
may read the voice from the codes (which carry some of it) and ignore the embedding. A classifier trained on
real speech of the training speakers, then frozen, scores converted audio: its cross-entropy toward the target
speaker pulls the decoder to take the voice from the embedding (the domain-classification loss of StarGAN-VC,
Kameoka et al. 2018). It is ours and small; the benchmark judges with an independent model (resemblyzer).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

from vqspeech import features

log = logging.getLogger(__name__)

MEL_HOP = 256  # 16 ms frames: the voice lives in the envelope, not in fine timing


class PooledConvClassifier(nn.Module):
    """Frame features [B, C, F] -> class logits [B, n_classes]: 5-wide convs with ReLU, a mean over time, a linear
    layer. The body of both speaker classifiers: this judge on log-mel, and the code adversary on code vectors."""

    def __init__(self, in_channels: int, n_classes: int, channels: int = 128, layers: int = 3):
        super().__init__()
        convs = []
        for i in range(layers):
            convs += [nn.Conv1d(in_channels if i == 0 else channels, channels, 5, padding=2), nn.ReLU()]
        self.convs = nn.Sequential(*convs)
        self.out = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.convs(x).mean(-1))


class SpeakerClassifier(PooledConvClassifier):
    def __init__(self, n_speakers: int, n_mels: int = 80, channels: int = 128):
        super().__init__(n_mels, n_speakers, channels, layers=3)
        self.n_mels = n_mels

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, T] (T a multiple of MEL_HOP) -> logits [B, n_speakers]; the features are mean-pooled over time."""
        mel = features.log_mel(wav.float(), MEL_HOP, n_mels=self.n_mels)
        mel = mel - mel.mean(-1, keepdim=True).mean(1, keepdim=True)  # blind to overall level, not to the envelope
        return super().forward(mel)


def train_speaker_classifier(train_set, valid_set, n_speakers: int, steps: int, batch_size: int = 16,
                             seed: int = 0) -> SpeakerClassifier:
    """Fit on random crops of `train_set` (a SpeechDataset) with its own generator, so a resumed run rebuilds
    the same classifier; log held-out accuracy on `valid_set`. Returned frozen, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch_state = torch.get_rng_state()
    torch.manual_seed(seed)  # the initial weights, without disturbing the caller's random stream
    model = SpeakerClassifier(n_speakers)
    torch.set_rng_state(torch_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = train_set.batch(batch_size, generator)
        loss = F.cross_entropy(model(batch["wav"]), batch["speaker"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    model.requires_grad_(False)
    if valid_set is not None:
        with torch.no_grad():
            hits = total = 0
            for batch in valid_set.fixed_batches(batch_size, 4):
                hits += int((model(batch["wav"]).argmax(-1) == batch["speaker"]).sum())
                total += len(batch["speaker"])
        log.info("speaker classifier: %d steps, held-out accuracy %.2f on %d crops", steps, hits / total, total)
    return model
