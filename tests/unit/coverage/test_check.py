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
        await store.commit_publish(stream.name, [], cursor_time=T0 + timedelta(hours=6))
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
