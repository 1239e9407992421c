"""The prior's exact twin: the same transformer in integer arithmetic, bit-identical on every machine.

An entropy coder's encoder and decoder must derive identical frequency tables, or the decoder reads garbage. A
float network does not promise that: a BLAS sums in an order that depends on the CPU, the thread count and the
library, and exp/log differ in the last bit between libms. So the codec never runs the float prior; it runs this
one, built once from it (`ExactPrior.freeze`) and stored as integers:

- every value is an integer (activations in fixed point with ACT_BITS fractional bits, weights with a per-matrix
  power-of-two scale), held in float64 arrays only so that BLAS does the products. Every partial sum of integers
  below 2**53 is exact, so a matmul gives the same integer in any summation order, on any CPU, under any threads;
- the only other operations are the ones IEEE 754 rounds correctly (division, square root) and floor, whose
  results are therefore the same everywhere;
- exp is a table of integers made at freeze time and stored with the weights (softmax of attention, and the
  frequencies handed to the range coder), so no libm is consulted when coding.

The twin's predictions differ from the float model's only by the rounding (bench/prior.py reports both).

    exact = ExactPrior.freeze(prior)         from a trained models.prior.CodePrior
    state = exact.start(voice)               voice [voice_dim] float32 -> a fresh stream
    logits = exact.feed(state, inputs)       inputs [n] (token before each position) -> int logits [n, V]
    freqs = exact.frequencies_of(logits[i], t) -> integer frequencies [V] of stream position t, for the range coder
    stream = exact.stepper(voice)            one token at a time: stream.next(previous token) -> logits [V]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vqspeech.models.prior import RMS_EPS

ACT_BITS = 8  # fractional bits of activations
WEIGHT_BITS = 11  # |integer weight| < 2**WEIGHT_BITS
LOGIT_BITS = 5  # attention scores and output logits in steps of 1/32 nat
EXP_SCALE_BITS = 16  # attention weights: round(2**16 exp(-d)), d in 1/32 nat
FREQ_SCALE_BITS = 20  # range-coder frequencies: max(1, round(2**20 exp(-d)))
EXP_RANGE_NATS = 24  # beyond this below the maximum a weight is 0 (attention) or 1 (frequency)
ACT_LIMIT = float(1 << 24)  # activations are clipped here: with it every sum stays far below 2**53
MASKED = -(1 << 40)  # a score no position reaches


def _exp_table(scale_bits: int, floor: int) -> np.ndarray:
    d = np.arange(EXP_RANGE_NATS << LOGIT_BITS) / (1 << LOGIT_BITS)
    return np.maximum(floor, np.round(np.exp(-d) * (1 << scale_bits))).astype(np.int64)


def _int_weight(w: np.ndarray) -> tuple[np.ndarray, int]:
    """float weights -> (integers, shift) with w ~= integers / 2**shift and |integers| < 2**WEIGHT_BITS."""
    peak = float(np.abs(w).max()) or 1.0
    shift = int(WEIGHT_BITS - 1 - np.floor(np.log2(peak)))
    return np.round(w.astype(np.float64) * 2.0**shift), shift


def _int_act(x: np.ndarray) -> np.ndarray:
    """float values -> fixed point integers (round(x * 2**ACT_BITS)) as float64."""
    return np.round(np.asarray(x, np.float64) * (1 << ACT_BITS))


@dataclass
class Linear:
    weight: np.ndarray  # [out, in] integers
    shift: int
    bias: np.ndarray | None  # [out] integers at ACT_BITS

    def __post_init__(self):
        self._weight_t = np.ascontiguousarray(np.asarray(self.weight, np.float64).T)  # [in, out]: BLAS reads it in place
        self._unit = 2.0**-self.shift  # a power of two: multiplying by it is exact

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x [n, in] fixed point -> [n, out] fixed point (floor)."""
        y = np.floor((x @ self._weight_t) * self._unit)
        return y if self.bias is None else y + self.bias

    @classmethod
    def of(cls, weight, bias=None) -> "Linear":
        w, shift = _int_weight(weight.detach().double().numpy())
        return cls(w, shift, None if bias is None else _int_act(bias.detach().double().numpy()))


