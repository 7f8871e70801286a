"""``python -m statesync.cli``: the ``statesync`` command."""

from __future__ import annotations

import sys

from statesync.cli import main

if __name__ == "__main__":
    sys.exit(main())
