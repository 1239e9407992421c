"""The exact prior's one-token step as a numba kernel: what range decoding runs once per token.

Decoding cannot batch: each token's distribution needs the token before it. In NumPy one step is ~150 small array
operations, whose overhead (not their arithmetic) sets the speed; this kernel does the same arithmetic in one call.
It computes exactly what ExactPrior.feed computes (tests hold them equal): every product and sum is of integers
below 2**53 held in float64, so loop order changes nothing, and the divisions, square roots and floors are the same
correctly rounded IEEE operations in the same places. Keys and values live in a ring of `window` slots per layer.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a declared dependency; ExactPrior.feed still works without it
    numba = None


def available() -> bool:
    return numba is not None


def _rms(x, gain, out, eps):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    r = math.sqrt(s / x.shape[0] + eps)
    for i in range(x.shape[0]):
        out[i] = math.floor(x[i] * gain[i] / r)


def _row_dot(q, offset, rows, row, n):
    """sum_c q[offset + c] * rows[row, c] over c < n: a sum of integer products, exact in any order."""
    s = 0.0
    for c in range(n):
        s += q[offset + c] * rows[row, c]
    return s


def _accumulate(x, w, out):
    """out[j] = sum_i x[i] w[i, j]: sums of integer products, exact in any order (and with fused multiply-adds)."""
    for j in range(w.shape[1]):
        out[j] = 0.0
    for i in range(w.shape[0]):
        xi = x[i]
        if xi != 0.0:
            for j in range(w.shape[1]):
                out[j] += xi * np.float64(w[i, j])


def _linear(x, w, unit, bias, out):
    """x [in], w [in, out] -> out[j] = floor(sum_i x[i] w[i, j] * unit) + bias[j] (bias of length 0: none)."""
    n_out = w.shape[1]
    _accumulate(x, w, out)
    for j in range(n_out):
        out[j] = math.floor(out[j] * unit)
        if bias.shape[0]:
            out[j] += bias[j]


def _blocks(x, position, window, heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit, distance_bias,
            ff_norm, ff_in, ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values, exp_table, no_bias):
    """x [D]: the position's input (its embedding sum), replaced by its state after the layers, clipped (as
    ExactPrior._transform); keys/values [L, H, window, head_dim] rings, written at slot position % window."""
    n_layers, D = attn_norm.shape
    hd = D // heads
    h = np.empty(D)
    qkv_out = np.empty(3 * D)
    y = np.empty(D)
    proj = np.empty(D)
    ff_hidden = np.empty(ff_in.shape[2])
    scores = np.empty(window)
    slot = position % window
    first = max(0, position - window + 1)
    n_keys = position - first + 1
    top = exp_table.shape[0] - 1
    for layer in range(n_layers):
        for i in range(D):
            x[i] = min(max(x[i], -limit), limit)
        _rms(x, attn_norm[layer], h, eps)
        _linear(h, qkv[layer], qkv_unit[layer], no_bias, qkv_out)
        for hh in range(heads):
            for c in range(hd):
                keys[layer, hh, slot, c] = qkv_out[D + hh * hd + c]
                values[layer, hh, slot, c] = qkv_out[2 * D + hh * hd + c]
            best = -1e300
            ring = keys[layer, hh]
            for k in range(n_keys):
                j = first + k
                s = math.floor(_row_dot(qkv_out, hh * hd, ring, j % window, hd) / score_div) + distance_bias[layer, hh, position - j]
                scores[k] = s
                if s > best:
                    best = s
            total = 0.0
            for c in range(hd):
                y[hh * hd + c] = 0.0
            for k in range(n_keys):
                e = float(exp_table[min(int(best - scores[k]), top)])
                total += e
                j = first + k
                for c in range(hd):
                    y[hh * hd + c] += e * values[layer, hh, j % window, c]
            for c in range(hd):
                y[hh * hd + c] = math.floor(y[hh * hd + c] / total)
        _linear(y, out_w[layer], out_unit[layer], no_bias, proj)
        for i in range(D):
            x[i] += proj[i]
            x[i] = min(max(x[i], -limit), limit)
        _rms(x, ff_norm[layer], h, eps)
        _linear(h, ff_in[layer], ff_in_unit[layer], ff_in_b[layer], ff_hidden)
        for i in range(ff_hidden.shape[0]):
            ff_hidden[i] = max(ff_hidden[i], 0.0)
        _linear(ff_hidden, ff_out[layer], ff_out_unit[layer], ff_out_b[layer], proj)
        for i in range(D):
            x[i] += proj[i]
    for i in range(D):
        x[i] = min(max(x[i], -limit), limit)


def _head(x, final_norm, head, head_b, head_unit, logit_div, eps):
    """x [D] a state after the layers -> logits [V] (integers at LOGIT_BITS): ExactPrior._logits."""
    h = np.empty(x.shape[0])
    _rms(x, final_norm, h, eps)
    logits = np.empty(head.shape[1])
    _linear(h, head, head_unit, head_b, logits)
    for j in range(logits.shape[0]):
        logits[j] = math.floor(logits[j] / logit_div)
    return logits


def _step(x, position, window, heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit, distance_bias,
          ff_norm, ff_in, ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values, exp_table, final_norm,
          head, head_b, head_unit, logit_div, no_bias):
    """x [D]: the token's embedding sum; keys/values [L, H, window, head_dim] rings, written at slot position % window
    -> logits [V] (integers at LOGIT_BITS)."""
    _blocks(x, position, window, heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit, distance_bias,
            ff_norm, ff_in, ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values, exp_table, no_bias)
    return _head(x, final_norm, head, head_b, head_unit, logit_div, eps)


def _local(h, slot_row, before, limit, eps, local_norm, local_in, local_in_b, local_in_unit, local_out, local_out_b,
           local_out_unit, final_norm, head, head_b, head_unit, logit_div):
    """A frame prior's token: h [D] its frame's state, slot_row [D] its slot's embedding, before [D] the local
    embeddings of the frame's tokens before it -> logits [V] (ExactFramePrior.local_logits)."""
    D = h.shape[0]
    u = np.empty(D)
    for i in range(D):
        u[i] = min(max(h[i] + slot_row[i] + before[i], -limit), limit)
    n = np.empty(D)
    _rms(u, local_norm, n, eps)
    hidden = np.empty(local_in.shape[1])
    _linear(n, local_in, local_in_unit, local_in_b, hidden)
    for i in range(hidden.shape[0]):
        hidden[i] = max(hidden[i], 0.0)
    _linear(hidden, local_out, local_out_unit, local_out_b, n)
    for i in range(D):
        u[i] = min(max(u[i] + n[i], -limit), limit)
    return _head(u, final_norm, head, head_b, head_unit, logit_div, eps)


