"""Issue 19, items 4 and 6: `once` says on stdout what it did, in the counts `status` and the
disk agree on, and an archive filter that matches nothing is reported, not silent."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from pipeline.emulator import Emulator

from .conftest import REPO, TOKEN


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONC_", "CREDENTIALS_"))}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def config(root: Path, emu: Emulator) -> Path:
    day = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z")
    data = {
        "onc": {"base_url": emu.onc_url, "token": TOKEN, "max_rate_per_s": 40,
                "product_poll_min": "100ms", "product_poll_max": "200ms"},
        "state": {"url": f"sqlite:///{root / 'state.db'}"},
        "output": {"root": str(root / "out")},
        "ops": {"enabled": False},
        "logging": {"format": "json"},
        "daemon": {"window_workers": 0},
        "streams": [
            {"name": "ctd", "kind": "scalardata", "location_code": "BACAX",
             "device_category_code": "CTD", "initial_backfill": "3h",
             "formats": ["netcdf", "csv", "jsonl"]},
            {"name": "tssd", "kind": "dataproduct", "location_code": "BACAX",
             "device_category_code": "CTD", "data_product_code": "TSSD", "extension": "csv",
             "start": day, "safety_lag": "1h"},
            {"name": "wav", "kind": "archivefile", "location_code": "SEVIP",
             "device_category_code": "HYDROPHONE", "file_extensions": ["wva"],
             "initial_backfill": "30m", "safety_lag": "1m"},
        ],
    }  # fmt: skip
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_once_status_and_disk_agree(tmp_path: Path, live_emulator: Emulator) -> None:
    path = config(tmp_path, live_emulator)
    once = await asyncio.to_thread(cli, "once", "--config", str(path))
    assert once.returncode == 0, once.stderr[-3000:]
    summary = {
        m["stream"]: (int(m["files"]), m["size"])
        for m in re.finditer(
            r"^ok +(?P<stream>\S+): .*?(?P<files>\d+) files, (?P<size>\d+) bytes",
            once.stdout,
            re.MULTILINE,
        )
    }
    assert set(summary) == {"ctd", "tssd", "wav"}, once.stdout
    status = await asyncio.to_thread(cli, "status", "--config", str(path), "--json")
    assert status.returncode == 0, status.stderr
    rows = {row["name"]: row for row in json.loads(status.stdout)["streams"]}
    on_disk = {
        "ctd": [p for p in (tmp_path / "out" / "onc_bacax_ctd").rglob("*") if p.is_file()],
        "tssd": [p for p in (tmp_path / "out" / "onc_bacax_ctd_tssd").rglob("*")
                 if p.is_file() and p.name != "manifest.tsv"],
        "wav": [],
    }  # fmt: skip
    for name, files in on_disk.items():
        assert summary[name][0] == rows[name]["files"] == len(files), (name, once.stdout)
        total = sum(p.stat().st_size for p in files)
        assert int(summary[name][1]) == rows[name]["bytes"] == total
    assert int(summary["tssd"][1]) > 0  # a product pass counts what it downloaded
    # The misspelled extension: a warning on the summary, the log and the status table.
    assert "warning: the archive lists" in once.stdout, once.stdout
    assert "wva" in once.stdout
    assert "file_extensions" in once.stdout
    assert '"archive_extensions_unmatched"' in once.stderr
    table = await asyncio.to_thread(cli, "status", "--config", str(path))
    assert re.search(r"^nothing yet +wav .*file_extensions", table.stdout, re.MULTILINE), (
        table.stdout
    )


def start_once(path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONC_", "CREDENTIALS_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "once", "--config", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_once_stopped_by_ctrl_c_says_so_and_exits_130(
    tmp_path: Path, live_emulator: Emulator
) -> None:
    """README: 130 = interrupted; `once` stopped mid-backlog exited 0 as if it had finished."""
    data = yaml.safe_load(config(tmp_path, live_emulator).read_text())
    data["streams"] = [{**data["streams"][0], "initial_backfill": "20d", "row_limit": 2000}]
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = start_once(path)
    try:
        assert proc.stderr is not None

        def first_window() -> None:
            for line in proc.stderr:  # type: ignore[union-attr]
                if '"window_harvested"' in line:
                    return

        await asyncio.wait_for(asyncio.to_thread(first_window), 60)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out
    assert re.search(r"^ok +ctd: \d+ windows, .*not caught up", out, re.MULTILINE), out
