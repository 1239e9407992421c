"""Fast autoregressive sampling for the WaveNet decoder: the whole cached step loop in one numba kernel.

`WaveNet.sample_reference` does the same arithmetic one PyTorch op at a time (~60 small ops a sample: ~0.05x real
time). Here the loop over samples, layers and streams is compiled: per sample and layer one [2R x 2R] matvec on
[h(t-d); h(t)] (a ring buffer of the layer's past inputs: the "fast WaveNet" cache), the gate, one [R+S x R] matvec,
then the output head and inverse-CDF sampling from one uniform per sample drawn beforehand (class = the first k with
cumsum(p)[k] > u * sum(p), p = exp((logits - max) / temperature)), the same rule as `sample_classes`, so both paths
can be compared class by class. Why numba rather than TorchScript or a C++ extension: bench/README.md. Streams
(B > 1) are independent: with several threads each takes a contiguous group, so batching the chunks of one long
file is what makes a single file decode faster on more cores.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

from vqspeech.models import lpc as lpc_module

try:
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - numba is a declared dependency; the reference loop still works
    numba = None


def available() -> bool:
    """Whether the compiled sampler can run (numba importable)."""
    return numba is not None


def draw_uniforms(batch: int, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The random numbers of one sampling run: [B, T] float64 in [0, 1)."""
    return torch.rand(batch, n_samples, generator=generator, dtype=torch.float64)


