"""The vqspeech Gradio demo (UI only; the work is done by the vqspeech library): app/ui.py.

Run it with `vqspeech demo [--model PATH]` or `python -m app [--model PATH]` from a source checkout.
Nothing is imported here, so that `python -m app` reports a missing model before gradio's slow import."""
