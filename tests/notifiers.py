"""Registry notifier settings from the flat timing keywords tests like to write."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.registry import NotifierSettings
from pipeline.registry.dispatch import RetryPolicy
from pipeline.registry.outcomes import OutcomePolicy


def notifier_settings(
    harvests: Mapping[str, str],
    *,
    debounce: float = 60.0,
    max_interval: float = 900.0,
    dry_run: bool = False,
    busy_recheck: float = 30.0,
    retry_base: float = 5.0,
    retry_cap: float = 600.0,
    auth_retry: float = 900.0,
    poll_interval: float = 15.0,
    outcome_timeout: float = 3600.0,
) -> NotifierSettings:
    """NotifierSettings with each keyword put into its group (retry, outcome watching)."""
    return NotifierSettings(
        harvests=harvests,
        debounce=debounce,
        max_interval=max_interval,
        dry_run=dry_run,
        retry=RetryPolicy(
            busy_recheck=busy_recheck,
            retry_base=retry_base,
            retry_cap=retry_cap,
            auth_retry=auth_retry,
        ),
        outcomes=OutcomePolicy(poll_interval=poll_interval, timeout=outcome_timeout),
    )
