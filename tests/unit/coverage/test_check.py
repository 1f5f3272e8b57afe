"""A coverage check survives one stream's failed question to ONC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from pipeline.coverage.check import check_streams
from pipeline.coverage.model import GapClass
from pipeline.exceptions import OncError
from pipeline.onc.api import OncApi
from pipeline.onc.models.availability import AvailabilityQuery, ProductAvailability
from pipeline.settings import ArchiveFileStream
from pipeline.state.base import Commit
from pipeline.state.memory import InMemoryStateStore

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def hydrophone(name: str, location: str) -> ArchiveFileStream:
    return ArchiveFileStream(
        name=name,
        kind="archivefile",
        location_code=location,
        device_category_code="HYDROPHONE",
        start=T0,
    )


class Availability:
    """ONC answers about SEVIP (no files: an upstream gap) and fails for BACAX."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def data_availability(
        self, query: AvailabilityQuery
    ) -> AsyncIterator[ProductAvailability]:
        location = query.source.location_code or ""
        self.asked.append(location)
        if location == "BACAX":
            raise OncError("server error", status=500)
        for row in ():
            yield row


async def test_one_streams_failed_question_does_not_cost_the_others_their_check(
    tmp_path: Path,
) -> None:
    store = InMemoryStateStore()
    await store.open()
    failing, answered = hydrophone("bacax", "BACAX"), hydrophone("sevip", "SEVIP")
    # Both passed six hours holding no file: behind the cursor, each hour is a hole to ask about.
    for stream in (failing, answered):
        await store.commit_publish(Commit(stream.name, cursor_time=T0 + timedelta(hours=6)))
    client = Availability()
    report = await check_streams(
        [failing, answered],
        store,
        tmp_path,
        T0 + timedelta(hours=6),
        client=cast(OncApi, client),
    )
    assert set(client.asked) == {"BACAX", "SEVIP"}
    by_name = {row.stream: row for row in report}
    assert set(by_name) == {"bacax", "sevip"}
    # The failed stream is classified from the state alone: its hours stay missing.
    assert not by_name["bacax"].upstream_asked
    assert by_name["bacax"].coverage.of_class(GapClass.MISSING)
    # The other one got its answer: ONC has nothing there, so nothing is missing.
    assert by_name["sevip"].upstream_asked
    assert not by_name["sevip"].coverage.of_class(GapClass.MISSING)
    await store.close()


class FilesEverywhere:
    """ONC holds files for every span asked about (we lack them: they are `missing`)."""

    def __init__(self) -> None:
        self.requests = 0

    async def data_availability(
        self, query: AvailabilityQuery
    ) -> AsyncIterator[ProductAvailability]:
        self.requests += 1
        assert isinstance(query.date_from, datetime)
        assert isinstance(query.date_to, datetime)
        yield ProductAvailability(
            device_code="ICLISTENHF1560",
            data_product_code="AD",
            extension="wav",
            date_from=query.date_from,
            date_to=query.date_to,
            file_count=1,
            average_file_coverage=1.0,
            max_file_coverage=1.0,
            max_file_coverage_date=None,
            min_file_coverage=1.0,
            min_file_coverage_date=None,
            total_file_size=1,
            total_uncompressed_file_size=1,
        )


async def test_a_span_onc_has_files_for_is_not_asked_about_again_every_check(
    tmp_path: Path,
) -> None:
    from pipeline.coverage.sources import MAX_QUERIES, RECHECK, UpstreamMemory

    store = InMemoryStateStore()
    await store.open()
    stream = hydrophone("sevip", "SEVIP")
    now = T0 + timedelta(hours=1)
    await store.commit_publish(Commit(stream.name, cursor_time=now))
    client, memory = FilesEverywhere(), UpstreamMemory()

    async def check(at: datetime) -> GapClass:
        [row] = await check_streams(
            [stream], store, tmp_path, at, client=cast(OncApi, client), memory=memory
        )
        # The hour behind the cursor (later ones are not_yet).
        [gap] = [g for g in row.coverage.gaps if g.span.start == T0]
        return gap.gap_class

    # One missing hour with files throughout: halved down to the minute, within the cap.
    assert await check(now) is GapClass.MISSING
    first = client.requests
    assert 60 < first <= MAX_QUERIES
    # The next checks (every cadence) know the answer: still missing, nothing asked.
    assert await check(now + timedelta(minutes=1)) is GapClass.MISSING
    assert client.requests == first
    # Once the answer is old, it is asked again.
    assert await check(now + RECHECK + timedelta(minutes=1)) is GapClass.MISSING
    assert client.requests > first
    await store.close()
