"""Coverage end to end: gaps of every class injected, reported with their class and range by
`onc-pipeline coverage`, every `missing` one mended by the daemon within two cadences, the
output then equal to ground truth; and the status page rendered by a real headless chromium.

Real time, real sockets, the CLI and the daemon as subprocesses. Injected:
- an upstream outage of the hydrophone (no wav file for 15 minutes);
- a late wav file (archived a minute into the test, long after it ends);
- the CTD's first window quarantined (three malformed replies, emulator faults);
- a JSON Lines file and a wav file deleted from our output behind the cursor;
- one sensor's values removed from another JSON Lines file (a per-sensor gap).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import ujson
import yaml

from pipeline.emulator import Emulator, EmulatorConfig
from tests.acceptance.conftest import REPO, TOKEN, wait_exit, wait_for

CADENCE = 5.0
WINDOW = timedelta(minutes=10)
FILE = timedelta(minutes=5)


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def write_config(root: Path, emu: Emulator, start: datetime) -> Path:
    data = {
        "onc": {
            "base_url": emu.onc_url,
            "token": TOKEN,
            "max_concurrency": 3,
            "max_attempts": 1,
            "max_rate_per_s": 20,
            "backoff_base": "20ms",
            "backoff_max": "100ms",
        },
        "state": {"url": f"sqlite:///{root / 'state.db'}"},
        "output": {"root": str(root / "out")},
        "ops": {"enabled": True, "bind": "127.0.0.1:0"},
        "logging": {"format": "json", "level": "info"},
        "daemon": {"shutdown_grace": "10s"},
        "streams": [
            {
                "name": "ctd",
                "kind": "scalardata",
                "location_code": "BACAX",
                "device_category_code": "CTD",
                "start": iso(start),
                "window": "10m",
                "cadence": f"{CADENCE:.0f}s",
                "safety_lag": "5s",
                "formats": ["jsonl"],
            },
            {
                "name": "wav",
                "kind": "archivefile",
                "location_code": "SEVIP",
                "device_category_code": "HYDROPHONE",
                "file_extensions": ["wav"],
                "start": iso(start),
                "cadence": f"{CADENCE:.0f}s",
                "safety_lag": "1m",
                # Passes relist one minute of archive time: a deleted file is the mender's.
                "lookback": "1m",
            },
            {
                # Configured, never run: all of it is still to harvest.
                "name": "bpr",
                "kind": "rawdata",
                "enabled": False,
                "device_code": "RBRQUARTZ3BPR203659",
                "start": iso(start),
                "formats": ["jsonl"],
            },
        ],
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def spawn(root: Path, config: Path, *args: str, log: str = "daemon.log") -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONC_")}
    env["PYTHONUNBUFFERED"] = "1"
    with open(root / log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args, "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def events(root: Path, name: str, log: str = "daemon.log") -> list[dict[str, Any]]:
    out = []
    for line in (root / log).read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == name:
                out.append(record)
    return out


async def coverage(root: Path, config: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline",
        "coverage",
        "--config",
        str(config),
        *args,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("ONC_")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    return stdout.decode()


async def coverage_json(root: Path, config: Path) -> dict[str, dict[str, Any]]:
    return {s["stream"]: s for s in json.loads(await coverage(root, config, "--json"))["streams"]}


def gaps(row: dict[str, Any], gap_class: str) -> list[tuple[datetime, datetime]]:
    return [(parse(g["from"]), parse(g["to"])) for g in row["gaps"] if g["class"] == gap_class]


def jsonl_records(folder: Path) -> list[dict[str, Any]]:
    return [
        ujson.loads(line)
        for path in sorted(folder.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


async def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 60) == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_every_gap_class_reported_and_missing_ones_mended(
    tmp_path: Path, reap: list[subprocess.Popen[bytes]]
) -> None:
    now = datetime.now(UTC)
    start = (now - timedelta(minutes=50)).replace(second=0, microsecond=0)
    start -= timedelta(minutes=start.minute % 10)
    outage = (start + timedelta(minutes=10), start + timedelta(minutes=25))
    late = (start + timedelta(minutes=35), start + timedelta(minutes=40))
    # Archived about 40 s into the test: after the first coverage report, before the end.
    arrives = now + timedelta(seconds=40)
    plan = {
        "outages": [{"device": "ICLISTENHF1560", "from": iso(outage[0]), "to": iso(outage[1])}],
        "late_files": [
            {
                "device": "ICLISTENHF1560",
                "at": iso(late[0] + timedelta(minutes=1)),
                "delay_s": (arrives - late[1]).total_seconds(),
                "extension": "wav",
            }
        ],
    }
    config_ = EmulatorConfig(
        token=TOKEN,
        seed=7,
        onc_port=0,
        registry_port=0,
        auth_delay=(0.0, 0.0),
        archive_file_sizes={"ICLISTENHF1560.wav": 200_000},
        latency_s=1.0,
        gaps=plan,
    )
    async with Emulator(config_) as emu:
        # The CTD's first six data requests answer 200 with an HTML body. A pass fetches its
        # complete windows gathered into one request; that failing, it tries them one by
        # one: two requests a pass, and the first window fails three passes running and is
        # quarantined.
        emu.faults = {"rules": [{"kind": "malformed", "endpoint": "scalardata.*", "times": 6}]}
        config = write_config(tmp_path, emu, start)
        out = tmp_path / "out"

        # 1. Three passes (`once`): the CTD's first window fails each time and is quarantined
        #    at the third; everything else is harvested.
        for attempt in range(3):
            once = spawn(tmp_path, config, "once", log=f"once{attempt}.log")
            reap.append(once)
            await wait_exit(once, 120)
        quarantines = [
            e["stream"]
            for attempt in range(3)
            for e in events(tmp_path, "window_quarantined", f"once{attempt}.log")
        ]
        assert quarantines == ["ctd"]

        # 2. Delete a JSON Lines window and a wav file behind the cursors.
        windows = sorted((out / "onc_bacax_ctd").rglob("*.jsonl"))
        lost_window = windows[2]
        lost_window.unlink()
        wav_at = start + timedelta(minutes=30)
        (lost_wav,) = [p for p in out.rglob("*.wav") if wav_at.strftime("%Y%m%dT%H%M%S") in p.name]
        lost_wav.unlink()
        # ... and one sensor's values from another window's file (a file written without it).
        thinned = windows[1]
        lines = thinned.read_text().splitlines(keepends=True)
        thinned.write_text("".join(x for x in lines if '"sensorCode":"salinity"' not in x))

        report = await coverage_json(tmp_path, config)
        assert datetime.now(UTC) < arrives, "the test ran too slowly for the late file"
        ctd, wav = report["ctd"], report["wav"]
        (quarantined,) = [g for g in ctd["gaps"] if g["class"] == "quarantined"]
        assert (parse(quarantined["from"]), parse(quarantined["to"])) == (start, start + WINDOW)
        assert quarantined["reason"]
        window_start = start + 3 * WINDOW  # the first window has no file (quarantined)
        assert gaps(ctd, "missing") == [(window_start, window_start + WINDOW)]
        assert gaps(ctd, "upstream_gap") == []
        # The salinity-less window is salinity's own gap; the stream holds that window.
        (salinity,) = ctd["sensors"]
        assert salinity["sensor"] == "salinity"
        assert gaps(salinity, "missing") == [(start + 2 * WINDOW, start + 3 * WINDOW)]
        assert [g["class"] for g in salinity["gaps"]] == ["missing"]
        assert gaps(wav, "missing") == [(wav_at, wav_at + FILE)]
        upstream = gaps(wav, "upstream_gap")
        assert outage in upstream
        assert late in upstream
        assert gaps(wav, "quarantined") == []
        ((not_from, not_to),) = gaps(report["bpr"], "not_yet")
        assert not_from == start
        assert not_to >= now
        assert ctd["ratio"] < 1.0
        # The table, kept beside the screenshot (CI artifact; README's example).
        table = await coverage(tmp_path, config)
        (tmp_path / "coverage.txt").write_text(table)
        assert "upstream_gap" in table
        assert "  sensor salinity: " in table
        assert wav["ratio"] < 1.0

        # 3. The daemon again: every missing range mended within two cadences.
        daemon = spawn(tmp_path, config, "run", log="daemon2.log")
        reap.append(daemon)

        # Wait for the mends' own end and for the files: a mended file is renamed into place
        # before its manifest commit and `mend_finished` (a wav file ~15 ms before), and the
        # ctd stream has two mends (the lost window, salinity's window), one of which may be
        # deferred a round while a live pass holds the stream.
        def mended() -> bool:
            streams = {m["stream"] for m in events(tmp_path, "mend_finished", "daemon2.log")}
            return streams >= {"ctd", "wav"} and lost_window.exists() and lost_wav.exists()

        await wait_for(mended, 60, "mending")
        started = parse(events(tmp_path, "daemon_started", "daemon2.log")[0]["timestamp"])
        mended = events(tmp_path, "mend_finished", "daemon2.log")
        assert {m["stream"] for m in mended} == {"ctd", "wav"}
        for record in mended:
            assert parse(record["timestamp"]) - started <= timedelta(seconds=2 * CADENCE)

        (bind,) = [e["bind"] for e in events(tmp_path, "ops_server_started", "daemon2.log")]
        base = f"http://{bind}"
        async with aiohttp.ClientSession() as http, http.get(f"{base}/coverage") as response:
            served = {s["stream"]: s for s in (await response.json())["streams"]}
        assert set(served) == {"ctd", "wav"}  # the daemon checks the streams it runs

        # The late file: archived meanwhile, harvested by the live pass or mended.
        late_name = late[0].strftime("%Y%m%dT%H%M%S")
        await wait_for(
            lambda: any(late_name in p.name for p in out.rglob("*.wav")), 90, "the late file"
        )
        await asyncio.sleep(CADENCE)
        shots = await browse(tmp_path, base)
        await stop(daemon)
        for record in events(tmp_path, "coverage_checked", "daemon2.log")[-1:]:
            assert record["missing"] == 0

        # 4. Output equals ground truth: every record but the quarantined window's, every file.
        final = await coverage_json(tmp_path, config)
        assert gaps(final["ctd"], "missing") == []
        assert gaps(final["wav"], "missing") == []
        assert final["ctd"]["sensors"] == []
        ctd_cursor = parse(final["ctd"]["cursor"])
        records = jsonl_records(out / "onc_bacax_ctd")
        keys = Counter((r["sampleTime"], r["sensorCode"]) for r in records)
        assert [k for k, n in keys.items() if n > 1] == []
        truth = emu.truth.scalar(
            location_code="BACAX",
            device_category_code="CTD",
            date_from=start + WINDOW,
            date_to=ctd_cursor,
        )
        expected = {(r.time, sensor) for sensor, rows in truth.items() for r in rows}
        assert set(keys) == expected
        wav_truth = emu.truth.archive_files(
            location_code="SEVIP",
            device_category_code="HYDROPHONE",
            date_from=start,
            date_to=parse(final["wav"]["cursor"]),
            extension="wav",
        )
        on_disk = {p.name: p for p in out.rglob("*.wav")}
        assert sorted(on_disk) == sorted(t.filename for t in wav_truth)
        for file in wav_truth:
            assert hashlib.sha256(on_disk[file.filename].read_bytes()).hexdigest() == file.sha256
        assert shots.exists()


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


async def browse(root: Path, base: str) -> Path:
    """The status page in headless chromium: the DOM it rendered, and a screenshot."""
    browser = shutil.which("chromium")
    assert browser, "chromium is missing: .ci/run installs Debian's chromium package"
    shot = root / "coverage.png"

    async def run(*args: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={root / f'chromium-{time.monotonic_ns()}'}",
            *args,
            f"{base}/status",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        stdout, _ = await asyncio.wait_for(proc.communicate(), 60)
        return stdout

    dom = (await run("--dump-dom")).decode()
    for stream in ("ctd", "wav"):
        assert f"data-stream='{stream}'" in dom or f'data-stream="{stream}"' in dom
    # Gaps drawn: the hydrophone's outage and the CTD's quarantined window.
    assert 'class="upstream_gap"' in dom
    assert 'class="quarantined"' in dom
    await run(f"--screenshot={shot}", "--window-size=1400,360")
    assert shot.stat().st_size > 1000
    return shot
