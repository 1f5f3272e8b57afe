"""Debouncing: when a burst of events should produce its one signal.

Two consumers of new-data events debounce: the registry notifier (one harvest trigger per
batch) and the ERDDAP flagger (one reload flag per burst of files). Both ask the same pure
question, with `now` and the times passed in so it is tested without sleeping: a burst is due
once it has been quiet for `quiet` seconds, or `max_wait` seconds after its first event while
events keep coming, and never before `not_before` (the previous signal's rate limit, a busy
consumer, a failure's backoff).
"""

from __future__ import annotations

import math


def due_at(
    *,
    first_event: float,
    last_event: float,
    quiet: float,
    max_wait: float = math.inf,
    not_before: float = -math.inf,
) -> float:
    """The time a burst of events from `first_event` to `last_event` should be signalled."""
    return max(min(last_event + quiet, first_event + max_wait), not_before)
