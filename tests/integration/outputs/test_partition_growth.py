"""Near-real-time: today's partition grows as the day fills, and every record is in it exactly
once, in NetCDF, CSV, raw text and JSON Lines CSV alike; the text files grow in place into
the bytes one write of the whole range gives."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import netCDF4
import numpy as np

from pipeline.emulator import Emulator
from pipeline.onc import DataSource, OncClient, RawQuery
from pipeline.outputs.cf_names import variable_name
from pipeline.outputs.csv import CsvWriter, read_csv_table
from pipeline.outputs.netcdf import NetcdfWriter, read_netcdf_table
from pipeline.outputs.rawtext import JsonlCsvWriter, RawTextWriter, parse_line
from pipeline.outputs.table import ABSENT_FLAG, format_times
from pipeline.records import Window
from tests.integration.outputs.conftest import T0, feed_scalar, meta_for, stream

HOUR = timedelta(hours=1)
LAG = timedelta(seconds=30)
PASSES = 10
STEP = timedelta(minutes=7)  # each pass crosses into the next hourly window now and then
LOOKBACK = timedelta(minutes=3)  # re-reads part of what the previous pass wrote


async def test_ten_passes_growing_a_partition_hold_every_record_once(
    emu: Emulator, onc: OncClient, tmp_path: Path
) -> None:
    ts = stream("bacax-ctd", location_code="BACAX", device_category_code="CTD")
    meta = await meta_for(onc, ts)
    metas = {meta.dataset_id: meta}
    writers = [NetcdfWriter(metas, clock=emu.clock.now), CsvWriter(metas)]
    first = T0 - timedelta(minutes=20)
    cursor = first
    paths: set[Path] = set()
    csv_path = tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.csv"
    csv_inodes: set[int] = set()
    for _ in range(PASSES):
        emu.clock.advance(STEP.total_seconds())
        horizon = emu.clock.now() - LAG
        fetch_from = cursor - LOOKBACK
        # The windows [fetch_from, horizon) touches, as the engine plans them.
        window = Window.containing(fetch_from, HOUR)
        while window.start < horizon:
            opened = [w.open_window(tmp_path, meta.dataset_id, window) for w in writers]
            await feed_scalar(
                onc, ts, opened, max(fetch_from, window.start), min(window.end, horizon)
            )
            for writer in opened:
                published = writer.publish()
                assert published is not None
                paths.add(published.path)
            csv_inodes.add(csv_path.stat().st_ino)
            window = Window(window.end, window.end + HOUR)
        cursor = horizon
    # Each pass appended to the CSV file its first pass wrote (the lookback's records were
    # found equal), and the result is what one write of the whole range gives.
    assert len(csv_inodes) == 1
    whole = CsvWriter(metas).open_window(
        tmp_path / "whole",
        meta.dataset_id,
        Window(first.replace(hour=0, minute=0), first.replace(hour=0, minute=0) + 24 * HOUR),
    )
    await feed_scalar(onc, ts, [whole], first - LOOKBACK, cursor)
    published_whole = whole.publish()
    assert published_whole is not None
    assert csv_path.read_bytes() == published_whole.path.read_bytes()
    # One daily partition per format, nothing else in the folder (no temporaries left).
    assert sorted(p.name for p in paths) == [
        "onc_bacax_ctd_20261120.csv",
        "onc_bacax_ctd_20261120.nc",
    ]
    assert sorted(p.name for p in (tmp_path / meta.dataset_id).rglob("*")) == sorted(
        ["2026", *(p.name for p in paths)]
    )

    truth = emu.truth.scalar(
        date_from=first - LOOKBACK,
        date_to=cursor,
        location_code="BACAX",
        device_category_code="CTD",
    )
    nc_table, _ = read_netcdf_table(tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.nc")
    csv_table = read_csv_table(tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.csv")
    # CSV columns are named by variable name (`depth` -> `depth_measured`), NetCDF keeps codes.
    for table, key in ((nc_table, str), (csv_table, variable_name)):
        assert len(np.unique(table.times)) == len(table.times)  # each time once
        times = format_times(table.times)
        codes = [s.code for s in table.sensors]
        for code, records in truth.items():
            row = codes.index(key(code))
            present = table.flags[row] != ABSENT_FLAG
            got = list(
                zip(
                    np.array(times)[present].tolist(),
                    table.values[row][present].tolist(),
                    table.flags[row][present].tolist(),
                    strict=True,
                )
            )
            want = [(r.time, r.value, r.flag) for r in records]
            assert len(got) == len(want), code
            for (gt, gv, gf), (wt, wv, wf) in zip(got, want, strict=True):
                assert gt == wt
                assert gf == wf
                assert gv == wv or (gv != gv and wv != wv)
    with netCDF4.Dataset(tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.nc") as ds:
        assert ds.time_coverage_end.startswith(format_times(nc_table.times[-1:])[0][:19])
        assert len(ds.history.splitlines()) == 2  # first harvest and latest, not one per rewrite


async def test_raw_text_partition_grows_without_duplicates(
    emu: Emulator, onc: OncClient, tmp_path: Path
) -> None:
    writers = [RawTextWriter(partition="daily"), JsonlCsvWriter(partition="daily")]
    source = DataSource(location_code="NC89", device_category_code="BPR")
    first = T0 - timedelta(minutes=10)
    cursor = first
    inodes: set[tuple[int, ...]] = set()
    for _ in range(PASSES):
        emu.clock.advance(60)
        horizon = emu.clock.now() - LAG
        fetch_from = cursor - LOOKBACK
        window = Window.containing(fetch_from, HOUR)
        opened = [writer.open_window(tmp_path, "onc_nc89_bpr", window) for writer in writers]
        query = RawQuery(source=source, date_from=fetch_from, date_to=min(window.end, horizon))
        async for page in onc.raw_pages(query, row_limit=500):  # several pages per pass
            for writer in opened:
                writer.add_raw(page.times, page.readings, page.line_types)
        published = [writer.publish() for writer in opened]
        assert None not in published
        inodes.add(tuple(p.path.stat().st_ino for p in published if p is not None))
        cursor = horizon
    assert len(inodes) == 1  # every pass after the first appended in place
    # One window over the whole range writes the very bytes the passes grew.
    for writer, grown in zip(writers, published, strict=True):
        assert grown is not None
        whole = writer.open_window(
            tmp_path / "whole", "onc_nc89_bpr", Window.containing(first, HOUR)
        )
        query = RawQuery(source=source, date_from=first - LOOKBACK, date_to=cursor)
        async for page in onc.raw_pages(query):
            whole.add_raw(page.times, page.readings, page.line_types)
        once = whole.publish()
        assert once is not None
        assert grown.path.read_bytes() == once.path.read_bytes()
    path = tmp_path / "onc_nc89_bpr/2026/onc_nc89_bpr_20261120.txt"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    got = [parse_line(line) for line in lines]
    truth = emu.truth.raw(
        date_from=first - LOOKBACK, date_to=cursor, location_code="NC89", device_category_code="BPR"
    )
    assert truth
    assert [(t, r) for t, _, r in got] == [(r.time, r.reading) for r in truth]
