"""The one writer contract: each format takes the batch kinds it declares, the assembly
refuses any other kind loudly (records are never dropped), and an empty one passes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import netCDF4
import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs.assembly import WindowAssembly
from pipeline.outputs.writers import LazyWriters
from pipeline.records import RawBatch, Window, scalar_batch
from pipeline.settings import FORMATS_BY_KIND
from tests.unit.outputs.helpers import DAY, TEMP, ctd_meta, times

HOUR = timedelta(hours=1)
WINDOW = Window(DAY + 5 * HOUR, DAY + 6 * HOUR)
RAW = RawBatch(["2026-11-20T05:00:00.000Z"], ["x"], [" "])
SCALAR = scalar_batch([(TEMP, times(DAY + 5 * HOUR, 1), [1.0], [1])], {})


def assembly(tmp_path: Path, fmt: str) -> WindowAssembly:
    meta = ctd_meta()
    built = WindowAssembly(
        LazyWriters({meta.dataset_id: meta}, "daily"), [fmt], tmp_path, "onc_bacax_ctd"
    )
    built.open(WINDOW)
    return built


@pytest.mark.parametrize("fmt", ["netcdf", "csv", "parquet"])
def test_scalar_formats_refuse_raw_lines(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(OutputError, match="rawtext") as refused:
        assembly(tmp_path, fmt).add(RAW)
    assert f"the {fmt} format holds scalardata" in str(refused.value)
    assert "onc_bacax_ctd" in str(refused.value.path)  # the file the format would write


@pytest.mark.parametrize("fmt", ["rawtext", "jsonlcsv"])
def test_raw_formats_refuse_scalar_readings(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(OutputError, match="scalardata"):
        assembly(tmp_path, fmt).add(SCALAR)


def test_an_empty_batch_of_another_kind_is_no_error(tmp_path: Path) -> None:
    built = assembly(tmp_path, "netcdf")
    built.add(RawBatch([], [], []))
    built.add(SCALAR)
    published = built.publish().files[0]
    assert published is not None
    with netCDF4.Dataset(published.file.path) as ds:
        assert ds["Temperature"][:].size == 1


def test_page_flag_info_reaches_the_format_that_shows_it(tmp_path: Path) -> None:
    built = assembly(tmp_path, "netcdf")
    built.add(
        scalar_batch(
            [(TEMP, times(DAY + 5 * HOUR, 2), [1.0, 2.0], [1, 4])], {"1": "Good", "4": "Bad"}
        )
    )
    published = built.publish().files[0]
    assert published is not None
    with netCDF4.Dataset(published.file.path) as ds:
        assert ds["Temperature_qc"].flag_meanings == "good bad"


def test_every_format_declares_the_kinds_the_settings_allow() -> None:
    writers = LazyWriters({}, "daily")
    for name in writers:
        declared = {kind for kind, formats in FORMATS_BY_KIND.items() if name in formats}
        assert writers[name].kinds == declared, name
