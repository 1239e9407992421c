"""The exact prior's one-token step as a numba kernel: what range decoding runs once per token.

Decoding cannot batch: each token's distribution needs the token before it. In NumPy one step is ~150 small array
operations, whose overhead (not their arithmetic) sets the speed; this kernel does the same arithmetic in one call
(`_frequencies` for the token prior; `_frame_tokens` for the frame prior, one token a call when decoding, or a known
piece a call: one entry point, so numba compiles the frame prior's step once). Encoding does not use it: its tokens
are all known, so ExactPrior.frequencies_along batches them in NumPy at about the same speed, without the 0.6-0.7 s
it takes to load this kernel; nor does decoding a short stream (entropy.COMPILED_FROM_TOKENS).
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


def _accumulate(x, w, out, lo, hi):
    """out[j] = sum_i x[i] w[i, j] for lo <= j < hi: sums of integer products, exact in any order (and with fused
    multiply-adds). Looped over slices from 0: a loop from `lo` would check every index for wrap-around, which stops
    LLVM vectorising it (8x slower, measured)."""
    o = out[lo:hi]
    o[:] = 0.0
    for i in range(w.shape[0]):
        xi = x[i]
        if xi != 0.0:
            row = w[i, lo:hi]
            for j in range(o.shape[0]):
                o[j] += xi * np.float64(row[j])


def _linear_columns(x, w, unit, bias, out, lo, hi):
    """x [in], w [in, out] -> out[j] = floor(sum_i x[i] w[i, j] * unit) + bias[j] for lo <= j < hi, out's other
    entries untouched (bias of length 0: none)."""
    _accumulate(x, w, out, lo, hi)
    o = out[lo:hi]
    for j in range(o.shape[0]):
        o[j] = math.floor(o[j] * unit)
    if bias.shape[0]:
        b = bias[lo:hi]
        for j in range(o.shape[0]):
            o[j] += b[j]


def _linear(x, w, unit, bias, out):
    """x [in], w [in, out] -> out[j] = floor(sum_i x[i] w[i, j] * unit) + bias[j] (bias of length 0: none)."""
    _linear_columns(x, w, unit, bias, out, 0, w.shape[1])


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


def _head(x, final_norm, head, head_b, head_unit, logit_div, eps, lo, hi):
    """x [D] a state after the layers -> logits [V] (integers at LOGIT_BITS: ExactPrior._logits) of the symbols
    [lo, hi), 0 elsewhere. A position codes one kind of symbol, so the head's other columns (the codes, at a pitch
    position) are never computed."""
    h = np.empty(x.shape[0])
    _rms(x, final_norm, h, eps)
    logits = np.zeros(head.shape[1])
    _linear_columns(h, head, head_unit, head_b, logits, lo, hi)
    part = logits[lo:hi]
    for j in range(part.shape[0]):
        part[j] = math.floor(part[j] / logit_div)
    return logits


def _step(x, position, window, heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit, distance_bias,
          ff_norm, ff_in, ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values, exp_table, final_norm,
          head, head_b, head_unit, logit_div, no_bias):
    """x [D]: the token's embedding sum; keys/values [L, H, window, head_dim] rings, written at slot position % window
    -> logits [V] (integers at LOGIT_BITS)."""
    _blocks(x, position, window, heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit, distance_bias,
            ff_norm, ff_in, ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values, exp_table, no_bias)
    return _head(x, final_norm, head, head_b, head_unit, logit_div, eps, 0, head.shape[1])


def _local(h, slot_row, before, limit, eps, local_norm, local_in, local_in_b, local_in_unit, local_out, local_out_b,
           local_out_unit, final_norm, head, head_b, head_unit, logit_div, lo, hi):
    """A frame prior's token: h [D] its frame's state, slot_row [D] its slot's embedding, before [D] the local
    embeddings of the frame's tokens before it -> logits [V] of the symbols [lo, hi), 0 elsewhere
    (ExactFramePrior.local_logits)."""
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
    return _head(u, final_norm, head, head_b, head_unit, logit_div, eps, lo, hi)


def _frame_token(previous, position, lo, hi, frame, current, h, before, voice, period, vocab, start_token,
                 input_embedding, local_embedding, previous_embedding, slot_embedding, frequency_exp, window, heads,
                 limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit, distance_bias, ff_norm, ff_in,
                 ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values, exp_table, local_norm, local_in,
                 local_in_b, local_in_unit, local_out, local_out_b, local_out_unit, final_norm, head, head_b,
                 head_unit, logit_div, no_bias):
    """A frame prior's whole coding step (frame_prior_exact.FrameStepper._advance, then local_logits and
    frequencies_of) in one call: takes the token before `position` -> integer frequencies [V] of that position over
    the symbols [lo, hi). frame [P] (the previous frame's tokens), current [P] (this frame's so far), h [D] (its
    state) and before [D] (its tokens' local embeddings, summed) are the stream's and are updated in place; at a
    frame's first slot the layers run and the rings get the frame. Every sum is of integers, so exact in any order."""
    D = h.shape[0]
    slot = position % period
    if position > 0:
        current[(position - 1) % period] = previous
    if slot == 0:
        if position > 0:
            frame[:] = current
        if frame[0] == start_token:  # before the stream's first frame
            for i in range(D):
                h[i] = input_embedding[input_embedding.shape[0] - 1, i] + voice[i]
        else:
            for i in range(D):
                h[i] = 0.0
            for p in range(period):
                row = p * vocab + min(frame[p], vocab - 1)
                for i in range(D):
                    h[i] += input_embedding[row, i]
            for i in range(D):
                h[i] += voice[i]
        _blocks(h, position // period, window, heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit,
                distance_bias, ff_norm, ff_in, ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values,
                exp_table, no_bias)
        for i in range(D):
            before[i] = 0.0
    else:
        row = (slot - 1) * vocab + previous
        for i in range(D):
            before[i] += local_embedding[row, i]
    b = np.empty(D)
    for i in range(D):
        b[i] = before[i] + previous_embedding[previous, i]
    logits = _local(h, slot_embedding[slot], b, limit, eps, local_norm, local_in, local_in_b, local_in_unit, local_out,
                    local_out_b, local_out_unit, final_norm, head, head_b, head_unit, logit_div, lo, hi)
    return _kind_frequencies(logits, lo, hi, frequency_exp)


def _frame_tokens(inputs, position, has_pitch, codebook_size, frame, current, h, before, voice, period, vocab,
                  start_token, input_embedding, local_embedding, previous_embedding, slot_embedding, frequency_exp,
                  window, heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit, distance_bias, ff_norm,
                  ff_in, ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values, exp_table, local_norm,
                  local_in, local_in_b, local_in_unit, local_out, local_out_b, local_out_unit, final_norm, head, head_b,
                  head_unit, logit_div, no_bias):
    """`_frame_token` along a known stream: inputs [n] (the token before each of positions position ..
    position + n - 1) -> frequencies [n, V]. What encoding runs: one call a piece, not one a token."""
    out = np.empty((inputs.shape[0], head.shape[1]))
    for t in range(inputs.shape[0]):
        p = position + t
        lo, hi = (codebook_size, vocab) if has_pitch and p % period == 0 else (0, codebook_size)  # symbol_range
        out[t] = _frame_token(inputs[t], p, lo, hi, frame, current, h, before, voice, period, vocab, start_token,
                              input_embedding, local_embedding, previous_embedding, slot_embedding, frequency_exp,
                              window, heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit,
                              distance_bias, ff_norm, ff_in, ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys,
                              values, exp_table, local_norm, local_in, local_in_b, local_in_unit, local_out,
                              local_out_b, local_out_unit, final_norm, head, head_b, head_unit, logit_div, no_bias)
    return out


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
    _blocks(x, position, window, heads, limit, eps, score_div, attn_norm, qkv, qkv_unit, out_w, out_unit, distance_bias,
            ff_norm, ff_in, ff_in_b, ff_in_unit, ff_out, ff_out_b, ff_out_unit, keys, values, exp_table, no_bias)
    logits = _head(x, final_norm, head, head_b, head_unit, logit_div, eps, lo, hi)
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
    _linear_columns = numba.njit(cache=True)(_linear_columns)
    _linear = numba.njit(cache=True)(_linear)
    _blocks = numba.njit(cache=True)(_blocks)
    _head = numba.njit(cache=True)(_head)
    _step = numba.njit(cache=True)(_step)
    _kind_frequencies = numba.njit(cache=True)(_kind_frequencies)
    _frequencies = numba.njit(cache=True)(_frequencies)
    _local = numba.njit(cache=True)(_local)
    _frame_token = numba.njit(cache=True)(_frame_token)
    _frame_tokens = numba.njit(cache=True)(_frame_tokens)


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
            self.frame_tables = (exact.period, exact.vocab, exact.start_token,
                                 *(np.ascontiguousarray(t, np.float64) for t in (
                                     exact.input_embedding, exact.local_embedding, exact.previous_embedding,
                                     exact.slot_embedding)))
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

    def frame_tokens(self, inputs: np.ndarray, position: int, frame: np.ndarray, current: np.ndarray, h: np.ndarray,
                     before: np.ndarray, voice: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """frame_token along a known stream in one compiled call: inputs [n] the tokens before positions
        position .. position + n - 1 -> frequencies [n, V]; the stream's state updated as n frame_token calls would."""
        e = self.exact
        window, heads, limit, eps, score_div = self.constants
        exp_table, norm, head, head_b, head_unit, logit_div, no_bias = self.tail
        return _frame_tokens(np.asarray(inputs, np.int64), position, bool(e.pitch_levels), e.codebook_size, frame,
                             current, h, before, voice, *self.frame_tables, self.frequency_exp, window, heads, limit,
                             eps, score_div, *self.weights, keys, values, exp_table, *self.local, norm, head, head_b,
                             head_unit, logit_div, no_bias)
