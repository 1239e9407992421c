"""Take the README's screenshot of the demo: start it on a model, convert one file in headless Chromium.

    python -m app.screenshot --audio speech.wav [--model M.pt] [--speaker TF1] [--out app/screenshot.png]

Needs Debian's chromium and the playwright package (its own browser download is not used).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model file (default: the shipped one)")
    p.add_argument("--audio", required=True)
    p.add_argument("--speaker", default=None, help="target speaker (default: the demo's first)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "screenshot.png")
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = ["--model", args.model] if args.model else []
    server = subprocess.Popen([sys.executable, "-m", "vqspeech.cli", "demo", *model, "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(120):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(1)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.locator("#vc-input input[type=file]").set_input_files(args.audio)
            page.wait_for_selector("#vc-input audio[src]", state="attached", timeout=60_000)
            if args.speaker:
                page.locator("#vc-speaker input").click()
                page.get_by_role("option", name=args.speaker).first.click()
            page.click("#vc-run")
            page.wait_for_selector("#vc-output audio[src]", state="attached", timeout=300_000)
            page.wait_for_selector("#vc-spectrograms img", timeout=60_000)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
        print(f"wrote {args.out}")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
