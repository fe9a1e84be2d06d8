"""Sign-in failure timing by stored bcrypt cost: does the answer time tell who exists?

`python bench/login_timing.py [ROUNDS] [REPEAT]` times `PasswordHasher.verify` (the whole
bcrypt work of a failed sign-in) for an unknown user, a wrong password against a hash made at
ROUNDS (default 10), and a wrong password against a hash made at cost 4 (an account created
with `--bcrypt-rounds 4`), then prints one JSON object of medians in milliseconds. Before the
fix the last was about 60 times faster than the first; now all three should be within noise.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from plp.auth.passwords import PasswordHasher, hash_password

PASSWORD = "correct horse battery"
WRONG = "not the password at all"


async def run(rounds: int, repeat: int) -> dict[str, float]:
    hasher = PasswordHasher(rounds)
    try:
        await hasher.warm()
        cases = {
            "unknown_user_ms": None,
            "wrong_password_current_hash_ms": hash_password(PASSWORD, rounds),
            "wrong_password_cost4_hash_ms": hash_password(PASSWORD, 4),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeat):  # interleaved, so a change in machine load hits all three
            for name, stored in cases.items():
                started = time.perf_counter()
                assert not await hasher.verify(WRONG, stored)
                times[name].append((time.perf_counter() - started) * 1000)
        return {"rounds": rounds, **{name: statistics.median(t) for name, t in times.items()}}
    finally:
        hasher.close()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(asyncio.run(run(*(args + [10, 15][len(args) :])))))
