"""`python -m plp` runs the same program as `plp` and `python run.py`."""

from __future__ import annotations

from plp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