def _frequencies(token_embedding, phase_embedding, voice, previous, position, period, lo, hi, frequency_exp, window,
                 heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit, distance_bias, ff_norm, ff_in,
                 ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values, exp_table, final_norm, head, head_b,
                 head_unit, logit_div, no_bias):
    """One whole coding step: the embedding sum of `previous` at `position` (the same float64 additions, in the same
    order, as Stepper.next), `_step`, then ExactPrior.frequencies_of over the symbols [lo, hi) that may come here
    -> integer frequencies [V] as float64 (0 elsewhere)."""
    x = np.empty(token_embedding.shape[1])
    phase = position % period
    for i in range(x.shape[0]):
        x[i] = token_embedding[previous, i] + phase_embedding[phase, i] + voice[i]
    logits = _step(x, position, window, heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit,
                   distance_bias, ff_norm, ff_in, ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values,
                   exp_table, final_norm, head, head_b, head_unit, logit_div, no_bias)
    return _kind_frequencies(logits, lo, hi, frequency_exp)


def _kind_frequencies(logits, lo, hi, frequency_exp):
    """logits [V] -> integer frequencies [V] over the symbols [lo, hi) (0 elsewhere): ExactPrior.frequencies_of."""
    best = -1e300
    for j in range(lo, hi):
        best = max(best, logits[j])
    f = np.zeros(logits.shape[0])
    top = frequency_exp.shape[0] - 1
    for j in range(lo, hi):
        f[j] = frequency_exp[min(int(best - logits[j]), top)]  # best - logit >= 0: int() is the floor
    return f


if numba is not None:
    # Reassociation only where every term is an integer product below 2**53 (so any order gives the same sum);
    # never on the divisions and floors, whose operands it could regroup.
    _row_dot = numba.njit(cache=True, fastmath={"reassoc", "contract"})(_row_dot)
    _accumulate = numba.njit(cache=True, fastmath={"reassoc", "contract"})(_accumulate)
    _rms = numba.njit(cache=True)(_rms)
    _linear = numba.njit(cache=True)(_linear)
    _blocks = numba.njit(cache=True)(_blocks)
    _head = numba.njit(cache=True)(_head)
    _step = numba.njit(cache=True)(_step)
    _kind_frequencies = numba.njit(cache=True)(_kind_frequencies)
    _frequencies = numba.njit(cache=True)(_frequencies)
    _local = numba.njit(cache=True)(_local)


