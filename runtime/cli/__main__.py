"""`python -m posezoo.runtime.cli` is the `posezoo` command."""
from . import main

raise SystemExit(main())
