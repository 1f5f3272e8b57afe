"""Runs `onc-pipeline` with its clock shifted by a fixed number of seconds, for a simulated time
of day (workload 3 runs late in the UTC day whatever the real time is).

`python -m benchmarks.shifted_clock OFFSET_S once|run --config C`. Every component of the
pipeline reads the time through `pipeline.times.utc_now` (imported by name), so replacing it
before anything else of the pipeline is imported shifts all of them; sleeps and timeouts run on
the event loop's monotonic clock and are not affected. Window worker processes are started by a
fork server, a fresh interpreter, and keep the real clock: they only render and publish the
windows the daemon cut, and take the time for nothing but file metadata.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta


def main(argv: list[str]) -> int:
    """Shift the clock by `argv[0]` seconds, then run the pipeline's CLI on the rest."""
    if not argv:
        print("usage: python -m benchmarks.shifted_clock OFFSET_S ARGS...", file=sys.stderr)
        return 2
    offset = timedelta(seconds=float(argv[0]))

    import pipeline.times

    def shifted_now() -> datetime:
        return datetime.now(UTC) + offset

    pipeline.times.utc_now = shifted_now

    from pipeline.cli import main as cli_main

    return cli_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