class StepKernel:
    """The weights of an ExactPrior laid out for `_step`, and one stream's key/value rings."""

    def __init__(self, exact, act_bits: int, logit_bits: int, act_limit: float, rms_eps: float):
        """exact: a prior_exact.ExactPrior; its fixed-point constants are passed in (this module imports nothing of
        it, so that it can be imported by it)."""
        ACT_BITS, LOGIT_BITS = act_bits, logit_bits
        L = exact.layers

        def stack(get, dtype=np.float64):
            return np.ascontiguousarray(np.stack([get(layer) for layer in L]), dtype)

        # The weight matrices as int16: integers below 2**WEIGHT_BITS (11) are exact in it, and it halves float32's bytes
        # read per token (7 % faster a step, measured). Products and sums stay float64 in the kernel.
        weight_dtype = np.int16
        self.exact = exact
        self.weights = (
            stack(lambda l: l.attn_norm), stack(lambda l: l.qkv._weight_t, weight_dtype), np.array([l.qkv._unit for l in L]),
            stack(lambda l: l.out._weight_t, weight_dtype), np.array([l.out._unit for l in L]), stack(lambda l: l.distance_bias),
            stack(lambda l: l.ff_norm), stack(lambda l: l.ff_in._weight_t, weight_dtype), stack(lambda l: l.ff_in.bias),
            np.array([l.ff_in._unit for l in L]), stack(lambda l: l.ff_out._weight_t, weight_dtype), stack(lambda l: l.ff_out.bias),
            np.array([l.ff_out._unit for l in L]))
        self.constants = (exact.window, exact.heads, act_limit, rms_eps * float(1 << 2 * ACT_BITS),
                          float(1 << (2 * ACT_BITS - LOGIT_BITS)))
        self.tail = (np.asarray(exact.attention_exp, np.int64), np.asarray(exact.norm, np.float64), exact.head._weight_t.astype(np.int16),
                     np.asarray(exact.head.bias, np.float64), exact.head._unit, float(1 << (ACT_BITS - LOGIT_BITS)),
                     np.zeros(0))
        if getattr(exact, "local_in", None) is not None:  # a frame prior (frame_prior_exact): its per-token network
            self.embeddings = None
            self.local = (np.ascontiguousarray(exact.local_norm, np.float64), exact.local_in._weight_t.astype(np.int16),
                          np.asarray(exact.local_in.bias, np.float64), exact.local_in._unit,
                          exact.local_out._weight_t.astype(np.int16), np.asarray(exact.local_out.bias, np.float64),
                          exact.local_out._unit)
        else:
            self.embeddings = (np.ascontiguousarray(exact.token_embedding, np.float64),
                               np.ascontiguousarray(exact.phase_embedding, np.float64))
        self.frequency_exp = np.asarray(exact.frequency_exp, np.float64)
        D = exact.norm.shape[0]
        self.ring_shape = (len(L), exact.heads, exact.window, D // exact.heads)

    def rings(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.ring_shape), np.zeros(self.ring_shape)

    def frequencies(self, previous: int, position: int, voice: np.ndarray, lo: int, hi: int, keys: np.ndarray,
                    values: np.ndarray) -> np.ndarray:
        """The token before `position` -> the integer frequencies [V] that position is coded under, over the symbols
        [lo, hi) (ExactPrior.frequencies_of of step's logits, in one compiled call); the rings get this position."""
        e = self.exact
        window, heads, limit, eps, score_div = self.constants
        exp_table, norm, head, head_b, head_unit, logit_div, no_bias = self.tail
        return _frequencies(self.embeddings[0], self.embeddings[1], voice, previous, position, e.period, lo, hi,
                            self.frequency_exp, window, heads, limit, eps, score_div, *self.weights, keys, values,
                            exp_table, norm, head, head_b, head_unit, logit_div, no_bias)

    def step(self, x: np.ndarray, position: int, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """x [D] the embedding sum of the token before `position` -> logits [V]; the rings get this position."""
        window, heads, limit, eps, score_div = self.constants
        exp_table, norm, head, head_b, head_unit, logit_div, no_bias = self.tail
        return _step(np.array(x, np.float64), position, window, heads, limit, eps, score_div, *self.weights, keys, values,
                     exp_table, norm, head, head_b, head_unit, logit_div, no_bias)

    def frame_state(self, x: np.ndarray, frame: int, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """A frame prior's layers: x [D] frame `frame`'s input (the voice included) -> its state h [D]; the rings
        get this frame."""
        window, heads, limit, eps, score_div = self.constants
        exp_table, no_bias = self.tail[0], self.tail[-1]
        h = np.array(x, np.float64)
        _blocks(h, frame, window, heads, limit, eps, score_div, *self.weights, keys, values, exp_table, no_bias)
        return h

    def local_frequencies(self, h: np.ndarray, slot_row: np.ndarray, before: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """A frame prior's token: its frame's state, its slot's embedding and the local embeddings before it -> the
        integer frequencies [V] over the symbols [lo, hi) (ExactFramePrior.local_logits, then frequencies_of)."""
        limit, eps = self.constants[2:4]
        _, norm, head, head_b, head_unit, logit_div, _ = self.tail
        logits = _local(h, slot_row, before, limit, eps, *self.local, norm, head, head_b, head_unit, logit_div)
        return _kind_frequencies(logits, lo, hi, self.frequency_exp)
