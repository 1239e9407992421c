"""The prior stepping once per pitch frame: a causal transformer over frames, and a small network within each frame.

models/prior.CodePrior runs its whole transformer once per token: 312 times a second of v3's stream, which is what
holds range decoding under 20x real time on one core (bench/results/prior-default-v3.md). Here the transformer runs
once per pitch frame (a pitch symbol and its `pitch_frames` codes: 62.5 a second), as a depth transformer does
across the codebooks of a frame (Lee et al. 2022, RQ-Transformer; Yang et al. 2023, UniAudio), and a two-layer
network predicts the frame's tokens one after another from the frame's state and the tokens of the frame so far.

    frame f's input   = sum over slots j of E_in[j, token(f-1, j)]   (+ the voice)   or E_start for f = 0
    h_f               = transformer(inputs up to f)                   attending `window` frames back
    u(f, k)           = h_f + S[k] + sum over j < k of E_local[j, token(f, j)] + E_prev[the token just before]
    logits(f, k)      = head(norm(u + W2 relu(W1 norm(u))))           masked to slot k's kind (pitch or code)

Every part is a sum of embeddings, a linear map, ReLU or RMSNorm, as in CodePrior, so that an exact integer twin
can be built the same way. Per frame the work is one transformer step and `period` small steps: about 2.4x less
arithmetic than CodePrior's `period` transformer steps at the same width.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vqspeech.config import PriorModelConfig
from vqspeech.data.codes import TokenLayout
from vqspeech.models.prior import Block, RMSNorm, stream_loss


class FramePrior(nn.Module):
    def __init__(self, config: PriorModelConfig, layout: TokenLayout, voice_dim: int,
                 codebook: torch.Tensor | None = None):
        """codebook [codebook_size, latent_dim]: the codec's code vectors, wanted with config.tie_codebook (a
        checkpoint's own copy when it is loaded again)."""
        super().__init__()
        if config.dim % config.heads:
            raise ValueError(f"prior dim {config.dim} is not a multiple of its {config.heads} heads")
        self.config, self.layout, self.voice_dim = config, layout, voice_dim
        P, V, D = layout.period, layout.vocab, config.dim
        self.start_token = V  # what stands before the stream, in every slot of the frame before the first
        self.input_embedding = nn.Embedding(P * V + 1, D)  # [slot * V + token]; the last row: no frame before
        self.voice_projection = nn.Linear(voice_dim, D)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))  # window counted in frames
        self.local_embedding = nn.Embedding(P * V, D)  # [slot * V + token]: the frame's tokens so far
        self.slot_embedding = nn.Embedding(P, D)  # which slot of the frame is predicted
        # The token just before, on its own: in the sum above it is mixed with the frame's others, and codes come in
        # runs (mean length 2), so it is the strongest single predictor of the next.
        self.previous_embedding = nn.Embedding(V + 1, D)
        self.local_norm = RMSNorm(D)
        self.local_in = nn.Linear(D, config.local_dim)
        self.local_out = nn.Linear(config.local_dim, D)
        self.local_drop = nn.Dropout(config.local_dropout)
        self.norm = RMSNorm(D)
        self.head = nn.Linear(D, V)
        mask = torch.zeros(P, V)  # [slot, vocab]: 0 where the slot's kind, -inf elsewhere
        if layout.pitch_levels:
            mask[0, : layout.codebook_size] = float("-inf")
            mask[1:, layout.codebook_size :] = float("-inf")
        self.register_buffer("kind_mask", mask, persistent=False)
        self.register_buffer("slot_offsets", torch.arange(P) * V, persistent=False)
        if config.tie_codebook:
            if codebook is None:
                raise ValueError("model.tie_codebook: the prior needs the codec's codebook")
            K = layout.codebook_size
            vectors = codebook.detach().float()
            self.register_buffer("code_vectors", vectors / vectors.pow(2).mean().sqrt())  # [K, latent], unit RMS
            latent = vectors.shape[1]
            # Each embedding's code rows are a free part plus the code's vector through a learned map; the free parts
            # start at a tenth of their usual size, so that at first codes are told apart mostly by their vectors.
            self.tie_input, self.tie_local = nn.Linear(latent, D, bias=False), nn.Linear(latent, D, bias=False)
            self.tie_previous, self.tie_head = nn.Linear(latent, D, bias=False), nn.Linear(D, latent, bias=False)
            with torch.no_grad():
                for table in (self.input_embedding, self.local_embedding):
                    table.weight[: P * V].view(P, V, D)[:, :K] *= 0.1
                self.previous_embedding.weight[:K] *= 0.1
                self.head.weight[:K] *= 0.1

    def tables(self) -> dict[str, torch.Tensor]:
        """The embedding and head weights in effect: with tie_codebook, the code rows' free parts plus what the code
        vectors give; else the plain weights. What training reads and what the exact twin is made of."""
        names = ("input_embedding", "local_embedding", "previous_embedding", "head")
        weights = {name: getattr(self, name).weight for name in names}
        if not self.config.tie_codebook:
            return weights
        K, V, D = self.layout.codebook_size, self.layout.vocab, self.config.dim
        c = self.code_vectors

        def with_codes(w: torch.Tensor, rows_per_block: int, tied: torch.Tensor) -> torch.Tensor:
            blocks = w[: w.shape[0] // rows_per_block * rows_per_block].view(-1, rows_per_block, D)
            blocks = torch.cat([blocks[:, :K] + tied, blocks[:, K:]], 1).reshape(-1, D)
            return torch.cat([blocks, w[blocks.shape[0] :]])  # the input table's last row: no frame before

        return {"input_embedding": with_codes(weights["input_embedding"], V, self.tie_input(c)),
                "local_embedding": with_codes(weights["local_embedding"], V, self.tie_local(c)),
                "previous_embedding": with_codes(weights["previous_embedding"], V + 1, self.tie_previous(c)),
                "head": with_codes(weights["head"], V, c @ self.tie_head.weight)}

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict of the untied FramePrior this one computes (prior_exact.ExactPrior.freeze reads it)."""
        tied = ("code_vectors", "tie_input.", "tie_local.", "tie_previous.", "tie_head.")
        sd = {k: v for k, v in self.state_dict().items() if not k.startswith(tied)}
        sd.update({f"{name}.weight": w.detach() for name, w in self.tables().items()})
        return sd

    def frame_inputs(self, previous: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """previous [B, F, P] long (the tokens of the frame before each frame; start_token throughout before the
        stream's first), table: tables()["input_embedding"] -> [B, F, D]."""
        start = previous[..., 0] == self.start_token
        rows = self.slot_offsets + previous.clamp(0, self.layout.vocab - 1)
        x = F.embedding(rows, table).sum(-2)
        return torch.where(start[..., None], table[-1], x)

    def frame_states(self, previous: torch.Tensor, voice: torch.Tensor, tables: dict[str, torch.Tensor],
                     first_frame: int = 0) -> torch.Tensor:
        """previous [B, F, P] (frame_inputs), voice [B, voice_dim] -> h [B, F, D]: each frame's state before any of
        its tokens."""
        B, n, _ = previous.shape
        x = self.frame_inputs(previous, tables["input_embedding"]) + self.voice_projection(voice)[:, None]
        positions = torch.arange(first_frame, first_frame + n, device=previous.device)
        distance = positions[:, None] - positions[None, :]
        allowed = (distance >= 0) & (distance < self.config.window)
        for block in self.blocks:
            x = block(x, allowed, distance)
        return x

    def local_logits(self, h: torch.Tensor, frame: torch.Tensor, previous: torch.Tensor,
                     tables: dict[str, torch.Tensor]) -> torch.Tensor:
        """h [B, F, D], frame [B, F, P] long (the frame's own tokens; only those before each slot are read),
        previous [B, F, P] the token before each position (start_token before the stream) -> masked logits
        [B, F, P, V]."""
        e = F.embedding(self.slot_offsets + frame.clamp(0, self.layout.vocab - 1), tables["local_embedding"])  # [B, F, P, D]
        before = F.pad(e.cumsum(-2)[..., :-1, :], (0, 0, 1, 0))  # tokens before slot k, summed
        u = h[..., None, :] + self.slot_embedding.weight + before + F.embedding(previous, tables["previous_embedding"])
        u = u + self.local_drop(self.local_out(F.relu(self.local_in(self.local_norm(u)))))
        return F.linear(self.norm(u), tables["head"], self.head.bias) + self.kind_mask

    def forward(self, tokens: torch.Tensor, voice: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, N] (whole frames, N a multiple of the period; PAD past a stream's end), voice [B, voice_dim],
        previous [B, P] the frame before (start_token throughout where the stretch starts the stream; None: all do)
        -> masked logits [B, N, V] of every position given everything before it."""
        B, N = tokens.shape
        P = self.layout.period
        if N % P:
            raise ValueError(f"{N} tokens are not a whole number of frames of {P}")
        frames = tokens.clamp_min(0).view(B, N // P, P)
        if previous is None:
            previous = torch.full((B, P), self.start_token, dtype=torch.long, device=tokens.device)
        tables = self.tables()  # once a forward: with tie_codebook they are computed from the code vectors
        h = self.frame_states(torch.cat([previous[:, None], frames[:, :-1]], 1), voice, tables)
        before = torch.cat([previous[:, -1:], tokens[:, :-1].clamp_min(0)], 1).view(B, N // P, P)
        return self.local_logits(h, frames, before, tables).reshape(B, N, -1)

    def loss(self, tokens: torch.Tensor, voice: torch.Tensor, previous: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """As CodePrior.loss, but `previous` is the whole frame before [B, P] (or None)."""
        return stream_loss(self.forward(tokens, voice, previous), tokens, self.layout)