def _rms_norm(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """x [n, D] fixed point, gain [D] fixed point -> [n, D] fixed point: x / rms(x) * gain."""
    rms = np.sqrt((x * x).sum(-1, keepdims=True) / x.shape[-1] + RMS_EPS * float(1 << 2 * ACT_BITS))
    return np.floor(x * gain / rms)


@dataclass
class Layer:
    attn_norm: np.ndarray
    qkv: Linear  # query rows pre-scaled by 1/sqrt(head dim)
    out: Linear
    distance_bias: np.ndarray  # [H, W] integers at LOGIT_BITS
    ff_norm: np.ndarray
    ff_in: Linear
    ff_out: Linear


@dataclass
class State:
    """One stream being coded: its position and each layer's keys and values of the last window - 1 positions."""

    position: int
    voice: np.ndarray  # [D] the projected voice, fixed point
    keys: list[np.ndarray] = field(default_factory=list)  # per layer [H, m, head_dim]
    values: list[np.ndarray] = field(default_factory=list)
    pending: np.ndarray | None = None  # a frame prior's: the last frame fed but its last token (frame_prior_exact)


class ExactPrior:
    def __init__(self, tensors: dict[str, np.ndarray], meta: dict):
        self.meta = meta
        self.heads, self.window, self.period = meta["heads"], meta["window"], meta["period"]
        self.vocab, self.codebook_size, self.pitch_levels = meta["vocab"], meta["codebook_size"], meta["pitch_levels"]
        t = {k: np.asarray(v, np.float64) for k, v in tensors.items()}
        self.tensors = tensors
        shifts = meta["shifts"]

        def lin(name, bias=True):
            return Linear(t[f"{name}.weight"], shifts[name], t.get(f"{name}.bias") if bias else None)

        self.voice_projection = lin("voice_projection")
        self.layers = [Layer(t[f"blocks.{i}.attn_norm"], lin(f"blocks.{i}.qkv", False), lin(f"blocks.{i}.out", False),
                             t[f"blocks.{i}.distance_bias"], t[f"blocks.{i}.ff_norm"], lin(f"blocks.{i}.ff_in"),
                             lin(f"blocks.{i}.ff_out")) for i in range(meta["layers"])]
        self.norm, self.head = t["norm"], lin("head")
        self.attention_exp, self.frequency_exp = t["attention_exp"], t["frequency_exp"]
        self.start_token = self.vocab
        self._embeddings(t, lin)

    def _embeddings(self, t: dict[str, np.ndarray], lin) -> None:
        """The parts before the layers (and, in a subclass, after them) from the tensors `t`."""
        self.token_embedding, self.phase_embedding = t["token_embedding"], t["phase_embedding"]

    # --- building ------------------------------------------------------------------------------------

    @classmethod
    def freeze(cls, prior) -> "ExactPrior":
        """A trained models.prior.CodePrior (FramePrior: ExactFramePrior.freeze) -> its exact twin (integers; the float model is no longer needed)."""
        c = prior.config
        sd = prior.export_state_dict()
        head_dim = c.dim // c.heads
        tensors: dict[str, np.ndarray] = {}
        shifts: dict[str, int] = {}

        def put_linear(name, weight, bias=None, scale=None):
            lin = Linear.of(weight if scale is None else weight * scale[:, None], bias)
            tensors[f"{name}.weight"], shifts[name] = lin.weight, lin.shift
            if lin.bias is not None:
                tensors[f"{name}.bias"] = lin.bias

        cls._freeze_embeddings(sd, tensors, put_linear)
        put_linear("voice_projection", sd["voice_projection.weight"], sd["voice_projection.bias"])
        import torch

        for i in range(c.layers):
            p = f"blocks.{i}."
            scale = torch.ones(3 * c.dim, dtype=torch.float64)
            scale[: c.dim] = 1 / np.sqrt(head_dim)  # the attention's 1/sqrt(d), folded into the queries
            put_linear(p + "qkv", sd[p + "qkv.weight"].double(), scale=scale)
            put_linear(p + "out", sd[p + "out.weight"])
            put_linear(p + "ff_in", sd[p + "ff_in.weight"], sd[p + "ff_in.bias"])
            put_linear(p + "ff_out", sd[p + "ff_out.weight"], sd[p + "ff_out.bias"])
            tensors[p + "attn_norm"] = _int_act(sd[p + "attn_norm.weight"].double().numpy())
            tensors[p + "ff_norm"] = _int_act(sd[p + "ff_norm.weight"].double().numpy())
            tensors[p + "distance_bias"] = np.round(sd[p + "distance_bias"].double().numpy() * (1 << LOGIT_BITS))
        tensors["norm"] = _int_act(sd["norm.weight"].double().numpy())
        put_linear("head", sd["head.weight"], sd["head.bias"])
        tensors["attention_exp"] = _exp_table(EXP_SCALE_BITS, 0)
        tensors["frequency_exp"] = _exp_table(FREQ_SCALE_BITS, 1)
        layout = prior.layout
        meta = dict(layers=c.layers, heads=c.heads, window=c.window, period=layout.period, vocab=layout.vocab,
                    codebook_size=layout.codebook_size, pitch_levels=layout.pitch_levels, pitch_frames=layout.pitch_frames,
                    voice_dim=prior.voice_dim, shifts=shifts, **cls._kind_meta(c))
        return cls({k: v.astype(np.int64) for k, v in tensors.items()}, meta)

    @staticmethod
    def _freeze_embeddings(sd: dict, tensors: dict[str, np.ndarray], put_linear) -> None:
        """The float prior's state dict -> its parts before the layers (and, in a subclass, after them) as integers."""
        tensors["token_embedding"] = _int_act(sd["token_embedding.weight"].double().numpy())
        tensors["phase_embedding"] = _int_act(sd["phase_embedding.weight"].double().numpy())

    @staticmethod
    def _kind_meta(config) -> dict:
        """What a prior file records of this kind of prior (none for the token prior: files before the frame prior
        have no "kind", and their ids stay as they were)."""
        return {}

    # --- running -------------------------------------------------------------------------------------

    def start(self, voice: np.ndarray) -> State:
        """voice [voice_dim] float32 (data.codes.default_voice) -> the state before the first token."""
        v = self.voice_projection(_int_act(np.asarray(voice, np.float32).reshape(1, -1)))[0]
        empty = np.zeros((self.heads, 0, len(v) // self.heads))
        return State(0, v, [empty] * len(self.layers), [empty] * len(self.layers))

    def feed(self, state: State, inputs: np.ndarray) -> np.ndarray:
        """inputs [n] (each position's previous token; start_token at position 0) -> logits [n, V] integers at
        LOGIT_BITS (unmasked), and `state` advanced by n positions. Feeding a stream in pieces of any size gives
        the same logits as feeding it whole."""
        inputs = np.asarray(inputs, np.int64)
        positions = state.position + np.arange(len(inputs))
        x = self._transform(state, self.token_embedding[inputs] + self.phase_embedding[positions % self.period] + state.voice)
        return self._logits(x)

    def _transform(self, state: State, x: np.ndarray) -> np.ndarray:
        """x [n, D] the inputs of the next n positions (their embedding sums, the voice included) -> [n, D] after the
        layers, clipped; `state` advanced by n positions."""
        positions = state.position + np.arange(len(x))
        for i, layer in enumerate(self.layers):
            x = np.clip(x, -ACT_LIMIT, ACT_LIMIT)
            x = x + self._attention(layer, _rms_norm(x, layer.attn_norm), state, i, positions)
            x = np.clip(x, -ACT_LIMIT, ACT_LIMIT)
            x = x + layer.ff_out(np.maximum(layer.ff_in(_rms_norm(x, layer.ff_norm)), 0))
        state.position += len(x)
        return np.clip(x, -ACT_LIMIT, ACT_LIMIT)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        """x [n, D] -> logits [n, V] integers at LOGIT_BITS (unmasked)."""
        return np.floor(self.head(_rms_norm(x, self.norm)) / float(1 << (ACT_BITS - LOGIT_BITS)))

    def _attention(self, layer: Layer, h: np.ndarray, state: State, i: int, positions: np.ndarray) -> np.ndarray:
        n, D = h.shape
        H, hd = self.heads, D // self.heads
        q, k, v = (a.reshape(n, H, hd).transpose(1, 0, 2) for a in np.split(layer.qkv(h), 3, axis=1))  # [H, n, hd]
        keys, values = np.concatenate([state.keys[i], k], 1), np.concatenate([state.values[i], v], 1)
        m = keys.shape[1]
        key_positions = positions[-1] + 1 - m + np.arange(m)
        distance = positions[:, None] - key_positions[None, :]  # [n, m]
        allowed = (distance >= 0) & (distance < self.window)
        scores = np.floor((q @ keys.transpose(0, 2, 1)) / float(1 << (2 * ACT_BITS - LOGIT_BITS)))  # [H, n, m]
        scores = scores + layer.distance_bias[:, np.clip(distance, 0, self.window - 1)]
        scores = np.where(allowed[None], scores, MASKED)
        below = (scores.max(-1, keepdims=True) - scores).astype(np.int64)
        weights = np.where(allowed[None], self.attention_exp[np.minimum(below, len(self.attention_exp) - 1)], 0).astype(np.float64)
        y = np.floor((weights @ values) / weights.sum(-1, keepdims=True))  # [H, n, hd]
        keep = self.window - 1
        state.keys[i], state.values[i] = keys[:, -keep:] if keep else keys[:, :0], values[:, -keep:] if keep else values[:, :0]
        return layer.out(y.transpose(1, 0, 2).reshape(n, D))

    def stepper(self, voice: np.ndarray, compiled: bool = True) -> "Stepper":
        """A stream to advance one token at a time (range coding, sampling): the compiled step where numba is
        installed and `compiled`, else feed. Both give the same integers."""
        return Stepper(self, voice, compiled)

    def step_kernel(self):
        """The weights laid out for the compiled step (prior_step.StepKernel), built once per prior; None without
        numba."""
        if not hasattr(self, "_kernel"):
            from vqspeech.models import prior_step

            self._kernel = (prior_step.StepKernel(self, ACT_BITS, LOGIT_BITS, ACT_LIMIT, RMS_EPS)
                            if prior_step.available() else None)
        return self._kernel

    def symbol_range(self, position: int) -> tuple[int, int]:
        """The symbols [lo, hi) that may stand at stream position `position`: the pitch symbols or the codes."""
        return (self.codebook_size, self.vocab) if self.pitch_levels and position % self.period == 0 else (0, self.codebook_size)

    def frequencies_of(self, logits: np.ndarray, position: int) -> np.ndarray:
        """logits [V] (feed's or the step's) of stream position `position` -> integer frequencies [V] as float64: 0
        for the other kind of symbol, else max(1, round(2**20 exp(logit - max))) over this kind."""
        return self.frequency_table(logits[None], position)[0]

    def frequency_table(self, logits: np.ndarray, position: int) -> np.ndarray:
        """logits [n, V] of stream positions position .. position + n - 1 -> frequencies_of of each row [n, V]."""
        f = np.zeros(logits.shape)
        pitch = np.zeros(len(logits), bool)
        if self.pitch_levels:
            pitch = (position + np.arange(len(logits))) % self.period == 0
        for rows in (np.flatnonzero(pitch), np.flatnonzero(~pitch)):
            if len(rows):
                lo, hi = self.symbol_range(position + int(rows[0]))
                part = logits[rows, lo:hi]
                below = (part.max(1, keepdims=True) - part).astype(np.int64)
                f[rows, lo:hi] = self.frequency_exp[np.minimum(below, len(self.frequency_exp) - 1)]
        return f

    def frequencies_along(self, state: State, inputs: np.ndarray, position: int) -> np.ndarray:
        """A known stream (encoding, the bench's bits per token): inputs [n] the tokens before stream positions
        position .. position + n - 1 -> the frequencies [n, V] those positions are coded under; `state` advanced.
        Batched NumPy: the same integers as stepping (tests hold them equal), about as fast on long streams as the
        compiled step (37 against 33 us a token, measured on the default model's frame prior, one thread), and
        without the compiled kernel, whose load costs 0.6-0.7 s a process."""
        return self.frequency_table(self.feed(state, inputs), position)



class Stepper:
    """One stream advanced a token at a time: next(previous token) -> logits [V] of the next position."""

    def __init__(self, exact: ExactPrior, voice: np.ndarray, compiled: bool = True):
        self.exact, self.position = exact, 0
        self.state = exact.start(voice)
        self.kernel = exact.step_kernel() if compiled else None
        if self.kernel is not None:
            self.keys, self.values = self.kernel.rings()
            self._voice = np.ascontiguousarray(self.state.voice, np.float64).reshape(-1)

    def next_frequencies(self, previous: int) -> np.ndarray:
        """next, then ExactPrior.frequencies_of: the integer frequencies [V] the next position is coded under (in one
        compiled call where numba is installed: what range coding runs per token)."""
        if self.kernel is None:
            position = self.position
            return self.exact.frequencies_of(self.next(previous), position)
        lo, hi = self.exact.symbol_range(self.position)
        f = self.kernel.frequencies(previous, self.position, self._voice, lo, hi, self.keys, self.values)
        self.position += 1
        return f

    def next(self, previous: int) -> np.ndarray:
        e = self.exact
        if self.kernel is None:
            logits = e.feed(self.state, np.array([previous]))[0]
        else:
            x = e.token_embedding[previous] + e.phase_embedding[self.position % e.period] + self.state.voice
            logits = self.kernel.step(x, self.position, self.keys, self.values)
        self.position += 1
        return logits
