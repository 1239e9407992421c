"""`python -m app [--model PATH] [--host H] [--port P] ...`: the same as `vqspeech demo ...`."""

import sys

from vqspeech.cli import main

sys.exit(main(["demo", *sys.argv[1:]]))
