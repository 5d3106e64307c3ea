"""`python -m posezoo.zoo ...` is `posezoo zoo ...` without the rest of the command line."""
import sys

from .cli import main

sys.exit(main(["zoo", *sys.argv[1:]]))
