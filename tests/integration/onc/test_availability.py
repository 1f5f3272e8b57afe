"""`OncClient.data_availability` against the emulator: ONC's account of the archive, typed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.exceptions import OncRequestError
from pipeline.onc import AvailabilityQuery, DataSource
from tests.integration.onc.conftest import client, running_emulator

NCBC_BPR = DataSource(location_code="NCBC", device_category_code="BPR")


async def test_rows_are_typed_and_agree_with_the_archive() -> None:
    query = AvailabilityQuery(NCBC_BPR, "2019-11-23", "2019-11-30")
    async with running_emulator() as emu, client(emu) as onc:
        rows = [r async for r in onc.data_availability(query)]
        files = emu.truth.archive_files(
            date_from="2019-11-23", date_to="2019-11-30", device_code="BPR-Folger-59"
        )
    [row] = rows
    # The sample's own numbers (onc-samples/dataAvailability_NCBC_BPR_docstring.json).
    assert (row.device_code, row.data_product_code, row.extension) == ("BPR-Folger-59", "LF", "txt")
    assert row.file_count == 7
    assert row.average_file_coverage == 0.875
    assert row.date_from == datetime(2019, 11, 23, tzinfo=UTC)
    assert row.date_to == datetime(2019, 12, 1, tzinfo=UTC)
    assert row.min_file_coverage_date == datetime(2019, 11, 30, tzinfo=UTC)
    assert row.total_uncompressed_file_size == sum(f.size for f in files)
    assert row.total_file_size < row.total_uncompressed_file_size


async def test_an_injected_outage_shows_in_the_answer() -> None:
    outage = {
        "device": "BPR-Folger-59",
        "from": "2019-11-25T00:00:00Z",
        "to": "2019-11-26T12:00:00Z",
    }
    query = AvailabilityQuery(
        DataSource(device_code="BPR-Folger-59"),
        datetime(2019, 11, 23, tzinfo=UTC),
        datetime(2019, 11, 30, tzinfo=UTC),
        data_product_code="LF",
        extension="txt",
    )
    async with running_emulator(gaps={"outages": [outage]}) as emu, client(emu) as onc:
        [row] = [r async for r in onc.data_availability(query)]
    assert row.file_count == 6  # the 25th never written; the 26th half covered
    assert row.min_file_coverage == 0.0
    assert row.min_file_coverage_date == datetime(2019, 11, 25, tzinfo=UTC)
    assert row.average_file_coverage == pytest.approx(5.5 / 8)


async def test_nothing_found_is_empty_and_a_bad_code_is_an_error() -> None:
    async with running_emulator() as emu, client(emu) as onc:
        none = [
            r
            async for r in onc.data_availability(
                AvailabilityQuery(NCBC_BPR, "2019-11-23", "2019-11-30", data_product_code="AD")
            )
        ]
        bad = AvailabilityQuery(
            DataSource(location_code="NOWHERE", device_category_code="BPR"), "2019-11-23"
        )
        with pytest.raises(OncRequestError) as caught:
            _ = [r async for r in onc.data_availability(bad)]
    assert none == []
    assert caught.value.status == 400
    assert [e.code for e in caught.value.errors] == [127]
