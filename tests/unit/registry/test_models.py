"""HarvestDocument: phases, outcome fields, unknown fields kept."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from pipeline.registry.client import backoff_delay, password_digest
from pipeline.registry.models import (
    HarvestDocument,
    HarvestPhase,
    HarvestStatus,
    parse_registry_date,
)


def doc(**fields: object) -> HarvestDocument:
    return HarvestDocument.model_validate({"_id": "aBcDeFgHiJkMnPqRs", "name": "x", **fields})


@pytest.mark.parametrize(
    ("value", "phase", "in_progress"),
    [
        (None, HarvestPhase.NEVER, False),
        ("pending", HarvestPhase.PENDING, True),
        ("harvesting", HarvestPhase.HARVESTING, True),
        ("deleting", HarvestPhase.DELETING, True),
        ("2016-09-22T18:28:08.893Z", HarvestPhase.FINISHED, False),
        ("not a date", HarvestPhase.NEVER, False),
    ],
)
def test_phase_from_last_harvest_dt(
    value: str | None, phase: HarvestPhase, in_progress: bool
) -> None:
    document = doc(last_harvest_dt=value)
    assert document.phase is phase
    assert document.in_progress is in_progress


def test_finished_document_exposes_time_status_and_counts() -> None:
    document = doc(
        last_harvest_dt="2016-09-22T18:28:08.893Z",
        last_harvest_status="fail",
        last_record_count=10,
        last_good_count=7,
        last_bad_count=3,
    )
    assert document.finished_at == datetime(2016, 9, 22, 18, 28, 8, 893000, tzinfo=UTC)
    assert document.status is HarvestStatus.FAIL
    assert (document.last_good_count, document.last_bad_count) == (7, 3)


def test_unknown_fields_are_kept_and_dumped_back() -> None:
    document = doc(ckan_harvest_url="https://data.ioos.us/h/1", brand_new={"a": 1})
    assert document.model_extra == {
        "ckan_harvest_url": "https://data.ioos.us/h/1",
        "brand_new": {"a": 1},
    }
    raw = document.raw()
    assert raw["_id"] == "aBcDeFgHiJkMnPqRs"
    assert raw["brand_new"] == {"a": 1}


def test_unknown_status_is_none_not_an_error() -> None:
    assert doc(last_harvest_status="weird").status is None
    assert doc().status is None
    assert doc().finished_at is None


def test_registry_date_without_zone_is_taken_as_utc() -> None:
    assert parse_registry_date("2020-01-02T03:04:05") == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_registry_date("garbage") is None


def test_password_digest_is_lowercase_hex_sha256() -> None:
    assert password_digest("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, base=1.0, cap=8.0, rng=rng) for n in range(8)]
    for n, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jitter: capped delays still differ


def test_backoff_honours_retry_after_within_the_cap() -> None:
    rng = random.Random(1)
    assert backoff_delay(0, base=0.1, cap=30.0, rng=rng, retry_after=12.0) == 12.0
    assert backoff_delay(0, base=0.1, cap=5.0, rng=rng, retry_after=120.0) == 5.0
