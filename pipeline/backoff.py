"""How long to wait before trying again: capped exponential backoff with jitter, and Retry-After.

One rule for every retry loop (ONC requests, registry requests and triggers, failing streams):
the wait after `failures` consecutive failures is `base * 2**(failures-1)`, at most `cap`, and a
random share of at most `jitter` of it is taken off, so clients that failed together (ONC down
for everyone) do not all come back in the same second. This is the capped exponential backoff
of the AWS Architecture Blog's "Exponential Backoff And Jitter" (Marc Brooker, 2015,
https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/): `jitter=1.0` is its
"full jitter", the one it found finishes a herd of competing clients with the least work;
`jitter=0.5` its "equal jitter", which keeps a floor of half the delay.

Callers choose the share, not the rule: the ONC client uses full jitter (many workers against
one API, the case the study measured); the registry keeps equal jitter (a single client, where
the floor stops a retry from landing at once); the scheduler takes a small configured share,
drawn from the stream's name rather than a random generator, so timetables stay reproducible.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from pipeline.times import utc_now

FULL_JITTER = 1.0
EQUAL_JITTER = 0.5


def backoff_delay(failures: int, *, base: float, cap: float, jitter: float, draw: float) -> float:
    """Seconds to wait after `failures` (>= 1) consecutive failures; `draw` is in [0, 1].

    Never longer than `cap`, never negative; `jitter=0` gives the bare doubling.
    """
    if failures < 1:
        raise ValueError(f"failures must be at least 1, got {failures}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be a fraction between 0 and 1, got {jitter}")
    if not 0.0 <= draw <= 1.0:
        raise ValueError(f"draw must be between 0 and 1, got {draw}")
    # The exponent is bounded: base * 2**n overflows a float after about a thousand failures.
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 1000))
    return ceiling * (1.0 - jitter * draw)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if unusable.

    RFC 9110 section 10.2.3 allows both forms; a date in the past means "now" (0 seconds).
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN guard
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or utc_now()
    return max((when - current).total_seconds(), 0.0)
