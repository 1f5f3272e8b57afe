"""Shared pieces of the reliability suite: every stream kind with every output format, ground
truth checks over JSON Lines, NetCDF and archive files, state consistency and politeness.

The daemon-as-a-subprocess helpers come from the acceptance suite (imported, not copied).
"""

from __future__ import annotations

import hashlib
import math
import os
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest
import ujson
import yaml

from pipeline.emulator import Emulator
from pipeline.emulator.introspection import RequestRecord
from pipeline.outputs.rawtext import unescape
from pipeline.state.sqlite import SqliteStateStore
from tests.acceptance.conftest import (  # noqa: F401 (fixtures re-exported for this folder)
    TOKEN,
    Harness,
    complete_product_days,
    hour_floor,
    live_emulator,
    product_start,
    reap,
    wait_exit,
    wait_for,
    write_config,
)

# `ONC_PIPELINE_SOAK=1` turns every bounded loop of this folder into its long form.
SOAK = os.environ.get("ONC_PIPELINE_SOAK", "") not in ("", "0")
SEED = int(os.environ.get("ONC_PIPELINE_TEST_SEED", "20261125"))

SCALAR_DATASET = "onc_bacax_ctd"
RAW_DATASET = "onc_rbrquartz3bpr203659"
ARCHIVE_DATASET = "onc_sevip_hydrophone"
PRODUCT_DATASET = "onc_bacax_ctd_tssd"

# The formats config/demo.yaml enables, per time-series kind.
FORMATS = {"ctd": ["netcdf", "csv", "jsonl"], "bpr": ["rawtext", "jsonl"]}

# The default: longer than a 5-minute hydrophone file plus its archiving delay, so a file that
# closes between the last pass and a truth check is not yet in the checked range.
ARCHIVE_SAFETY_LAG = "10m"

# Numbers measured by the suite, printed at the end of the session for the README.
MEASURED: dict[str, Any] = defaultdict(int)


def measure(key: str, value: Any, *, how: str = "add") -> None:
    """Record one number for the session summary (`add` counts, `max` keeps the largest)."""
    if how == "max":
        MEASURED[key] = max(MEASURED.get(key, value), value)
    elif how == "set":
        MEASURED[key] = value
    else:
        MEASURED[key] += value


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the suite measured (kills, records compared, faults, caps, secret hits)."""
    if MEASURED:
        terminalreporter.section("reliability measurements")
        for key in sorted(MEASURED):
            terminalreporter.write_line(f"{key}: {MEASURED[key]}")


def with_formats(harness: Harness, **overrides: Any) -> Harness:
    """Enable NetCDF + CSV + JSONL (scalar) and raw text + JSONL (raw) in the harness config."""
    config = yaml.safe_load(harness.config.read_text())
    for stream in config["streams"]:
        if stream["name"] in FORMATS:
            stream["formats"] = FORMATS[stream["name"]]
        if stream["kind"] == "archivefile":
            stream["safety_lag"] = ARCHIVE_SAFETY_LAG
    for section, values in overrides.items():
        config[section] = {**config.get(section, {}), **values}
    harness.config.write_text(yaml.safe_dump(config))
    return harness


async def cursors(state_db: Path) -> dict[str, datetime | None]:
    """Every stream's cursor, read without taking the daemon's lock."""
    async with SqliteStateStore(state_db, read_only=True) as store:
        return {r.name: r.cursor_time for r in await store.list_streams()}


def jsonl_records(folder: Path) -> list[dict[str, Any]]:
    """Every JSON Lines record under `folder`, in file order."""
    return [
        ujson.loads(line)
        for path in sorted(folder.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def same_value(a: float, b: float) -> bool:
    """Equal, NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_scalar_jsonl(
    emu: Emulator, folder: Path, date_from: Any, date_to: Any, **source: str
) -> int:
    """JSON Lines hold every truth record exactly once, with its value and flag."""
    records = jsonl_records(folder)
    keys = Counter((r["sampleTime"], r["sensorCode"]) for r in records)
    doubled = [k for k, n in keys.items() if n > 1]
    assert doubled == [], f"scalar records written twice: {doubled[:5]}"
    truth = emu.truth.scalar(date_from=date_from, date_to=date_to, **source)
    expected = {(r.time, code): r for code, rows in truth.items() for r in rows}
    got = {(r["sampleTime"], r["sensorCode"]): r for r in records}
    lost = sorted(expected.keys() - got.keys())
    invented = sorted(got.keys() - expected.keys())
    assert lost == [], f"scalar records lost: {lost[:5]}"
    assert invented == [], f"scalar records not in the truth: {invented[:5]}"
    wrong = [
        k
        for k, r in got.items()
        if not same_value(r["value"], expected[k].value) or r["qaqcFlag"] != expected[k].flag
    ]
    assert wrong == [], wrong[:5]
    return len(records)


