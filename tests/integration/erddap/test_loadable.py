"""ERDDAP loads every dataset we publish: a harvest of every stream kind and format through the
CLI, against the emulator over a real socket, then `erddap-config`, then the conformance
checker (tests/erddap) on the XML and the files it selects.

The harvest includes a redeployment inside the harvested range for scalardata (BACAX CTD,
2015-09-17/18: the platform moved 0.2 m north and 3 m deeper) and rawdata (NC89 BPR,
2022-08-04: one recorder replaced by another at a new position), harvested with `backfill`
since the emulator follows real time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import typing
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.emulator.catalogue import DEPLOYMENTS, DEVICES
from pipeline.exceptions import ConfigError
from pipeline.settings import OutputFormat, Settings, load_settings
from tests.erddap.checker import check_datasets_xml, format_violations, load_datasets

REPO = Path(__file__).resolve().parents[3]
TOKEN = "erddap-conformance-token-4b1e"
# Ranges with a redeployment inside them (pipeline/emulator/catalogue.py DEPLOYMENTS).
# An hour of each deployment: (stream, from, to).
REDEPLOYMENTS = [
    ("ctd", "2015-09-17T12:00:00Z", "2015-09-17T13:00:00Z"),  # SBECTD16p6002, until 12:59:52
    ("ctd", "2015-09-18T01:00:00Z", "2015-09-18T02:00:00Z"),  # SBECTD16p7128, from 01:12:09
    ("bpr-raw", "2022-08-04T18:00:00Z", "2022-08-04T19:00:00Z"),  # BPR_889, until 19:16:37
    ("bpr-raw", "2022-08-05T00:00:00Z", "2022-08-05T01:00:00Z"),  # RBRQUARTZ3BPR203659
]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An emulator following real time (the CLI runs in its own process with the real clock)."""
    config = EmulatorConfig(
        token=TOKEN,
        seed=11,
        onc_port=0,
        registry_port=0,
        auth_delay=(0.0, 0.0),
        product_processing_s=0.3,
        archive_file_sizes={"ICLISTENHF1560.wav": 50_000},
    )
    async with Emulator(config) as emu:
        yield emu


def formats_for(kind: str, base: dict[str, Any], root: Path) -> list[str]:
    """Every output format the configuration accepts for `kind`, found by asking it."""
    accepted = []
    for fmt in typing.get_args(OutputFormat):
        stream = {"name": "probe", "kind": kind, "device_code": "X", "formats": [fmt]}
        path = root / "probe.yaml"
        path.write_text(yaml.safe_dump({**base, "streams": [stream]}))
        try:
            load_settings(path, environ={}, secrets_dirs=[])
        except ConfigError:
            continue
        accepted.append(fmt)
    return accepted


def write_config(root: Path, emu: Emulator, now: datetime) -> Path:
    """Every stream kind; scalardata and rawdata once with every format and once with none."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    iso = {
        "2h": (hour - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "1h": (hour - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wav": (now - timedelta(minutes=40)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "day": (now - timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z"),
    }
    base: dict[str, Any] = {
        "onc": {
            "base_url": emu.onc_url,
            "token": TOKEN,
            "max_rate_per_s": 50,
            "backoff_base": "10ms",
            "backoff_max": "200ms",
            "product_poll_min": "50ms",
            "product_poll_max": "100ms",
        },
        "state": {"url": f"sqlite:///{root / 'state.db'}"},
        "output": {"root": str(root / "out"), "erddap_flag_dir": str(root / "flag")},
        "ops": {"enabled": False},
        "logging": {"format": "json", "level": "warning"},
    }
    lag = {"safety_lag": "30s", "window": "1h"}
    streams = [
        {"name": "ctd", "kind": "scalardata", "location_code": "BACAX",
         "device_category_code": "CTD", "start": iso["2h"],
         "formats": formats_for("scalardata", base, root), **lag},
        {"name": "ctd-default", "kind": "scalardata", "location_code": "BACVP",
         "device_category_code": "CTD", "start": iso["1h"], **lag},
        {"name": "bpr-raw", "kind": "rawdata", "location_code": "NC89",
         "device_category_code": "BPR", "start": iso["1h"],
         "formats": formats_for("rawdata", base, root), **lag},
        {"name": "bpr-raw-default", "kind": "rawdata", "device_code": "BPR-Folger-59",
         "start": iso["1h"], **lag},
        {"name": "hydrophone", "kind": "archivefile", "location_code": "SEVIP",
         "device_category_code": "HYDROPHONE", "file_extensions": ["wav"],
         "start": iso["wav"], "safety_lag": "1m"},
        {"name": "tssd", "kind": "dataproduct", "location_code": "BACAX",
         "device_category_code": "CTD", "data_product_code": "TSSD", "extension": "csv",
         "period": "1d", "start": iso["day"], "safety_lag": "10m"},
    ]  # fmt: skip
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({**base, "streams": streams}))
    return config


async def cli(config: Path, *args: str) -> str:
    """Run `python -m pipeline <args> --config <config>`; its stdout, or fail with its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONC_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline", *args, "--config", str(config),
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}:\n{err.decode()[-3000:]}"
    return out.decode()


def positions_in(location: str, category: str, start: str, end: str) -> set[tuple[float, ...]]:
    """The emulator's deployment positions at `location` overlapping [start, end).

    Times compare as text to the second (`YYYY-MM-DDTHH:MM:SS`), which orders them."""
    devices = {d.code for d in DEVICES.values() if d.category == category}
    return {
        (d.lat, d.lon, d.depth)
        for d in DEPLOYMENTS
        if d.location == location
        and d.device in devices
        and d.begin[:19] < end[:19]
        and (d.end is None or d.end[:19] > start[:19])
    }


def uncovered_streams(settings: Settings, xml: str, out: Path) -> list[str]:
    """Enabled streams no `<dataset>` reads from (its fileDir is not the stream's folder)."""
    dirs = {Path(ds.config.text("fileDir") or "").resolve() for ds in load_datasets(xml)}
    return [
        s.name
        for s in settings.streams
        if s.enabled and (out / s.resolved_dataset_id).resolve() not in dirs
    ]


@pytest.mark.slow
async def test_every_published_dataset_is_loadable_by_erddap(
    emulator: Emulator, tmp_path: Path
) -> None:
    # The harvested ranges really hold a move: two positions for one location.
    assert len(positions_in("BACAX", "CTD", "2015-09-17T12:00:00Z", "2015-09-18T02:00:00Z")) == 2
    assert len(positions_in("NC89", "BPR", "2022-08-04T18:00:00Z", "2022-08-05T01:00:00Z")) == 2
    config = write_config(tmp_path, emulator, datetime.now(UTC))
    await cli(config, "once")
    for stream, start, end in REDEPLOYMENTS:
        await cli(config, "backfill", "--stream", stream, "--from", start, "--to", end)
    xml = await cli(config, "erddap-config")

    settings = load_settings(config, environ={}, secrets_dirs=[])
    uncovered = uncovered_streams(settings, xml, tmp_path / "out")
    violations = check_datasets_xml(xml)
    report = f"streams without an ERDDAP dataset: {uncovered}\n{format_violations(violations)}"
    assert (uncovered, violations) == ([], []), report
