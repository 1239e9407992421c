"""`python -m app [--model PATH] [--host H] [--port P] [--max-seconds S] [--max-file-mb M]`: the demo's own launcher
(`vqspeech demo` starts this). Run it from the source checkout: the demo lives beside the package, not in it."""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app", description="The vqspeech browser demo (Gradio).")
    p.add_argument("--model", help="model file, or the name of one that ships in the package (default: the default model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="longest recording accepted (default 20)")
    p.add_argument("--max-file-mb", type=float, default=10.0, help="largest upload accepted, in MB (default 10)")
    args = p.parse_args(argv)
    if args.max_seconds <= 0 or args.max_file_mb <= 0:
        print("vqspeech demo: error: --max-seconds and --max-file-mb must be positive", file=sys.stderr)
        return 2
    from vqspeech import checkpoint

    try:
        model = checkpoint.load(args.model)  # before gradio's slow import: a missing model is said at once
    except (FileNotFoundError, ValueError) as e:
        print(f"vqspeech demo: error: {e}", file=sys.stderr)
        return 2
    try:
        from app.ui import Limits, serve
    except ImportError as e:
        print(f"vqspeech demo: error: {e}; install the demo's packages: pip install 'vqspeech[demo]'", file=sys.stderr)
        return 2
    print(f"vqspeech demo on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    serve(model, host=args.host, port=args.port, limits=Limits(max_seconds=args.max_seconds, max_file_mb=args.max_file_mb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
