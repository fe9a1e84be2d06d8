"""`python bench/serve_asyncio.py [plp serve args]`: plp with uvloop hidden, for the A/B figure.

plp uses uvloop when it is importable; this runs the very same server on asyncio's default
loop so the benchmark can show what uvloop is worth on this machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.modules["uvloop"] = None  # type: ignore[assignment]  # makes `import uvloop` fail

from plp.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
