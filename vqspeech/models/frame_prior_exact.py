"""The frame prior's exact twin (models/frame_prior.FramePrior in the integer arithmetic of models/prior_exact.py).

The layers, the fixed point, the exp tables and the file are ExactPrior's; what differs is what goes in and comes
out of the layers: one input per pitch frame (the previous frame's tokens, summed), and per token a small network
that reads the frame's state and the frame's tokens so far. Its State counts frames.

    exact = ExactFramePrior.freeze(frame_prior)
    state = exact.start(voice)
    logits = exact.feed(state, inputs)        inputs [n] (token before each position), n whole frames
    stream = exact.stepper(voice)             one token at a time: stream.next(previous) / next_frequencies(previous)
"""

from __future__ import annotations

import numpy as np

from vqspeech.models.prior_exact import ACT_LIMIT, ExactPrior, State, _int_act, _rms_norm


class ExactFramePrior(ExactPrior):
    def _embeddings(self, t: dict[str, np.ndarray], lin) -> None:
        self.input_embedding, self.local_embedding = t["input_embedding"], t["local_embedding"]
        self.slot_embedding, self.local_norm = t["slot_embedding"], t["local_norm"]
        self.previous_embedding = t["previous_embedding"]
        self.local_in, self.local_out = lin("local_in"), lin("local_out")

    @staticmethod
    def _freeze_embeddings(sd: dict, tensors: dict[str, np.ndarray], put_linear) -> None:
        for name in ("input_embedding", "local_embedding", "slot_embedding", "previous_embedding"):
            tensors[name] = _int_act(sd[f"{name}.weight"].double().numpy())
        tensors["local_norm"] = _int_act(sd["local_norm.weight"].double().numpy())
        put_linear("local_in", sd["local_in.weight"], sd["local_in.bias"])
        put_linear("local_out", sd["local_out.weight"], sd["local_out.bias"])

    @staticmethod
    def _kind_meta(config) -> dict:
        return {"kind": "frame", "local_dim": config.local_dim}

    def start(self, voice: np.ndarray) -> State:
        state = super().start(voice)
        state.pending = np.full(self.period - 1, self.start_token, np.int64)  # no frame fed yet
        return state

    # --- the two halves of a step --------------------------------------------------------------------

    def frame_input(self, previous: np.ndarray) -> np.ndarray:
        """previous [F, P] the tokens of the frame before each frame (start_token throughout before the stream's
        first) -> [F, D] fixed point, the voice not included."""
        previous = np.asarray(previous, np.int64)
        rows = np.arange(self.period) * self.vocab + np.minimum(previous, self.vocab - 1)
        x = self.input_embedding[rows].sum(1)
        return np.where(previous[:, :1] == self.start_token, self.input_embedding[-1], x)

    def local_logits(self, h: np.ndarray, slots: np.ndarray, before: np.ndarray) -> np.ndarray:
        """h [n, D] the states of the frames the n positions lie in, slots [n], before [n, D] the sum of the local
        embeddings of the tokens before each in its frame (local_row) and the previous embedding of the token just
        before it -> logits [n, V] integers at LOGIT_BITS (unmasked)."""
        u = np.clip(h + self.slot_embedding[slots] + before, -ACT_LIMIT, ACT_LIMIT)
        u = u + self.local_out(np.maximum(self.local_in(_rms_norm(u, self.local_norm)), 0))
        return self._logits(np.clip(u, -ACT_LIMIT, ACT_LIMIT))

    def local_row(self, slot: int, token: int) -> np.ndarray:
        """The local embedding [D] of `token` standing in slot `slot` (what the later slots of its frame add)."""
        return self.local_embedding[slot * self.vocab + token]

    # --- running -------------------------------------------------------------------------------------

    def feed(self, state: State, inputs: np.ndarray) -> np.ndarray:
        """inputs [n] (each position's previous token; start_token at position 0), n a whole number of frames ->
        logits [n, V] integers at LOGIT_BITS (unmasked); `state` advanced by n // period frames. Feeding a stream in
        pieces of whole frames gives the same logits as feeding it whole."""
        inputs = np.asarray(inputs, np.int64)
        P, n = self.period, len(inputs)
        if n % P:
            raise ValueError(f"{n} positions are not a whole number of frames of {P}")
        if n == 0:
            return np.zeros((0, self.vocab))
        known = np.concatenate([state.pending, inputs])  # [n + P - 1]: the tokens from the previous frame's first on
        previous = known[:n].reshape(n // P, P)  # [F, P]: the frame before each (start_token throughout at the start)
        h = self._transform(state, self.frame_input(previous) + state.voice)  # [F, D]
        own = known[P:]  # tokens at positions 0 .. n-2 of this piece
        slots = np.arange(n) % P
        later = np.flatnonzero(slots)  # each adds the local row of the token before it to what its frame has so far
        rows = np.zeros((n, h.shape[1]))
        rows[later] = self.local_embedding[(slots[later] - 1) * self.vocab + own[later - 1]]
        rows = rows.reshape(n // P, P, -1).cumsum(1).reshape(n, -1)  # integer sums: exact in any order
        state.pending = inputs[n - P + 1 :].copy() if P > 1 else inputs[:0].copy()
        return self.local_logits(np.repeat(h, P, axis=0), slots, rows + self.previous_embedding[inputs])

    def frequencies_along(self, state: State, inputs: np.ndarray, position: int) -> np.ndarray:
        """ExactPrior.frequencies_along; inputs that end inside a frame must be the stream's last (the frame is
        padded, which changes nothing before it, and the state is left past it)."""
        inputs = np.asarray(inputs, np.int64)
        padded = np.concatenate([inputs, np.zeros(-len(inputs) % self.period, np.int64)])
        return super().frequencies_along(state, padded, position)[: len(inputs)]

    def stepper(self, voice: np.ndarray, compiled: bool = True) -> "FrameStepper":
        return FrameStepper(self, voice, compiled)


class FrameStepper:
    """One stream advanced a token at a time: the layers run at each frame's first slot, the local network at every
    slot (both compiled where numba is installed: prior_step.StepKernel). next(previous token) -> logits [V] of the
    next position; next_frequencies(previous token) -> the integer frequencies [V] it is coded under."""

    def __init__(self, exact: ExactFramePrior, voice: np.ndarray, compiled: bool = True):
        self.exact, self.position = exact, 0
        self.state = exact.start(voice)
        self.frame = np.full(exact.period, exact.start_token, np.int64)  # the frame before the current one
        self.current = np.zeros(exact.period, np.int64)
        self.h = self.before = None
        self.kernel = exact.step_kernel() if compiled else None
        if self.kernel is not None:
            self.keys, self.values = self.kernel.rings()
            D = self.state.voice.shape[-1]
            self.h, self.before = np.zeros(D), np.zeros(D)  # float64: the compiled step updates them in place
            self._voice = np.ascontiguousarray(self.state.voice, np.float64).reshape(-1)

    def _advance(self, previous: int) -> tuple[int, np.ndarray]:
        """Take in the token before the next position -> (that position's slot, the local embeddings before it:
        the frame's tokens so far and the previous embedding of `previous`); h made ready for it."""
        e, P = self.exact, self.exact.period
        slot = self.position % P
        if self.position:
            self.current[(self.position - 1) % P] = previous
        if slot == 0:
            if self.position:
                self.frame = self.current.copy()
            x = e.frame_input(self.frame[None]) + self.state.voice  # [1, D]
            if self.kernel is None:
                self.h = e._transform(self.state, x)[0]
            else:
                self.h = self.kernel.frame_state(x[0], self.position // P, self.keys, self.values)
            self.before = np.zeros_like(self.h)
        else:
            self.before = self.before + e.local_row(slot - 1, previous)
        self.position += 1
        return slot, self.before + e.previous_embedding[previous]

    def next(self, previous: int) -> np.ndarray:
        slot, before = self._advance(previous)
        return self.exact.local_logits(self.h[None], np.array([slot]), before[None])[0]

    def next_frequencies(self, previous: int) -> np.ndarray:
        """What range coding runs per token: next, then frequencies_of (in one compiled call where numba is
        installed; tests hold the two equal)."""
        return self.frequencies(np.array([previous]))[0]

    def frequencies(self, inputs: np.ndarray) -> np.ndarray:
        """next_frequencies of each of inputs [n] in turn -> [n, V] (one compiled call where numba is installed)."""
        if self.kernel is None:
            rows = []
            for previous in inputs:
                position = self.position
                rows.append(self.exact.frequencies_of(self.next(int(previous)), position))
            return np.array(rows).reshape(len(inputs), self.exact.vocab)
        f = self.kernel.frame_tokens(inputs, self.position, self.frame, self.current, self.h, self.before, self._voice,
                                     self.keys, self.values)
        self.position += len(inputs)
        return f
