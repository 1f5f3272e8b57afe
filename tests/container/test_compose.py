"""docker-compose.yml as shipped, with Compose v2: the default profile (emulator + one
harvester) and the `postgres` profile (two replicas sharing PostgreSQL state and one data
volume) come up healthy, land data, write no file twice and leave no anonymous volume."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.container.conftest import ROOT, Engine, wait_until

PROJECT = "onc-pipeline"  # the compose file's `name:`
FETCH = (
    "import sys, urllib.request as u; sys.stdout.write(u.urlopen("
    "'http://127.0.0.1:8080/_emulator/requests?endpoint=' + sys.argv[1]).read().decode())"
)


@pytest.fixture
def project(images: Engine, postgres_image: str) -> Iterator[Engine]:
    """The compose project, taken down with its volumes at the end whatever happened."""
    yield images
    images.compose(ROOT, "--profile", "postgres", "down", "--volumes", check=False)


def containers(engine: Engine, *options: str) -> list[dict[str, str]]:
    """`docker compose ps`: one JSON object a line."""
    out = engine.compose(ROOT, *options, "ps", "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def emulator_requests(engine: Engine, endpoint: str) -> list[dict[str, object]]:
    out = engine.compose(ROOT, "exec", "-T", "emulator", "python", "-c", FETCH, endpoint).stdout
    rows: list[dict[str, object]] = json.loads(out)
    return rows


def data_files(engine: Engine, volume: str) -> list[str]:
    out = engine.docker(
        "run", "--rm", f"--volume={PROJECT}_{volume}:/v:ro", "--entrypoint=find",
        "debian:bookworm-slim", "/v", "-type", "f", "-printf", "%P\n",
    ).stdout  # fmt: skip
    return out.splitlines()


def assert_nothing_fetched_twice(engine: Engine) -> None:
    """Every archive file downloaded whole once; every data product ordered once."""
    whole = Counter(
        dict(map(tuple, r["query"]))["filename"]  # type: ignore[arg-type, call-overload]
        for r in emulator_requests(engine, "archivefile.download")
        if r["status"] == 200
    )
    assert whole, "no archive file was downloaded"
    assert max(whole.values()) == 1, [name for name, n in whole.items() if n > 1]
    orders = Counter(
        json.dumps(sorted(r["query"]))  # type: ignore[arg-type]
        for r in emulator_requests(engine, "dataProductDelivery.request")
    )
    assert not orders or max(orders.values()) == 1, orders


def assert_no_anonymous_volume(engine: Engine) -> None:
    volumes = engine.docker("volume", "ls", "--quiet").stdout.split()
    anonymous = [v for v in volumes if re.fullmatch(r"[0-9a-f]{64}", v)]
    assert not anonymous, f"compose down left anonymous volumes: {anonymous}"
    assert all(v.startswith(f"{PROJECT}_") for v in volumes), volumes


def lands(engine: Engine, volume: str) -> None:
    def landed() -> bool:
        files = data_files(engine, volume)
        return any(f.endswith(".wav") for f in files) and any(f.endswith(".jsonl") for f in files)

    wait_until(landed, 180, f"archive files and JSON Lines in the {volume} volume")


@pytest.mark.timeout(600)
def test_default_profile_comes_up_healthy_and_lands_data(project: Engine) -> None:
    engine = project
    engine.compose(ROOT, "up", "--detach", "--wait", timeout=300)
    states = containers(engine)
    assert {s["Service"]: s["Health"] for s in states} == {
        "emulator": "healthy",
        "pipeline": "healthy",
    }
    lands(engine, "data")
    assert_nothing_fetched_twice(engine)
    engine.compose(ROOT, "down", timeout=120)
    assert_no_anonymous_volume(engine)


@pytest.mark.timeout(600)
def test_postgres_profile_two_replicas_share_the_work(project: Engine) -> None:
    engine = project
    engine.compose(
        ROOT, "--profile", "postgres", "up", "--detach", "--wait", "pipeline-pg", "postgres",
        timeout=300,
    )  # fmt: skip
    states = containers(engine, "--profile", "postgres")
    replicas = [s for s in states if s["Service"] == "pipeline-pg"]
    assert len(replicas) == 2
    assert all(s["Health"] == "healthy" for s in states), states
    lands(engine, "data-pg")
    assert_nothing_fetched_twice(engine)
    engine.compose(ROOT, "--profile", "postgres", "down", timeout=120)
    assert_no_anonymous_volume(engine)
