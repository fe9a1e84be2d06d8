"""Run plp: `python run.py [serve|create-user|check] [--setting value ...]`."""

from __future__ import annotations

from plp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
