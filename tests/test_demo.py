"""The Gradio demo, used as a person would: the app is started on a free 127.0.0.1 port and driven over
HTTP with gradio_client, and in headless Chromium (Playwright on Debian's chromium, with a fake microphone)
by clicking.

The model is tiny and untrained. The library runs end to end; its voice conversion (`vqspeech.convert`) is wrapped
by a recorder of the calls the app makes.

Set VQSPEECH_UPDATE_SCREENSHOT=1 to copy the browser test's screenshot to app/screenshot.png.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import DEBUG_OVERLAY, REPO, synthetic_voice
from vqspeech import audio, checkpoint, cli, conversion
from vqspeech.codec import api, bitstream
from vqspeech.config import load_config, to_dict
from vqspeech.models.vqvae import VQSpeech
from vqspeech.checkpoint import save_checkpoint

from gradio_client import Client, handle_file

SR = 16000
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium reaches out to update and sync services.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def tiny_model(parallel: bool = False) -> tuple[VQSpeech, object]:
    config = load_config(DEBUG_OVERLAY)
    config.model.n_speakers = 2
    config.model.parallel_decoder = parallel
    torch.manual_seed(0)
    model = VQSpeech(config.model, ["alice", "bob"]).eval()
    with torch.no_grad():  # codebook = encoder outputs of speech-like audio, so the codes are not all one
        z = model.encoder(torch.from_numpy(synthetic_voice(1.024, 140, 0))[None, None])[0].T
        model.quantizer.codebook.copy_(z[torch.randperm(z.shape[0])[: config.model.quantizer.codebook_size]])
    return model, config


class ConvertRecorder:
    """Records every convert() call the app makes, and passes it on to the library's."""

    def __init__(self, real):
        self.calls: list[dict] = []
        self.real = real
        self.delay = 0.0  # seconds: lets the browser test see the progress indicator

    def convert(self, model, wav, target=None, references=None, decoder="autoregressive", generator=None, voices=None):
        assert (target is None) != (references is None), "exactly one of target / references"
        self.calls.append(dict(wav=wav, target=target, references=references, decoder=decoder, voices=voices))
        time.sleep(self.delay)
        self.calls[-1]["out"] = self.real(model, wav, target=target, references=references, decoder=decoder,
                                          generator=generator, voices=voices)
        return self.calls[-1]["out"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo-inputs")
    sf.write(d / "speech.wav", synthetic_voice(0.3, 140, 1, sample_rate=22050), 22050)  # any rate: the app resamples
    sf.write(d / "reference.flac", synthetic_voice(1.5, 220, 2), SR)  # enough voiced speech for a real reference
    sf.write(d / "long.wav", synthetic_voice(2.5, 140, 3), SR)  # over the 2 s limit, under the size limit
    sf.write(d / "big.wav", np.random.default_rng(0).standard_normal(SR * 8).astype(np.float32) * 0.1, SR)  # 256 kB
    (d / "notes.txt").write_text("not audio\n" * 50)
    (d / "fake.wav").write_text("RIFF but not really\n" * 50)
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo on a free port, with the model given as a file (as --model does)."""
    from app.ui import Limits, serve

    model, config = tiny_model()
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, {"config": to_dict(config), "speakers": model.speaker_names, "step": 0, "model": model.state_dict()})
    model = checkpoint.load(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", os.environ.get("GRADIO_TEMP_DIR", ""))  # serve() sets it; undone after
        recorder = ConvertRecorder(conversion.convert)
        mp.setattr(conversion, "convert", recorder.convert)
        limits = Limits(max_seconds=2.0, max_file_mb=0.2)
        demo, url = serve(model, port=free_port(), limits=limits, block=False)
        try:
            yield types.SimpleNamespace(url=url, model=model, recorder=recorder, limits=limits)
        finally:
            demo.close()


@pytest.fixture
def client(server, tmp_path):
    return Client(server.url, verbose=False, download_files=str(tmp_path), analytics_enabled=False)


def _assert_speech_file(path, n_samples: int) -> np.ndarray:
    wav, rate = sf.read(path, dtype="float32")
    assert rate == SR and wav.ndim == 1 and wav.size == n_samples
    assert np.sqrt(np.mean(wav**2)) > 0.01, "silent output"
    return wav


def test_binds_to_localhost_by_default(server):
    assert cli.build_parser().parse_args(["demo"]).host == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")


def test_convert_to_a_training_speaker(server, client, files):
    source = audio.load(files / "speech.wav")
    out, image, status = client.predict(handle_file(str(files / "speech.wav")), "A training speaker", "bob", None,
                                        "autoregressive", api_name="/convert")
    call = server.recorder.calls[-1]
    assert call["target"] == "bob" and call["references"] is None and call["decoder"] == "autoregressive"
    np.testing.assert_array_equal(call["wav"], source)  # the library's loading, at 16 kHz, unchanged
    wav = _assert_speech_file(out, source.size)
    np.testing.assert_allclose(wav, call["out"], atol=1e-4)  # the app returns what convert returned (16-bit rounding)
    assert "bob" in status
    from PIL import Image

    width, height = Image.open(image).size
    assert width > 1.5 * height  # two spectrograms side by side


def test_convert_to_a_reference_clip(server, client, files):
    out, _, status = client.predict(handle_file(str(files / "speech.wav")), "A reference clip", "alice",
                                    handle_file(str(files / "reference.flac")), "autoregressive", api_name="/convert")
    call = server.recorder.calls[-1]
    assert call["target"] is None and len(call["references"]) == 1
    np.testing.assert_array_equal(call["references"][0], audio.load(files / "reference.flac"))
    _assert_speech_file(out, audio.load(files / "speech.wav").size)
    assert "reference" in status
    # The clip's voice is kept: the next conversion to it does not find it again.
    assert call["voices"].knows(server.model, call["references"])
    client.predict(handle_file(str(files / "speech.wav")), "A reference clip", "alice",
                   handle_file(str(files / "reference.flac")), "autoregressive", api_name="/convert")
    assert server.recorder.calls[-1]["voices"] is call["voices"]


def test_codec_round_trip(server, client, files):
    """Real encoder and autoregressive decoder: the .vqs downloads, and the library decodes it to the
    very audio the page plays (same seed)."""
    source = audio.load(files / "speech.wav")
    info, vqs, decoded, _ = client.predict(handle_file(str(files / "speech.wav")), "bob", "autoregressive", api_name="/codec")
    data = open(vqs, "rb").read()
    assert data.startswith(bitstream.MAGIC)
    wav, header = api.decode_bytes(server.model, data)
    assert header.n_samples == source.size and header.speaker == "bob"
    np.testing.assert_allclose(_assert_speech_file(decoded, source.size), wav, atol=1e-4)
    assert f"{len(data) * 8 / header.duration / 1000:.2f} kbit/s" in info
    assert f"{header.bitrate / 1000:.2f} kbit/s" in info


@pytest.mark.parametrize("name, message", [
    ("notes.txt", "notes.txt: not a readable audio file"),
    ("fake.wav", "fake.wav: not a readable audio file"),
    ("long.wav", "long.wav: 2.5 s is too long for this demo (at most 2 s)"),
])
def test_refuses_bad_input_with_a_message(client, files, name, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        client.predict(handle_file(str(files / name)), "bob", "autoregressive", api_name="/codec")
    assert message in str(e.value)
    assert str(files) not in str(e.value) and "vqspeech-demo-" not in str(e.value)  # no server paths shown


def test_refuses_a_file_over_the_size_limit(server, files):
    import httpx

    assert (files / "big.wav").stat().st_size > server.limits.max_bytes
    with open(files / "big.wav", "rb") as f:
        r = httpx.post(server.url + "gradio_api/upload", files={"files": ("big.wav", f, "audio/wav")}, timeout=30)
    assert r.status_code >= 400 and "maximum" in r.text.lower()


def test_never_reads_a_path_outside_its_temp_folder(server, tmp_path):
    """A hand-made request naming a server path (not an upload) is refused, and nothing of it comes back."""
    import httpx

    secret = tmp_path / "secret.wav"
    sf.write(secret, synthetic_voice(0.3, 140, 4), SR)
    r = httpx.post(server.url + "gradio_api/call/codec",
                   json={"data": [{"path": str(secret), "meta": {"_type": "gradio.FileData"}}, "bob", "autoregressive"]}, timeout=30)
    events = httpx.get(server.url + f"gradio_api/call/codec/{r.json()['event_id']}", timeout=60).text
    assert "event: error" in events and "not uploaded" in events
    assert "kbit/s" not in events and ".vqs" not in events


def test_decoder_choice_only_when_the_model_has_both(tmp_path):
    from app.ui import build

    for parallel, visible, first in [(False, False, "autoregressive"), (True, True, "parallel")]:
        demo = build(tiny_model(parallel)[0], tmp_path)
        radio = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "vc-decoder")
        assert radio.visible == visible and radio.value == first


def test_without_a_model_it_says_so(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(checkpoint, "default_model_path", lambda: tmp_path / "none.pt")
    assert cli.main(["demo"]) == 2
    assert "no default model" in capsys.readouterr().err
    r = subprocess.run([sys.executable, "-m", "app", "--model", str(tmp_path / "missing.pt")], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and "missing.pt: no such model file" in r.stderr


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium with a fake microphone (a generated tone) that needs no permission prompt."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium (bash setup.sh dev does)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("no playwright: pip install -e '.[dev]' (its own browser download is not needed)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + [
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the demo; fails the test if the page fetched anything from outside the app."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"])
    requests = []
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server.url)
    yield page
    context.close()
    foreign = [u for u in requests if not u.startswith((server.url, "blob:", "data:"))]
    assert foreign == [], "the page fetched from outside the app"


def _player_audio(page, selector: str) -> tuple[np.ndarray, int]:
    """The bytes behind an audio player's source, fetched by the page itself, decoded."""
    src = page.get_attribute(f"{selector} audio[src]", "src")
    body = page.evaluate("async (u) => Array.from(new Uint8Array(await (await fetch(u)).arrayBuffer()))", src)
    return sf.read(io.BytesIO(bytes(body)), dtype="float32")


def test_in_headless_chromium(server, page, files, tmp_path):
    """Upload a wav, click Convert, see the progress, and fetch the audio the page's player holds; then
    see the message for a non-audio upload."""
    source = audio.load(files / "speech.wav")
    page.locator("#vc-input input[type=file]").set_input_files(str(files / "speech.wav"))
    page.wait_for_selector("#vc-input audio[src]", state="attached", timeout=30_000)
    server.recorder.delay = 1.5
    try:
        page.click("#vc-run")
        page.get_by_text("Converting with the autoregressive decoder").first.wait_for(timeout=30_000)
        page.wait_for_selector("#vc-output audio[src]", state="attached", timeout=60_000)
    finally:
        server.recorder.delay = 0.0
    wav, rate = _player_audio(page, "#vc-output")
    assert rate == SR and wav.size == source.size and np.sqrt(np.mean(wav**2)) > 0.01
    page.wait_for_selector("#vc-spectrograms img", timeout=30_000)
    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    if os.environ.get("VQSPEECH_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, REPO / "app" / "screenshot.png")
    # A non-audio file with an audio name gets past the browser's file-type filter: the app says so.
    page.get_by_role("tab", name="Codec").click()
    page.locator("#codec-input input[type=file]").set_input_files(str(files / "fake.wav"))
    page.wait_for_selector("#codec-input audio[src]", state="attached", timeout=30_000)
    page.click("#codec-run")
    page.get_by_text("fake.wav: not a readable audio file").first.wait_for(timeout=30_000)


def test_microphone_recording_in_chromium(server, page):
    """Record about a second from the (fake) microphone, stop, convert: the app gets the recording."""
    n_calls = len(server.recorder.calls)
    page.click("#vc-input button[aria-label='Record audio']")
    page.click("#vc-input button.record-button")
    time.sleep(1.2)
    page.click("#vc-input button.stop-button")
    page.wait_for_selector("#vc-input audio[src]", state="attached", timeout=30_000)
    page.click("#vc-run")
    page.wait_for_selector("#vc-output audio[src]", state="attached", timeout=60_000)
    assert len(server.recorder.calls) == n_calls + 1
    recorded = server.recorder.calls[-1]["wav"]
    assert 0.5 * SR < recorded.size < 5 * SR and np.abs(recorded).max() > 0.01
    wav, rate = _player_audio(page, "#vc-output")
    assert rate == SR and wav.size == recorded.size
