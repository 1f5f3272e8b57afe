"""The image as an operator runs it: hardened (read-only root, tmpfs /tmp, no capabilities,
uid 10001, the token as a mounted secret), harvesting from the emulator's container."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.container.conftest import (
    HARDENED,
    IMAGE,
    Engine,
    http_get,
    http_json,
    wait_until,
)

TOKEN = "demo-token"  # the emulator's (config/compose-demo.yaml)
SECRET = "/run/secrets/onc_token"


def secret_file(tmp_path: Path, *, owner: int, mode: int) -> Path:
    path = tmp_path / "onc_token"
    path.write_text(TOKEN + "\n")
    path.chmod(mode)
    os.chown(path, owner, owner)
    return path


@pytest.mark.timeout(600)
def test_a_secret_the_daemon_cannot_read_exits_2_with_the_fix(
    images: Engine, network: str, tmp_path: Path
) -> None:
    """As the docs used to advise: chmod 600, owned by root. Docker mounts it as it is."""
    secret = secret_file(tmp_path, owner=0, mode=0o600)
    result = images.docker(
        "run", "--rm", f"--network={network}", *HARDENED,
        f"--volume={secret}:{SECRET}:ro", IMAGE, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert f"secret file {SECRET} cannot be read by uid 10001" in result.stderr
    assert "Giving the container its token" in result.stderr


def volume_files(engine: Engine, volume: str) -> dict[str, int]:
    """Path -> owning uid of every file in a volume (read by a throwaway root container)."""
    out = engine.docker(
        "run", "--rm", f"--volume={volume}:/v:ro", "--entrypoint=find", "debian:bookworm-slim",
        "/v", "-type", "f", "-printf", "%U %P\n",
    ).stdout  # fmt: skip
    return {path: int(uid) for uid, _, path in (line.partition(" ") for line in out.splitlines())}


def downloads(emulator: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = http_json(
        f"{emulator}/_emulator/requests?endpoint=archivefile.download"
    )
    return rows


def filename(row: dict[str, object]) -> str:
    return dict(map(tuple, row["query"]))["filename"]  # type: ignore[arg-type, call-overload, no-any-return]


@pytest.mark.timeout(420)
def test_hardened_run_harvests_stops_cleanly_and_resumes(
    images: Engine, network: str, tmp_path: Path
) -> None:
    engine = images
    emulator = engine.published("emulator", 8080)
    # Dripped downloads: a 2 MB hydrophone file takes seconds, so `docker stop` finds some.
    http_json(
        f"{emulator}/_emulator/faults",
        "PUT",
        {"rules": [{"kind": "drip", "endpoint": "archivefile.download",
                    "chunk_bytes": 65536, "interval_s": 0.1}]},
    )  # fmt: skip
    # The way docs/operations.md gives the container its token: readable by uid 10001 only.
    secret = secret_file(tmp_path, owner=10001, mode=0o400)
    engine.docker(
        "run", "--detach", "--name=harvester", f"--network={network}", *HARDENED,
        f"--volume={secret}:{SECRET}:ro",
        "--volume=onc-state:/var/lib/onc-pipeline/state",
        "--volume=onc-data:/var/lib/onc-pipeline/data",
        "--publish=127.0.0.1::9108",
        # The image's HEALTHCHECK command, probed more often than its 30 s for the test.
        "--health-interval=2s", "--health-start-period=5s",
        IMAGE,
    )  # fmt: skip
    try:
        engine.wait_healthy("harvester", 90)
        ops = engine.published("harvester", 9108)
        assert http_get(f"{ops}/healthz")[0] == 200
        health = engine.inspect("harvester")["State"]["Health"]
        assert health["Log"][-1]["ExitCode"] == 0

        # Stop while downloads are running.
        wait_until(
            lambda: (
                http_json(f"{emulator}/_emulator/counts")["in_flight"] > 0
                and len(downloads(emulator)) >= 3
            ),
            120,
            "archive downloads in flight",
        )
        started = time.monotonic()
        engine.docker("stop", "--time=45", "harvester", timeout=90)
        took = time.monotonic() - started
        state = engine.inspect("harvester")["State"]
        assert state["ExitCode"] == 0, engine.docker("logs", "harvester").stdout[-3000:]
        assert took < 45, f"docker stop took {took:.1f} s: the daemon was killed"
        logs = engine.docker("logs", "harvester")
        assert '"daemon_stopped"' in logs.stdout
        assert "Traceback" not in logs.stdout + logs.stderr

        files = volume_files(engine, "onc-data")
        assert any(p.endswith(".wav") for p in files), sorted(files)
        assert set(volume_files(engine, "onc-state").values()) == {10001}
        assert set(files.values()) == {10001}, "every file belongs to uid 10001"

        # A restart resumes: no file published before the stop is downloaded again.
        before = {Path(p).name for p in files if p.endswith(".wav")}
        passes = logs.stdout.count('"archive_listing_harvested"')
        http_json(f"{emulator}/_emulator/requests", "DELETE")
        http_json(f"{emulator}/_emulator/faults", "PUT", {})
        engine.docker("start", "harvester")
        engine.wait_healthy("harvester", 90)
        wait_until(
            lambda: (
                engine.docker("logs", "harvester").stdout.count('"archive_listing_harvested"')
                > passes
            ),
            90,
            "an archive pass after the restart",
        )
        again = [r for r in downloads(emulator) if filename(r) in before]
        assert not again, f"downloaded again after the restart: {again}"
        after = {Path(p).name for p in volume_files(engine, "onc-data") if p.endswith(".wav")}
        assert before <= after
    finally:
        logs = engine.docker("logs", "harvester", check=False)
        Path(tmp_path / "harvester.log").write_text(logs.stdout + logs.stderr)
        engine.docker("rm", "--force", "harvester", check=False)
        engine.docker("volume", "rm", "onc-state", "onc-data", check=False)
