"""The Gradio demo: voice conversion and the codec, in the browser. UI only: every result comes from the library.

    serve(model, host="127.0.0.1", port=7860, ...) -> (demo, url)    build, launch, and (block=True) wait

Safety: the server binds to 127.0.0.1 unless told otherwise; it reads no path a visitor can type, only
uploads that Gradio stored in the demo's own temporary folder (checked again in every handler); files
over `max_file_mb` are refused by Gradio at upload, recordings over `max_seconds` and non-audio files
by the handlers, each with a visible one-line message.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

# Before gradio is imported: no usage statistics, no update check, no hub look-ups from a local demo.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vqspeech import audio, features  # noqa: E402
from vqspeech import conversion as vc  # noqa: E402
from vqspeech.codec import api, bitstream  # noqa: E402
from vqspeech.models.vqvae import VQSpeech  # noqa: E402

SPEAKER, REFERENCE = "A training speaker", "A reference clip"
OWN_VOICE = "own"  # the codec tab's choice, for a vector-voice model: the voice the file carries
# System fonts only: the default theme would fetch web fonts from a font CDN on every page load.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


@dataclass
class Limits:
    max_seconds: float = 20.0  # longer recordings are refused: the autoregressive decoder is slow
    max_file_mb: float = 10.0  # Gradio refuses larger uploads before they reach a handler

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 1_000_000)


def _refuse(message: str) -> gr.Error:
    """A visible one-line message for the visitor; an expected refusal, so no traceback in the log."""
    return gr.Error(message, print_exception=False)


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


# --- inputs ----------------------------------------------------------------------------------------------

def _read(path: str | None, what: str, workdir: Path, limits: Limits) -> np.ndarray:
    """An uploaded or recorded file -> float32 [T] at 16 kHz, or gr.Error with a one-line reason."""
    if not path:
        raise _refuse(f"{what}: record or upload some speech first.")
    p = Path(path).resolve()
    if not p.is_relative_to(workdir.resolve()):  # Gradio checks this too; a handler never trusts a path
        raise _refuse(f"{what}: refused: not a file uploaded to this demo.")
    name = p.name
    if p.stat().st_size > limits.max_bytes:
        raise _refuse(f"{name}: the file is larger than {limits.max_file_mb:g} MB.")
    try:
        wav = audio.load(p)
    except audio.AudioError as e:
        # The message names the file by its full temporary path; the visitor knows it by its name.
        raise _refuse(str(e).replace(str(p), name)) from None
    seconds = wav.size / audio.SAMPLE_RATE
    if seconds > limits.max_seconds:
        raise _refuse(f"{name}: {seconds:.1f} s is too long for this demo (at most {limits.max_seconds:g} s).")
    return wav


def _out_path(workdir: Path, source: str, suffix: str) -> Path:
    """A fresh output file in the demo's folder, named after the input (one folder per request)."""
    folder = workdir / "out" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source).stem)[:60] or "audio"
    return folder / f"{stem}{suffix}"


# --- outputs ---------------------------------------------------------------------------------------------

