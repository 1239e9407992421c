"""WaveNet decoder: causal dilated convolutions, gated units, residual and skip paths, 256-way softmax.

Local conditioning arrives at frame rate (one vector per `hop` samples) and is added to each layer's
gate pre-activations by broadcasting over the frame's samples: the same as upsampling by repetition
followed by a 1x1 convolution, without materialising the sample-rate tensor. A sample-rate excitation
signal (from the pitch track) is added at the input.

`forward` is the parallel (teacher-forced) pass used for training; `step` with a `WaveNetState` is the
cached autoregressive pass ("fast WaveNet"): each layer keeps a ring buffer of its last `dilation`
inputs, so a sample costs one matrix-vector product per layer, never the receptive field again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from vqspeech.config import DecoderConfig
from vqspeech.models import lpc


class WaveNet(nn.Module):
    def __init__(self, config: DecoderConfig, cond_channels: int, excitation_channels: int, n_classes: int, hop: int):
        super().__init__()
        self.config = config
        self.hop = hop
        R, S, L = config.residual_channels, config.skip_channels, config.layers
        self.dilations = [2 ** (i % config.dilation_cycle) for i in range(L)]
        # One class input (the previous sample), or with decoder.lpc_order the three or four of models/lpc.py (x[t-1],
        # p[t], e[t-1], e[t-lag]), each with its own rows of one table: stream s's class k is row s * n_classes + k.
        self.streams = lpc.N_STREAMS + int(config.pitch_lag) if config.lpc_order else 1
        self.n_classes, self.mu_law_bits = n_classes, int(round(math.log2(n_classes)))
        self.embed = nn.Embedding(n_classes * self.streams, R)
        self.register_buffer("offsets", torch.arange(self.streams) * n_classes, persistent=False)
        self.excitation = nn.Conv1d(excitation_channels, R, 1) if excitation_channels else None
        self.cond = nn.Conv1d(cond_channels, L * 2 * R, 1)
        self.dilated = nn.ModuleList(nn.Conv1d(R, 2 * R, 2, dilation=d) for d in self.dilations)
        self.res_skip = nn.ModuleList(nn.Conv1d(R, R + S, 1) for _ in range(L))
        self.out1 = nn.Conv1d(S, config.output_channels, 1)
        self.out2 = nn.Conv1d(config.output_channels, n_classes, 1)

    @property
    def receptive_field(self) -> int:
        return sum(self.dilations) + 1

    def embed_inputs(self, prev: torch.Tensor) -> torch.Tensor:
        """Class inputs [..., T] (one stream) or [..., streams, T] -> [..., T, R], the streams' embeddings summed."""
        if self.streams == 1:
            return self.embed(prev)
        return self.embed(prev + self.offsets[:, None]).sum(-3)

    def forward(self, prev: torch.Tensor, cond: torch.Tensor, excitation: torch.Tensor | None = None) -> torch.Tensor:
        """prev: [B, T] classes of the previous samples (prev[:, t] = target[:, t-1]), or [B, 3, T] for the LPC
        WaveNet (models/lpc.teacher_forcing; [B, 4, T] with pitch lags); cond: [B, C, T // hop]; excitation: [B, H, T] or None
        -> logits [B, n_classes, T]."""
        B, T = prev.shape[0], prev.shape[-1]
        R = self.config.residual_channels
        n_frames = T // self.hop
        h = self.embed_inputs(prev).transpose(1, 2)
        if self.excitation is not None:
            h = h + self.excitation(excitation)
        c = self.cond(cond).view(B, len(self.dilations), 2 * R, n_frames, 1)
        skip = 0
        for i, d in enumerate(self.dilations):
            z = self.dilated[i](F.pad(h, (d, 0)))
            z = (z.view(B, 2 * R, n_frames, self.hop) + c[:, i]).view(B, 2 * R, T)
            a = torch.tanh(z[:, :R]) * torch.sigmoid(z[:, R:])
            rs = self.res_skip[i](a)
            h = (h + rs[:, :R]) * math.sqrt(0.5)
            skip = skip + rs[:, R:]
        return self.out2(torch.relu(self.out1(torch.relu(skip))))

    # --- cached autoregressive sampling -------------------------------------------------------

    def init_state(self, cond: torch.Tensor, excitation: torch.Tensor | None) -> "WaveNetState":
        """Precompute everything that does not depend on the generated samples.

        cond: [B, C, F]; excitation: [B, H, F * hop] or None.
        """
        B, _, n_frames = cond.shape
        R = self.config.residual_channels
        c = self.cond(cond).view(B, len(self.dilations), 2 * R, n_frames)
        c = c + torch.stack([conv.bias for conv in self.dilated])[None, :, :, None]
        exc = self.excitation(excitation) if self.excitation is not None else None  # [B, R, T]
        buffers = [torch.zeros(B, d, R) for d in self.dilations]
        return WaveNetState(cond=c.permute(3, 0, 1, 2).contiguous(), excitation=None if exc is None else exc.permute(2, 0, 1).contiguous(),
                            buffers=buffers, t=0)

    def step(self, prev: torch.Tensor, state: "WaveNetState") -> torch.Tensor:
        """prev: [B] class of the previous sample ([B, 3 or 4]: the LPC WaveNet's inputs) -> logits [B, n_classes] for
        sample `state.t`; advances state."""
        R = self.config.residual_channels
        t = state.t
        h = self.embed_inputs(prev[..., None])[..., 0, :]
        if state.excitation is not None:
            h = h + state.excitation[t]
        c = state.cond[t // self.hop]  # [B, L, 2R]
        skip = 0
        for i, d in enumerate(self.dilations):
            w = self.dilated[i].weight  # [2R, R, 2]: tap 0 sees x[t - d], tap 1 sees x[t]
            buf = state.buffers[i]
            slot = t % d
            past = buf[:, slot]
            z = past @ w[:, :, 0].t() + h @ w[:, :, 1].t() + c[:, i]
            buf[:, slot] = h
            a = torch.tanh(z[:, :R]) * torch.sigmoid(z[:, R:])
            rs = a @ self.res_skip[i].weight[:, :, 0].t() + self.res_skip[i].bias
            h = (h + rs[:, :R]) * math.sqrt(0.5)
            skip = skip + rs[:, R:]
        o = torch.relu(torch.relu(skip) @ self.out1.weight[:, :, 0].t() + self.out1.bias)
        state.t += 1
        return o @ self.out2.weight[:, :, 0].t() + self.out2.bias


    @torch.no_grad()
    def sample_reference(self, cond: torch.Tensor, excitation: torch.Tensor | None, uniforms: torch.Tensor,
                         temperature: float, start: int, coeffs: torch.Tensor | None = None,
                         lags: torch.Tensor | None = None) -> torch.Tensor:
        """The sampling loop of fast_sampler's kernel, one PyTorch op at a time (what the kernel is checked against):
        cond [B, C, F], excitation [B, H, F * hop] or None, uniforms [B, F * hop] -> classes [B, F * hop]. For the
        LPC WaveNet, coeffs [B, F, P] and lags [B, F * hop] (models/lpc.py) feed back the signal it makes."""
        from vqspeech import audio
        from vqspeech.models.fast_sampler import sample_classes

        B, T = cond.shape[0], cond.shape[2] * self.hop
        bits = self.mu_law_bits
        state = self.init_state(cond, excitation)
        prev = torch.full((B,), start, dtype=torch.long)
        out = torch.empty(B, T, dtype=torch.long)
        if coeffs is not None:  # the signal's past in float64, as the kernel keeps it
            order = coeffs.shape[-1]
            signal = torch.zeros(B, T + order, dtype=torch.float64)
            x_prev = prev.clone()
        for t in range(T):
            inputs = prev
            if coeffs is not None:
                predicted = (coeffs[:, t // self.hop].double() * signal[:, t: t + order].flip(-1)).sum(-1)
                streams = [x_prev, audio.mu_law_encode(predicted, bits), prev]
                if lags is not None:
                    source = t - lags[:, t]
                    back = out[torch.arange(B), source.clamp(min=0)]
                    streams.append(torch.where((lags[:, t] > 0) & (source >= 0), back, torch.full_like(back, start)))
                inputs = torch.stack(streams, -1)
            prev = sample_classes(self.step(inputs, state), uniforms[:, t], temperature)
            out[:, t] = prev
            if coeffs is not None:
                signal[:, t + order] = predicted + audio.mu_law_decode(prev, bits).double()
                x_prev = audio.mu_law_encode(signal[:, t + order], bits)
        return out


@dataclass
class WaveNetState:
    cond: torch.Tensor  # [F, B, L, 2R] per-layer conditioning plus dilated-conv bias
    excitation: torch.Tensor | None  # [T, B, R]
    buffers: list[torch.Tensor]  # per layer [B, dilation, R] ring buffer of that layer's past inputs
    t: int
