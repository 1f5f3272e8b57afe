"""Issue 19: the command line read from an operator's chair (each test failed before its fix)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.state import open_state_store

REPO = Path(__file__).resolve().parents[2]
STREAM = {"name": "ctd", "kind": "scalardata", "location_code": "BACAX",
          "device_category_code": "CTD"}  # fmt: skip


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """The CLI with no ONC_* variable and no secret directory in its environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ONC_", "CREDENTIALS_"))}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env={**environ, "PYTHONPATH": str(REPO)},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


async def create_store(url: str) -> None:
    async with open_state_store(url):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", ["status", "erddap-config"])
def test_commands_that_call_no_api_need_no_secret(tmp_path: Path, command: str) -> None:
    """Item 1: the token and registry password live in the service's credentials only."""
    config = write(
        tmp_path / "c.yaml",
        {
            "registry": {"enabled": True, "email": "a@b.c", "harvests": {"onc_bacax_ctd": "h1"}},
            "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "streams": [{**STREAM, "formats": ["netcdf"]}],
        },
    )
    if command == "status":  # a harvest ran under the service's own credentials
        assert cli("status", "--config", str(config)).returncode == 1
        asyncio.run(create_store(f"sqlite:///{tmp_path / 'state.db'}"))
    result = cli(command, "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "onc.token" not in result.stderr
    assert "migrated_from" not in result.stderr  # item 6: not on every command
    assert ("ctd" if command == "status" else "onc_bacax_ctd") in result.stdout


def test_check_without_a_configuration_is_an_error() -> None:
    """Item 3: no file and no ONC_PIPELINE_CONFIG is not "configuration OK"."""
    result = cli("check")
    assert result.returncode == 2
    assert "--config" in result.stderr
    assert "ONC_PIPELINE_CONFIG" in result.stderr
    assert "configuration OK" not in result.stderr


def test_check_prints_the_dataset_id_each_stream_publishes(tmp_path: Path) -> None:
    """Item 6: `dataset_id: null` told nothing; the resolved id is what ERDDAP will see."""
    config = write(tmp_path / "c.yaml", {"onc": {"token": "t0k3n-value"}, "streams": [STREAM]})
    result = cli("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    stream = yaml.safe_load(result.stdout)["streams"][0]
    assert stream["dataset_id"] == "onc_bacax_ctd"


def test_emulator_help_shows_the_defaults_and_the_token() -> None:
    """Item 7."""
    out = " ".join(cli("emulator", "--help").stdout.split())
    assert "(default: demo-token)" in out
    assert "(default: 8080)" in out
    assert "(default: 8081)" in out
    assert "(default: 1)" in out


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("onc-pipeline:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_emulator_on_a_taken_port_says_which_and_how_to_change_it(taken_port: int) -> None:
    """Item 2."""
    line = one_line_error(cli("emulator", "--onc-port", str(taken_port), "--registry-port", "0"))
    assert f"port {taken_port}" in line
    assert "--onc-port" in line


def test_run_on_a_taken_ops_port_says_which_and_how_to_change_it(
    tmp_path: Path, taken_port: int
) -> None:
    """Item 2: the daemon's ops server (9108 by default)."""
    config = write(
        tmp_path / "c.yaml",
        {
            "onc": {"token": "t0k3n-value", "base_url": f"http://127.0.0.1:{free_port()}"},
            "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "output": {"root": str(tmp_path / "out")},
            "ops": {"bind": f"127.0.0.1:{taken_port}"},
            "daemon": {"window_workers": 0},
            "streams": [{**STREAM, "cadence": "1h"}],
        },
    )
    line = one_line_error(cli("run", "--config", str(config)))
    assert f"port {taken_port}" in line
    assert "ops.bind" in line


def test_demo_on_a_taken_port_says_which_and_how_to_change_it(
    tmp_path: Path, taken_port: int
) -> None:
    """Item 2: 8080 is also Tomcat's, so ERDDAP's."""
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    demo["onc"]["base_url"] = f"http://127.0.0.1:{taken_port}"
    demo["registry"]["base_url"] = f"http://127.0.0.1:{free_port()}"
    demo["ops"]["bind"] = f"127.0.0.1:{free_port()}"
    demo["state"]["url"] = f"sqlite:///{tmp_path / 'state.db'}"
    demo["output"]["root"] = str(tmp_path / "out")
    line = one_line_error(cli("demo", "--config", str(write(tmp_path / "demo.yaml", demo))))
    assert f"port {taken_port}" in line
    assert "ONC_PIPELINE_ONC__BASE_URL" in line


def test_the_daemon_says_when_each_stream_first_runs(tmp_path: Path) -> None:
    """Item 7: first passes are spread over the cadence; a silent wait looked like a hang."""
    config = write(
        tmp_path / "c.yaml",
        {
            "onc": {"token": "t0k3n-value", "base_url": f"http://127.0.0.1:{free_port()}"},
            "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "output": {"root": str(tmp_path / "out")},
            "ops": {"enabled": False},
            "logging": {"format": "json"},
            "daemon": {"window_workers": 0},
            "streams": [{**STREAM, "cadence": "1h"}],
        },
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ONC_", "CREDENTIALS_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--config", str(config)],
        cwd=REPO,
        env={**environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        added = next(json.loads(line) for line in proc.stdout if '"stream_added"' in line)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert 0 <= added["first_pass_in_s"] <= 3600
    assert added["first_pass_at"].endswith("Z")


def test_emulator_doc_matches_the_command_and_links_inside_the_repo() -> None:
    """Item 7: the doc gave another token and seed than the command, and a folder outside."""
    doc_path = REPO / "docs" / "dev" / "emulator.md"
    doc = doc_path.read_text()
    for target in re.findall(r"\]\(([^)#]+)\)|`(\.\./[^`]+)`", doc):
        link = next(t for t in target if t)
        if link.startswith("http"):
            continue
        resolved = (doc_path.parent / link).resolve()
        assert resolved.is_relative_to(REPO), link
        assert resolved.exists(), link
    assert "`demo-token`" in doc
    assert "`--seed`" in doc


def test_command_line_mistakes_are_not_called_configuration_and_come_together(
    tmp_path: Path,
) -> None:
    """Sibling of item 3: `--from x --to y` said "invalid configuration in c.yaml", once."""
    config = write(tmp_path / "c.yaml", {"onc": {"token": "t0k3n-value"}, "streams": [STREAM]})
    result = cli("backfill", "--config", str(config), "--stream", "nope", "--from", "x",
                 "--to", "y")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("onc-pipeline: invalid command line (3 problems):")
    for option in ("--stream:", "--from:", "--to:"):
        assert option in result.stderr


def test_console_lines_keep_the_whole_error() -> None:
    """Sibling of item 8: short lines, but never a shortened error."""
    from pipeline.logs import render_console

    error = "OncAuthError: 127: Invalid parameter value [token] status=401 url=http://h/api/x"
    line = render_console(None, "warning", {"event": "stream_pass_failed", "error": error})
    assert line.endswith(f"error={error!r}")


def test_a_failed_stream_says_what_to_do() -> None:
    """Sibling of item 6: `FAILED ctd: OncAuthError: 127 ...` named the error, not the fix."""
    from pipeline.cli import failure_line
    from pipeline.exceptions import OncAuthError
    from pipeline.onc.errors import OncNetworkError

    refused = OncAuthError("127: Invalid parameter value [token]", status=401, url="http://h/x")
    line = failure_line("ctd", refused)
    assert line.startswith("FAILED  ctd: OncAuthError: 127")
    assert "the Oceans API refused the token" in line
    assert "ONC_TOKEN" in line
    away = OncNetworkError("network failure: Cannot connect to host h:9", url="http://h:9/x")
    assert "check onc.base_url" in failure_line("ctd", away)


def test_erddap_config_names_the_streams_it_leaves_out(tmp_path: Path) -> None:
    """Sibling of item 1: a jsonl-only stream (once the default) silently got no ERDDAP entry."""
    only_jsonl = {**STREAM, "formats": ["jsonl"]}
    config = write(
        tmp_path / "c.yaml",
        {
            "streams": [
                only_jsonl,
                {**STREAM, "name": "nc", "dataset_id": "x", "formats": ["netcdf"]},
            ]
        },
    )
    result = cli("erddap-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert 'datasetID="x"' in result.stdout
    assert 'datasetID="onc_bacax_ctd"' not in result.stdout
    assert "stream ctd gets no ERDDAP dataset" in result.stderr
    assert "add netcdf, csv or parquet to formats" in result.stderr


def test_an_operator_lists_and_releases_quarantined_items(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = write(tmp_path / "c.yaml", {"streams": [STREAM], "state": {"url": url}})

    async def quarantine_two() -> None:
        async with open_state_store(url) as store:
            for key in ("window:20261120T000000Z_20261120T010000Z", "window:x"):
                await store.note_attempt("ctd", key, "OncMalformedReply")
                await store.quarantine("ctd", key, "OncMalformedReply", "page 3 unparseable")

    asyncio.run(quarantine_two())
    listed = cli("quarantine", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert (
        "window:20261120T000000Z_20261120T010000Z  OncMalformedReply  attempts=1" in listed.stdout
    )
    assert "page 3 unparseable" in listed.stdout

    # Releasing needs the stream; a key that is not quarantined is named with those that are.
    refused = cli("quarantine", "--config", str(config), "--release", "window:x")
    assert refused.returncode == 2
    assert "--stream" in refused.stderr
    wrong = cli("quarantine", "--config", str(config), "--stream", "ctd", "--release", "nope")
    assert wrong.returncode == 1
    assert "not quarantined in ctd: nope" in wrong.stderr
    assert "window:x" in wrong.stderr

    done = cli("quarantine", "--config", str(config), "--stream", "ctd", "--release", "window:x")
    assert done.returncode == 0, done.stderr
    assert "released ctd window:x" in done.stdout
    assert "backfill --stream ctd" in done.stdout
    left = cli("quarantine", "--config", str(config))
    assert "window:x" not in left.stdout
    assert "window:20261120T000000Z_20261120T010000Z" in left.stdout

    cli("quarantine", "--config", str(config), "--stream", "ctd", "--release-all")
    assert cli("quarantine", "--config", str(config)).stdout.strip() == "nothing is quarantined"
