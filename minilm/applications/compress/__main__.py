"""`python -m minilm.compress <experiment>`: see minilm/applications/compress/cli.py."""
import sys

from .cli import main

sys.exit(main())