def sample_classes(logits: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """Reference inverse-CDF sampler. logits [B, C], u [B] float64 -> classes [B] long.

    temperature 0 is argmax (first maximum)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(-1)
    z = logits.double() / temperature
    cdf = torch.exp(z - z.amax(-1, keepdim=True)).cumsum(-1)
    k = (cdf <= u[:, None] * cdf[:, -1:]).sum(-1)
    return k.clamp(max=logits.shape[-1] - 1)


class Packed(NamedTuple):
    """Decoder weights as contiguous float32 numpy arrays, output-major (row o is output o's weights)."""

    embed: np.ndarray  # [streams * C, R]: stream s's class k is row s * C + k (one stream, or the LPC WaveNet's 3)
    excitation: np.ndarray  # [R, H] (H = 0 without excitation)
    excitation_bias: np.ndarray  # [R]
    cond: np.ndarray  # [L * 2R, Cc]: row l * 2R + j is layer l's gate pre-activation j
    cond_bias: np.ndarray  # [L * 2R]: the conditioning's bias plus each dilated conv's bias
    dilated: np.ndarray  # [L, 2R, 2R]; input columns are [h(t - d), h(t)] (tap 0, tap 1)
    res_skip: np.ndarray  # [L, R + S, R]
    res_skip_bias: np.ndarray  # [L, R + S]
    out1: np.ndarray  # [O, S]
    out1_bias: np.ndarray  # [O]
    out2: np.ndarray  # [C, O]
    out2_bias: np.ndarray  # [C]
    dilations: np.ndarray  # [L] int64


def pack(decoder) -> Packed:
    """WaveNet module -> Packed, in numpy only (see `_run` for why no torch ops)."""

    def f32(x) -> np.ndarray:
        return np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)

    R = decoder.config.residual_channels
    dilated = [f32(conv.weight) for conv in decoder.dilated]  # [2R, R, 2]: tap 0 sees t - d, tap 1 sees t
    exc = decoder.excitation
    return Packed(
        embed=f32(decoder.embed.weight),
        excitation=f32(exc.weight[:, :, 0]) if exc is not None else np.zeros((R, 0), np.float32),
        excitation_bias=f32(exc.bias) if exc is not None else np.zeros(R, np.float32),
        cond=f32(decoder.cond.weight[:, :, 0]),
        cond_bias=f32(decoder.cond.bias) + np.concatenate([f32(conv.bias) for conv in decoder.dilated]),
        dilated=f32(np.stack([np.concatenate([w[..., 0], w[..., 1]], axis=1) for w in dilated])),
        res_skip=f32(np.stack([f32(conv.weight)[:, :, 0] for conv in decoder.res_skip])),
        res_skip_bias=f32(np.stack([f32(conv.bias) for conv in decoder.res_skip])),
        out1=f32(decoder.out1.weight[:, :, 0]), out1_bias=f32(decoder.out1.bias),
        out2=f32(decoder.out2.weight[:, :, 0]), out2_bias=f32(decoder.out2.bias),
        dilations=np.asarray(decoder.dilations, dtype=np.int64),
    )


@torch.no_grad()
def generate(decoder, cond: torch.Tensor, excitation: torch.Tensor | None, uniforms: torch.Tensor,
             temperature: float = 1.0, start: int | None = None, threads: int | None = None,
             lpc: torch.Tensor | None = None, lags: torch.Tensor | None = None) -> torch.Tensor:
    """Free-running sampling. cond [B, C, F], excitation [B, H, F * hop] or None, uniforms [B, F * hop]
    -> classes [B, F * hop] long. `start` is the class fed before the first sample (mid-scale by default);
    `threads` (default torch's) split the streams into groups decoded in parallel. lpc [B, F, P]: the LPC
    WaveNet's predictor coefficients (models/lpc.py; needed exactly when decoder.streams is 3): the classes are
    then the excitation's, and lpc.synthesise turns them into the signal; lags [B, F * hop] (lpc.pitch_lags) with
    decoder.pitch_lag."""
    B, T = cond.shape[0], cond.shape[2] * decoder.hop
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if tuple(uniforms.shape) != (B, T):
        raise ValueError(f"uniforms must be [{B}, {T}], got {list(uniforms.shape)}")
    if (lpc is not None) != (decoder.streams > 1):
        raise ValueError("the LPC WaveNet samples with its coefficients (lpc), a plain one without")
    if (lags is not None) != (decoder.streams > lpc_module.N_STREAMS):
        raise ValueError("pitch lags (lags) are for a WaveNet with decoder.pitch_lag, and it needs them")
    start = decoder.n_classes // 2 if start is None else start
    classes, _ = _run(decoder, cond, excitation, threads, start=start, forced=np.empty((B, 0), np.int64),
                      u=uniforms.detach().numpy().astype(np.float64), temperature=float(temperature), logits=False,
                      lpc=lpc, lags=lags)
    return torch.from_numpy(classes)


@torch.no_grad()
def teacher_forced_logits(decoder, cond: torch.Tensor, excitation: torch.Tensor | None, prev: torch.Tensor,
                          threads: int | None = None) -> torch.Tensor:
    """The compiled step loop fed given classes: prev [B, T] (as `WaveNet.forward` takes them),
    cond [B, C, T // hop] -> logits [B, n_classes, T]. For checking the kernel against the reference (a plain
    WaveNet's: the LPC WaveNet's inputs depend on the signal, which only sampling makes)."""
    if decoder.streams > 1:
        raise ValueError("teacher-forced kernel logits are for a plain WaveNet")
    _, logits = _run(decoder, cond, excitation, threads, start=0, forced=prev.numpy().astype(np.int64),
                     u=np.empty((prev.shape[0], 0)), temperature=1.0, logits=True)
    return torch.from_numpy(logits).transpose(1, 2)


def _run(decoder, cond, excitation, threads, start, forced, u, temperature, logits: bool, lpc=None, lags=None):
    """Split the streams into groups and decode each with the kernel, in threads (it releases the GIL).
    Returns classes [B, T] and logits [B, T, n_classes] (empty unless asked for).

    No torch op runs here: with torch's intra-op threads > 1 on a busy machine, each small op can wait
    for a descheduled OpenMP worker, which cost more than the whole kernel. The projections of the
    conditioning and the excitation (what `WaveNet.init_state` precomputes) are done in the kernel, a
    frame at a time, so memory stays at the size of the inputs however long the file."""
    if not available():
        raise RuntimeError("the fast sampler needs numba (pip install numba); use method='reference'")
    w = pack(decoder)
    B, T = cond.shape[0], cond.shape[2] * decoder.hop
    c = cond.detach().cpu().numpy().astype(np.float32, copy=False).transpose(2, 0, 1)  # [F, B, Cc]
    if excitation is None:
        e = np.zeros((0, B, 0), np.float32)
    else:
        e = excitation.detach().cpu().numpy().astype(np.float32, copy=False).transpose(2, 0, 1)  # [T, B, H]
    C = decoder.n_classes
    if lpc is None:
        coeffs = np.zeros((cond.shape[2], B, 0), np.float32)
    else:
        coeffs = lpc.detach().cpu().numpy().astype(np.float32, copy=False).transpose(1, 0, 2)  # [F, B, P]
    lag = np.zeros((B, 0), np.int64) if lags is None else lags.detach().cpu().numpy().astype(np.int64)
    table = lpc_module.class_values(decoder.mu_law_bits)
    n_groups = max(1, min(B, threads or torch.get_num_threads()))
    bounds = np.linspace(0, B, n_groups + 1).round().astype(int)

    def work(g: int) -> tuple[np.ndarray, np.ndarray]:
        b0, b1 = bounds[g], bounds[g + 1]
        classes = np.empty((b1 - b0, T), np.int64)
        out = np.empty((b1 - b0, T, C) if logits else (0, 0, 0), np.float32)
        _decode(*w, decoder.hop, np.ascontiguousarray(c[:, b0:b1]), np.ascontiguousarray(e[:, b0:b1]), start,
                np.ascontiguousarray(forced[b0:b1]), np.ascontiguousarray(u[b0:b1]), temperature, classes, out,
                np.ascontiguousarray(coeffs[:, b0:b1]), table, np.ascontiguousarray(lag[b0:b1]))
        return classes, out

    if n_groups == 1:
        return work(0)
    with ThreadPoolExecutor(n_groups) as pool:
        parts = list(pool.map(work, range(n_groups)))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]) if logits else parts[0][1]


