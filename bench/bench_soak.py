"""Long fault soak: SIGKILLs, wall-clock steps, emulator faults, concurrency 1, 2 and 4 (see tests/e2e/soak.py).

Run: python bench/bench_soak.py [mails] [rounds] [seed]. Prints what it survived; exit status 1 when a mail
was lost or duplicated or a quota window exceeded.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from e2e.soak import run_soak  # the soak lives with the tests, which run its short version


def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # the faults are the point: their warnings are not news
    mails, rounds, seed = (int(a) for a in (sys.argv[1:] + ["400", "36", "7"][len(sys.argv) - 1 :]))
    with tempfile.TemporaryDirectory(prefix="acs-soak-") as directory:
        report = asyncio.run(run_soak(Path(directory), mails=mails, rounds=rounds, seed=seed))
    for line in report.lines():
        print(line)
    ok = report.delivered == report.mails and report.duplicates == 0 and report.over_quota == 0
    print("verdict:", "every mail exactly once, within quota" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
