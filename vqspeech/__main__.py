"""`python -m vqspeech ...` runs the command line."""

import sys

from vqspeech.cli import main

sys.exit(main())