def spectrograms(pairs: list[tuple[str, np.ndarray]], sample_rate: int = audio.SAMPLE_RATE) -> np.ndarray:
    """[(title, wav float32 [T])] -> an RGB image [H, W, 3] of their log-mel spectrograms side by side,
    on one colour scale so that loudness can be compared."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hop = 128
    mels = []
    for _, wav in pairs:
        x = torch.from_numpy(np.pad(wav, (0, -wav.size % hop)))[None]
        mels.append(features.log_mel(x, hop, sample_rate, n_mels=80)[0].numpy())
    low, high = max(min(m.min() for m in mels), max(m.max() for m in mels) - 12.0), max(m.max() for m in mels)
    fig = Figure(figsize=(5 * len(pairs), 3), dpi=100, layout="constrained")
    for i, ((title, wav), mel) in enumerate(zip(pairs, mels)):
        ax = fig.add_subplot(1, len(pairs), i + 1)
        ax.imshow(mel, origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma",
                  extent=(0, wav.size / sample_rate, 0, mel.shape[0]))
        ax.set_title(f"{title} ({wav.size / sample_rate:.2f} s)")
        ax.set_xlabel("seconds")
        ax.set_ylabel("mel band" if i == 0 else "")
    canvas = FigureCanvasAgg(fig)  # no pyplot: no global figure state in a server
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _speaker_choices(model: VQSpeech) -> list[tuple[str, str]]:
    """Dropdown (label, name) pairs."""
    choices = []
    for s in vc.speakers(model):
        details = ", ".join(str(v) for v in (s.get("gender"), s.get("accent")) if v)
        f0 = f"{s['f0_hz']:.0f} Hz" if s.get("f0_hz") else ""
        extra = "; ".join(x for x in (details, f0) if x)
        choices.append((f"{s['name']} ({extra})" if extra else s["name"], s["name"]))
    return choices


# --- the page --------------------------------------------------------------------------------------------

def build(model: VQSpeech, workdir: Path, limits: Limits | None = None) -> gr.Blocks:
    limits = limits or Limits()
    rate = model.config.sample_rate
    choices = _speaker_choices(model)
    decoders = [("autoregressive (WaveNet, slow)", "autoregressive")]
    if model.parallel is not None:
        decoders.insert(0, ("parallel (fast)", "parallel"))

    voices = vc.ReferenceVoices()  # a clip's voice is found once per session, not at every conversion to it

    def convert(source, mode, speaker, reference, decoder, progress=gr.Progress(track_tqdm=True)):
        if decoder not in [v for _, v in decoders]:
            raise _refuse(f"This model has no {decoder!r} decoder.")
        progress(0.05, desc="Reading the recording")
        wav = _read(source, "Input", workdir, limits)
        if mode == REFERENCE:
            refs, target, label = [_read(reference, "Reference clip", workdir, limits)], None, "the reference voice"
        else:
            if speaker not in model.speaker_names:
                raise _refuse("Pick a target speaker.")
            refs, target, label = None, speaker, speaker
        # Method "adapt" fine-tunes a decoder copy: 30-40 s on one core, the first time a clip is used.
        adapting = refs is not None and vc.default_method(model) == "adapt" and not voices.knows(model, refs)
        progress(0.2, desc="Adapting the decoder to the reference voice (30-40 s; once per clip)" if adapting else
                 f"Converting with the {decoder} decoder")
        try:
            out = vc.convert(model, wav, target=target, references=refs, decoder=decoder,
                             generator=torch.Generator().manual_seed(0), voices=voices)
        except ValueError as e:  # the library's one-line refusals (a clip too short, an unknown decoder, ...)
            raise _refuse(_first_line(e)) from None
        progress(0.95, desc="Writing the result")
        path = _out_path(workdir, source, ".converted.wav")
        audio.save(path, out, rate)
        image = spectrograms([("input", wav), (f"converted to {label}", out)], rate)
        return str(path), image, f"Converted {wav.size / rate:.2f} s to **{label}** ({decoder} decoder)."

    codec_choices = list(choices)
    if model.config.voice == "vector":
        codec_choices.insert(0, ("The speaker's own voice (a vector carried in the file)", OWN_VOICE))

    def codec(source, voice, decoder, progress=gr.Progress(track_tqdm=True)):
        progress(0.05, desc="Reading the recording")
        wav = _read(source, "Input", workdir, limits)
        own = voice == OWN_VOICE and model.config.voice == "vector"
        if voice not in model.speaker_names and not own:
            raise _refuse("Pick a decoder voice.")
        if decoder not in [v for _, v in decoders]:
            raise _refuse(f"This model has no {decoder!r} decoder.")
        progress(0.15, desc="Encoding to .vqs")
        try:
            data = api.encode_audio(model, wav, rate, speaker=api.AUTO_SPEAKER if own else voice)
            vqs = _out_path(workdir, source, bitstream.VQS_EXTENSION)
            api.write_atomic(vqs, data)
            progress(0.3, desc=f"Decoding with the {decoder} decoder")
            out, header = api.decode_bytes(model, data, speaker=None if own else voice, decoder=decoder)
        except ValueError as e:
            raise _refuse(_first_line(e)) from None
        progress(0.95, desc="Writing the result")
        path = _out_path(workdir, source, ".decoded.wav")
        audio.save(path, out, rate)
        seconds = header.duration
        coded = bitstream.read(data).words
        payload = (f"**{coded.nbytes * 8 / seconds / 1000:.2f} kbit/s** of payload: {header.n_frames} codes and "
                   f"{header.n_pitch} pitch symbols range-coded under the model's prior ({coded.nbytes * 8 / max(1, header.n_frames):.2f} "
                   f"bits a code, pitch included)" if coded is not None else
                   f"**{header.bitrate / 1000:.2f} kbit/s** of payload: {header.n_frames} codes x {header.code_bits} bits"
                   + (f" + {header.n_pitch} pitch symbols x {header.pitch_bits} bits" if header.pitch_levels else ""))
        info = (f"**{len(data) * 8 / seconds / 1000:.2f} kbit/s** for the whole file ({len(data)} bytes for "
                f"{seconds:.2f} s), " + payload
                + (f" + a voice vector of {len(header.voice)} values ({header.voice_bytes} bytes)" if header.voice else "")
                + f". Decoded in {'the speaker' + chr(39) + 's own voice' if own else 'the voice of **' + voice + '**'}. "
                f"(16-bit PCM at {rate} Hz: {16 * rate / 1000:g} kbit/s.)")
        return info, str(vqs), str(path), spectrograms([("input", wav), ("decoded", out)], rate)

    with gr.Blocks(title="vqspeech demo", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown("# vqspeech\nSpeech turned into discrete codes (a VQ-VAE), then rendered in a chosen voice. "
                    f"Record or upload up to {limits.max_seconds:g} s of speech ({limits.max_file_mb:g} MB at most). "
                    f"This model knows {len(model.speaker_names)} training speakers; decoders: "
                    f"{', '.join(v for _, v in decoders)}.")
        with gr.Tab("Voice conversion"):
            with gr.Row():
                with gr.Column():
                    vc_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Your speech", buttons=[],
                                     elem_id="vc-input")
                    mode = gr.Radio([SPEAKER, REFERENCE], value=SPEAKER, label="Target voice", elem_id="vc-mode")
                    speaker = gr.Dropdown(choices, value=choices[0][1], label="Training speaker", elem_id="vc-speaker")
                    reference = gr.Audio(sources=["upload", "microphone"], type="filepath", visible=False, buttons=[],
                                         label="Reference clip of the target voice", elem_id="vc-reference")
                    decoder = gr.Radio(decoders, value=decoders[0][1], label="Decoder", visible=len(decoders) > 1,
                                       elem_id="vc-decoder")
                    run_vc = gr.Button("Convert", variant="primary", elem_id="vc-run")
                with gr.Column():
                    vc_out = gr.Audio(type="filepath", label="Converted", interactive=False, buttons=["download"],
                                      elem_id="vc-output")
                    vc_status = gr.Markdown(elem_id="vc-status")
            vc_image = gr.Image(label="Log-mel spectrograms", show_label=False, interactive=False, format="png",
                                buttons=["download", "fullscreen"], elem_id="vc-spectrograms")
        with gr.Tab("Codec"):
            with gr.Row():
                with gr.Column():
                    codec_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Your speech", buttons=[],
                                        elem_id="codec-input")
                    voice = gr.Dropdown(codec_choices, value=codec_choices[0][1], label="Decoder voice (recorded in the file)",
                                        elem_id="codec-voice")
                    codec_decoder = gr.Radio(decoders, value=decoders[0][1], label="Decoder", visible=len(decoders) > 1,
                                             elem_id="codec-decoder")
                    run_codec = gr.Button("Encode and decode", variant="primary", elem_id="codec-run")
                with gr.Column():
                    info = gr.Markdown(elem_id="codec-info")
                    vqs = gr.File(label="The .vqs file", interactive=False, elem_id="codec-vqs")
                    codec_out = gr.Audio(type="filepath", label="Decoded", interactive=False, buttons=["download"],
                                         elem_id="codec-output")
            codec_image = gr.Image(label="Log-mel spectrograms", show_label=False, interactive=False, format="png",
                                   buttons=["download", "fullscreen"], elem_id="codec-spectrograms")

        mode.change(lambda m: (gr.update(visible=m == SPEAKER), gr.update(visible=m == REFERENCE)), mode,
                    [speaker, reference], api_name=False)
        run_vc.click(convert, [vc_in, mode, speaker, reference, decoder], [vc_out, vc_image, vc_status], api_name="convert")
        run_codec.click(codec, [codec_in, voice, codec_decoder], [info, vqs, codec_out, codec_image], api_name="codec")
    # One job at a time: decoding takes the CPU, and a second one would only slow both.
    demo.queue(default_concurrency_limit=1, max_size=16)
    return demo


def serve(model: VQSpeech, host: str = "127.0.0.1", port: int | None = 7860, limits: Limits | None = None,
          block: bool = True) -> tuple[gr.Blocks, str]:
    """Build and launch the demo. block=True: serve until interrupted; block=False: return (demo, url) at
    once (the caller closes it). The temporary folder is deleted when the process ends."""
    limits = limits or Limits()
    workdir = Path(tempfile.mkdtemp(prefix="vqspeech-demo-")).resolve()
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    # Gradio stores uploads and results under GRADIO_TEMP_DIR, read when the page and server are built.
    os.environ["GRADIO_TEMP_DIR"] = str(workdir)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio polls itself at start; not news
    if block:  # a plain `kill` ends the demo as Ctrl-C does: through the atexit clean-up
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    demo = build(model, workdir, limits)
    demo.launch(server_name=host, server_port=port, max_file_size=limits.max_bytes, allowed_paths=[],
                show_error=True, prevent_thread_lock=not block, quiet=not block, ssr_mode=False, mcp_server=False,
                theme=THEME)
    return demo, demo.local_url
