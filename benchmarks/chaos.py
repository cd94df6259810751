"""The chaos run at a larger size than the test suite's (tests/test_chaos.py): worker
processes killed with SIGKILL at random (seeded) moments and restarted, one Redis
restart mid-run, on a private redis-server; prints the figures and fails loudly if any
message was not answered exactly once, in order, with its history exact.

    .venv/bin/python -m benchmarks.chaos --users 200 --per-user 10 --workers 3 --kill-every 1 3
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.test_chaos import run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for every reply")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN_S", "MAX_S"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        figures = asyncio.run(
            run_chaos(
                Path(tmp),
                users=args.users,
                per_user=args.per_user,
                workers=args.workers,
                seed=args.seed,
                kill_every=(args.kill_every[0], args.kill_every[1]),
                answer_timeout_s=args.timeout,
            )
        )
    print(figures.line())
    for problem in figures.problems[:20]:
        print("PROBLEM:", problem[:300])
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