# --- the kernel ---------------------------------------------------------------------------------
# fastmath lets LLVM reassociate the dot products into SIMD lanes; error_model="numpy" drops Python's
# zero-division checks, whose branches otherwise stop the loops from vectorising.

if numba is not None:
    _jit = numba.njit(fastmath=True, error_model="numpy", nogil=True, cache=True)
    _inline = numba.njit(fastmath=True, error_model="numpy", nogil=True, cache=True, inline="always")
    f32 = np.float32

    @intrinsic
    def _bits_to_float(typingctx, x):
        """Reinterpret an int32 as float32 (builds 2^n for the exponential below)."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())
        return types.float32(types.int32), codegen

    @_inline
    def _exp(x):
        """exp for float32 that vectorises (libm's does not): 2^n * e^r with |r| <= ln2 / 2, degree-6
        Taylor polynomial for e^r (relative error < 2e-7). Inputs are clamped to [-87, 88]."""
        x = min(max(x, f32(-87.0)), f32(88.0))
        n = np.floor(x * f32(1.4426950408889634) + f32(0.5))
        r = x - n * f32(0.693359375) + n * f32(2.12194440e-4)  # ln 2 split in two for an exact n * ln2
        p = f32(1 / 720)
        p = p * r + f32(1 / 120)
        p = p * r + f32(1 / 24)
        p = p * r + f32(1 / 6)
        p = p * r + f32(0.5)
        p = p * r + f32(1.0)
        p = p * r + f32(1.0)
        return p * _bits_to_float((np.int32(n) + np.int32(127)) << np.int32(23))

    @_inline
    def _gemv(w, x, y):
        """y[b, o] += sum_i w[o, i] * x[b, i] for all streams b. w [N, K], x [B, K], y [B, N].
        Blocked 4 outputs x 2 streams: each weight load serves two streams, each input load four rows."""
        N, K = w.shape
        B = x.shape[0]
        N4 = N - N % 4
        for o in range(0, N4, 4):
            for b in range(0, B - 1, 2):
                a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = f32(0.0)
                for i in range(K):
                    xb, xc = x[b, i], x[b + 1, i]
                    w0, w1, w2, w3 = w[o, i], w[o + 1, i], w[o + 2, i], w[o + 3, i]
                    a0 += w0 * xb
                    a1 += w1 * xb
                    a2 += w2 * xb
                    a3 += w3 * xb
                    c0 += w0 * xc
                    c1 += w1 * xc
                    c2 += w2 * xc
                    c3 += w3 * xc
                y[b, o] += a0
                y[b, o + 1] += a1
                y[b, o + 2] += a2
                y[b, o + 3] += a3
                y[b + 1, o] += c0
                y[b + 1, o + 1] += c1
                y[b + 1, o + 2] += c2
                y[b + 1, o + 3] += c3
            if B % 2:
                b = B - 1
                a0 = a1 = a2 = a3 = f32(0.0)
                for i in range(K):
                    xb = x[b, i]
                    a0 += w[o, i] * xb
                    a1 += w[o + 1, i] * xb
                    a2 += w[o + 2, i] * xb
                    a3 += w[o + 3, i] * xb
                y[b, o] += a0
                y[b, o + 1] += a1
                y[b, o + 2] += a2
                y[b, o + 3] += a3
        for o in range(N4, N):
            for b in range(B):
                acc = f32(0.0)
                for i in range(K):
                    acc += w[o, i] * x[b, i]
                y[b, o] += acc

    @_inline
    def _sample(lg, u, temperature, e, cdf):
        """Inverse-CDF draw from softmax(lg / temperature) with uniform u; argmax when temperature is 0.
        Same rule as `sample_classes`; the cumulative sum is float64 as there."""
        C = lg.shape[0]
        m = lg[0]
        k = 0
        for o in range(1, C):
            if lg[o] > m:
                m, k = lg[o], o
        if temperature == 0:
            return k
        inv = f32(1.0 / temperature)
        for o in range(C):
            e[o] = _exp((lg[o] - m) * inv)
        acc = 0.0
        for o in range(C):
            acc += e[o]
            cdf[o] = acc
        target = u * acc
        k = 0
        while k < C - 1 and cdf[k] <= target:
            k += 1
        return k

    @_inline
    def _mu_law_class(v, mu):
        """float64 -> mu-law class, as audio.mu_law_encode computes it (clamped to [-1, 1])."""
        c = np.log1p(mu * min(abs(v), 1.0)) / np.log1p(mu)
        if v < 0:
            c = -c
        return np.int64((c + 1.0) / 2.0 * mu + 0.5)

    @_jit
    def _decode(embed, excitation, excitation_bias, cond_w, cond_bias, dilated, res_skip, res_skip_bias, out1,
                out1_bias, out2, out2_bias, dilations, hop, cond, exc, start, forced, u, temperature, classes, logits,
                lpc, table, lags):
        """Run the cached WaveNet for B streams over T = F * hop samples.

        cond [F, B, Cc] conditioning per frame; exc [T, B, H] excitation per sample (or [0, B, 0]);
        forced [B, T] classes to feed (teacher forcing: logits [B, T, C] are written) or [B, 0] to sample
        from u [B, T] (classes [B, T] are written), feeding class `start` before the first sample.
        lpc [F, B, P] predictor coefficients (P = 0: a plain WaveNet) and table [C] the classes' values: the LPC
        WaveNet (models/lpc.py) is fed x[t-1], p[t], e[t-1] and samples e[t]; x[t] = p[t] + table[e[t]]; lags [B, T]
        (or [B, 0]) its pitch lags: e[t - lags[t]] is fed too (mid-scale where the lag is 0 or reaches before 0)."""
        B = classes.shape[0]
        L, R2, _ = dilated.shape
        R = R2 // 2
        S = out1.shape[1]
        C = out2.shape[0]
        teacher = forced.shape[1] > 0
        half = f32(math.sqrt(0.5))
        ring = np.zeros((L, dilations.max(), B, R), np.float32)  # layer l's input at t - d is in slot t % d
        prev = np.full(B, start, np.int64)
        gates = np.empty((B, L * R2), np.float32)  # this frame's conditioning of every layer's gates
        x = np.empty((B, R2), np.float32)  # [h(t - d), h(t)] of the current layer
        z = np.empty((B, R2), np.float32)
        a = np.empty((B, R), np.float32)
        rs = np.empty((B, R + S), np.float32)
        skip = np.empty((B, S), np.float32)
        hid = np.empty((B, out1.shape[0]), np.float32)
        lg = np.empty((B, C), np.float32)
        e = np.empty(C, np.float32)
        cdf = np.empty(C, np.float64)
        P = lpc.shape[2]
        mu = np.float64(C - 1)
        signal = np.zeros((B, max(P, 1)))  # ring of the last P samples of x, x[t] in slot t % P
        predicted = np.zeros(B)
        x_prev = np.full(B, start, np.int64)
        lagging = lags.shape[1] > 0
        past_e = np.full((B, 1024 if lagging else 1), start, np.int64)  # e[t] in slot t % 1024 (lags <= lpc.MAX_LAG)
        for t in range(cond.shape[0] * hop):
            if t % hop == 0:
                for b in range(B):
                    gates[b, :] = cond_bias
                _gemv(cond_w, cond[t // hop], gates)
            for b in range(B):
                if P > 0:
                    acc = 0.0
                    for k in range(min(P, t)):
                        acc += np.float64(lpc[t // hop, b, k]) * signal[b, (t - 1 - k) % P]
                    predicted[b] = acc
                    pc = _mu_law_class(acc, mu)
                    for j in range(R):
                        x[b, R + j] = embed[x_prev[b], j] + embed[C + pc, j] + embed[2 * C + prev[b], j]
                    if lagging:
                        lag = lags[b, t]
                        back = past_e[b, (t - lag) % 1024] if lag > 0 and t - lag >= 0 else start
                        for j in range(R):
                            x[b, R + j] += embed[3 * C + back, j]
                else:
                    p = forced[b, t] if teacher else prev[b]
                    for j in range(R):
                        x[b, R + j] = embed[p, j]
                if exc.shape[0] > 0:
                    for j in range(R):
                        acc = excitation_bias[j]
                        for k in range(exc.shape[2]):
                            acc += excitation[j, k] * exc[t, b, k]
                        x[b, R + j] += acc
                skip[b, :] = 0.0
            for l in range(L):
                slot = t % dilations[l]
                for b in range(B):
                    for j in range(R):
                        x[b, j] = ring[l, slot, b, j]
                        ring[l, slot, b, j] = x[b, R + j]
                    for j in range(R2):
                        z[b, j] = gates[b, l * R2 + j]
                _gemv(dilated[l], x, z)
                for b in range(B):
                    for j in range(R):
                        # tanh(v) = 1 - 2 / (exp(2v) + 1), sigmoid(v) = 1 / (1 + exp(-v))
                        th = f32(1.0) - f32(2.0) / (_exp(f32(2.0) * z[b, j]) + f32(1.0))
                        a[b, j] = th / (f32(1.0) + _exp(-z[b, R + j]))
                    for j in range(R + S):
                        rs[b, j] = res_skip_bias[l, j]
                _gemv(res_skip[l], a, rs)
                for b in range(B):
                    for j in range(R):
                        x[b, R + j] = (x[b, R + j] + rs[b, j]) * half
                    for j in range(S):
                        skip[b, j] += rs[b, R + j]
            for b in range(B):
                for j in range(S):
                    skip[b, j] = max(skip[b, j], f32(0.0))
                hid[b, :] = out1_bias
                lg[b, :] = out2_bias
            _gemv(out1, skip, hid)
            for b in range(B):
                for j in range(hid.shape[1]):
                    hid[b, j] = max(hid[b, j], f32(0.0))
            _gemv(out2, hid, lg)
            for b in range(B):
                if teacher:
                    logits[b, t, :] = lg[b]
                else:
                    prev[b] = _sample(lg[b], u[b, t], temperature, e, cdf)
                    classes[b, t] = prev[b]
                    if P > 0:
                        xv = predicted[b] + table[prev[b]]
                        signal[b, t % P] = xv
                        x_prev[b] = _mu_law_class(xv, mu)
                        past_e[b, t % past_e.shape[1]] = prev[b]
