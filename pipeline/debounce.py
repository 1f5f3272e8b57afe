"""Debouncing: when a burst of events should produce its one signal.

Two consumers of new-data events debounce: the registry notifier (one harvest trigger per
batch) and the ERDDAP flagger (one reload flag per burst of files). Both ask the same pure
question, with `now` and the times passed in so it is tested without sleeping: a burst is due
once it has been quiet for `quiet` seconds, or `max_wait` seconds after its first event while
events keep coming, and never before `not_before` (the previous signal's rate limit, a busy
consumer, a failure's backoff). `DebounceRule` holds a consumer's two durations as one value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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


@dataclass(frozen=True, slots=True)
class DebounceRule:
    """One consumer's debounce: `quiet` seconds without events, at most `max_wait` in all."""

    quiet: float
    max_wait: float = math.inf

    def due_at(
        self, *, first_event: float, last_event: float, not_before: float = -math.inf
    ) -> float:
        """The time a burst from `first_event` to `last_event` is due under this rule."""
        return due_at(
            first_event=first_event,
            last_event=last_event,
            quiet=self.quiet,
            max_wait=self.max_wait,
            not_before=not_before,
        )