def check_scalar_netcdf(
    emu: Emulator, folder: Path, date_from: Any, date_to: Any, **source: str
) -> int:
    """The NetCDF partitions hold every truth value once at its time, and nothing else."""
    truth = emu.truth.scalar(date_from=date_from, date_to=date_to, **source)
    times_all: list[np.ndarray[Any, Any]] = []
    values: dict[str, list[np.ndarray[Any, Any]]] = defaultdict(list)
    flags: dict[str, list[np.ndarray[Any, Any]]] = defaultdict(list)
    fills: dict[str, int] = {}
    paths = sorted(folder.rglob("*.nc"))
    assert paths, f"no NetCDF file under {folder}"
    for path in paths:
        with netCDF4.Dataset(path) as ds:
            ds.set_auto_mask(False)
            times = np.rint(ds["time"][:] * 1000).astype(np.int64)
            times_all.append(times)
            for var in ds.variables.values():
                if "onc_sensor_code" not in var.ncattrs():
                    continue
                code = str(var.onc_sensor_code)
                qc = ds[var.ancillary_variables]
                fills[code] = int(qc._FillValue)
                values[code].append(np.asarray(var[:, 0]))
                flags[code].append(np.asarray(qc[:, 0]))
    times = np.concatenate(times_all)
    assert len(np.unique(times)) == len(times), "a time step appears twice across partitions"
    count = 0
    for code, records in truth.items():
        if not records:
            continue
        got_values = np.concatenate(values[code])
        got_flags = np.concatenate(flags[code])
        present = got_flags != fills[code]
        want_ms = np.array(
            [np.datetime64(r.time.removesuffix("Z"), "ms").astype(np.int64) for r in records]
        )
        assert np.array_equal(np.sort(times[present]), np.sort(want_ms)), f"{code}: times differ"
        order = np.argsort(times[present])
        want_order = np.argsort(want_ms)
        assert np.array_equal(
            got_values[present][order],
            np.array([r.value for r in records])[want_order],
            equal_nan=True,
        ), code
        assert np.array_equal(
            got_flags[present][order], np.array([r.flag for r in records])[want_order]
        ), code
        count += len(records)
    assert {code for code, rows in truth.items() if rows} <= set(values)
    return count


def check_raw_jsonl(emu: Emulator, folder: Path, date_from: Any, date_to: Any, device: str) -> int:
    """The raw JSON Lines are exactly the truth lines, in order, once."""
    records = jsonl_records(folder)
    truth = emu.truth.raw(device_code=device, date_from=date_from, date_to=date_to)
    assert [(r["time"], r["reading"]) for r in records] == [(t.time, t.reading) for t in truth]
    return len(records)


def check_raw_text(emu: Emulator, folder: Path, date_from: Any, date_to: Any, device: str) -> int:
    """The raw text partitions hold every truth reading once, at its time, in time order."""
    truth = emu.truth.raw(device_code=device, date_from=date_from, date_to=date_to)
    got: list[tuple[str, str]] = []
    for path in sorted(folder.rglob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            time, _, rest = line.partition("\t")
            _line_type, _, reading = rest.partition("\t")
            got.append((time, unescape(reading)))
    assert got == [(t.time, t.reading) for t in truth]
    return len(got)


def check_archive(emu: Emulator, harness: Harness, cursor: datetime) -> int:
    """Every hydrophone wav file the last pass could list (data before the cursor less the
    stream's lag, archived before the cursor) is on disk once, byte-identical (sha256)."""
    date_to, archived_before = harness.archive_window(cursor)
    truth = emu.truth.archive_files(
        location_code="SEVIP",
        device_category_code="HYDROPHONE",
        extension="wav",
        date_from=harness.starts["wav"],
        date_to=date_to,
        archived_before=archived_before,
    )
    folder = harness.out / ARCHIVE_DATASET
    on_disk = [p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.tsv"]
    names = Counter(p.name for p in on_disk)
    assert [n for n, c in names.items() if c > 1] == []
    assert sorted(names) == sorted(t.filename for t in truth)
    by_name = {p.name: p for p in on_disk}
    for file in truth:
        digest = hashlib.sha256(by_name[file.filename].read_bytes()).hexdigest()
        assert digest == file.sha256, f"{file.filename} differs from the archive"
    return len(truth)


def product_runs_per_period(emu: Emulator) -> dict[int, set[str]]:
    """Period start (epoch ms) -> the dpRequestIds whose run was started."""
    period_of = {str(rid): req.start for rid, req in emu.context.products.requests.items()}
    runs: dict[int, set[str]] = defaultdict(set)
    for record in emu.requests.of("dataProductDelivery.run"):
        request_id = dict(record.query)["dpRequestId"]
        runs[period_of[request_id]].add(request_id)
    return runs


def assert_no_product_ordered_twice(emu: Emulator) -> int:
    """No period was run under two request ids; returns the number of periods run."""
    runs = product_runs_per_period(emu)
    doubled = {p: ids for p, ids in runs.items() if len(ids) > 1}
    assert doubled == {}, f"product periods ordered twice: {doubled}"
    return len(runs)


def assert_no_temporaries(root: Path) -> None:
    """No `*.tmp` or `.*.part` file anywhere under the output root."""
    leftovers = [
        p
        for p in root.rglob("*")
        if p.name.endswith(".tmp") or (p.name.startswith(".") and p.name.endswith(".part"))
    ]
    assert leftovers == [], leftovers


async def assert_state_consistent(state_db: Path, root: Path) -> int:
    """Every manifest entry's file exists with the recorded size and sha256."""
    async with SqliteStateStore(state_db, read_only=True) as store:
        entries = await store.list_manifest()
    assert entries
    for entry in entries:
        path = root / entry.path
        assert path.is_file(), f"manifest entry without a file: {entry.path}"
        assert path.stat().st_size == entry.size, entry.path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256, entry.path
    return len(entries)


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of [start, end] intervals that share an instant (touching: no)."""
    spans = list(intervals)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def max_in_window(starts: Iterable[float], width: float = 1.0) -> int:
    """The largest number of starts inside any half-open window [t, t + width)."""
    ordered = sorted(starts)
    if not ordered:
        return 0
    return max(bisect_left(ordered, t + width) - i for i, t in enumerate(ordered))


def api_records(emu: Emulator) -> list[RequestRecord]:
    """Requests to the Oceans API (not the registry), as the emulator logged them."""
    return [r for r in emu.requests if not r.endpoint.startswith("registry:")]


def assert_polite(
    emu: Emulator, *, max_concurrency: int, rate: float, burst: int = 1
) -> tuple[int, int]:
    """The concurrency and rate caps held over the whole request log; returns (overlap, rate)."""
    records = api_records(emu)
    overlap = max_overlap((r.started_monotonic, r.ended_monotonic) for r in records)
    per_second = max_in_window(r.started_monotonic for r in records)
    assert overlap <= max_concurrency, f"{overlap} requests in flight, cap {max_concurrency}"
    assert per_second <= rate + burst, f"{per_second} starts in 1 s, cap {rate} + {burst}"
    measure("max_overlap_observed", overlap, how="max")
    measure("max_starts_per_1s_observed", per_second, how="max")
    return overlap, per_second


@pytest.fixture
def soak() -> bool:
    """True in the long (soak) run."""
    return SOAK


async def check_everything(
    emu: Emulator, harness: Harness, *, formats: bool = True
) -> dict[str, int]:
    """The whole output of the acceptance streams against the ground truth, up to each cursor:
    records once with their values (JSON Lines, NetCDF, raw text), archive files byte-identical,
    one product run per period, no temporaries, every manifest entry intact."""
    state_db = harness.root / "state.db"
    marks = await cursors(state_db)
    assert all(marks.values()), marks
    out, start = harness.out, harness.starts
    ctd = {"location_code": "BACAX", "device_category_code": "CTD"}
    device = "RBRQUARTZ3BPR203659"
    counts = {
        "scalar": check_scalar_jsonl(emu, out / SCALAR_DATASET, start["ctd"], marks["ctd"], **ctd),
        "raw": check_raw_jsonl(emu, out / RAW_DATASET, start["bpr"], marks["bpr"], device),
        "archive": check_archive(emu, harness, marks["wav"]),  # type: ignore[arg-type]
        "periods": assert_no_product_ordered_twice(emu),
    }
    if formats:
        counts["netcdf"] = check_scalar_netcdf(
            emu, out / SCALAR_DATASET, start["ctd"], marks["ctd"], **ctd
        )
        counts["rawtext"] = check_raw_text(
            emu, out / RAW_DATASET, start["bpr"], marks["bpr"], device
        )
        assert counts["netcdf"] == counts["scalar"]
        assert counts["rawtext"] == counts["raw"]
        assert any((out / SCALAR_DATASET).rglob("*.csv")), "CSV output missing"
    days = (marks["tssd"] - start["tssd"]).days  # type: ignore[operator]
    products = out / PRODUCT_DATASET / "products"
    assert len([p for p in products.iterdir() if any(p.iterdir())]) == days
    assert_no_temporaries(out)
    counts["manifest"] = await assert_state_consistent(state_db, out)
    return counts


def small_workload(
    tmp_path: Path, emu: Emulator, *, ctd_hours: int = 2, **sections: Any
) -> Harness:
    """The acceptance streams over shorter spans with larger pages: every kind and format,
    a few dozen requests, so each fault case stays a few seconds long. `sections` override
    top-level config sections (e.g. `onc={"max_attempts": 2}`)."""
    # Whole seconds: the config holds seconds, and the checks must cover the same span.
    now = datetime.now(UTC).replace(microsecond=0)
    harness = with_formats(write_config(tmp_path, emu, now))
    config = yaml.safe_load(harness.config.read_text())
    starts = {
        "ctd": hour_floor(now) - timedelta(hours=ctd_hours),
        "bpr": hour_floor(now) - timedelta(hours=1),
        "wav": now - timedelta(minutes=45),
        "tssd": product_start(now, 2),
    }
    for stream in config["streams"]:
        stream["start"] = starts[stream["name"]].strftime("%Y-%m-%dT%H:%M:%SZ")
        if "row_limit" in stream:
            stream["row_limit"] = 2500
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    harness.config.write_text(yaml.safe_dump(config))
    harness.starts.update(starts)
    return harness
