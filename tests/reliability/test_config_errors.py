"""Invalid configurations through the real CLI: exit 2, the exact path and message, no traceback.

tests/unit/test_settings.py checks the loader's problem list; this table checks what an
operator sees: `onc-pipeline check` as a subprocess, YAML and environment mistakes alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TOKEN = "cfg-table-token-5d2e"
STREAM = {
    "name": "ctd",
    "kind": "scalardata",
    "location_code": "BACAX",
    "device_category_code": "CTD",
}
ARCHIVE = {"name": "wav", "kind": "archivefile", "device_code": "ICLISTENHF1560"}
PRODUCT = {
    "name": "tssd",
    "kind": "dataproduct",
    "device_code": "SBECTD16p7128",
    "data_product_code": "TSSD",
    "extension": "csv",
}


def cfg(**sections: Any) -> dict[str, Any]:
    """A configuration that is valid except for what the case puts in."""
    return {"onc": {"token": TOKEN, **sections.pop("onc", {})}, **sections}


# (id, YAML text or mapping, extra environment, path printed, message printed)
CASES: list[tuple[str, str | dict[str, Any], dict[str, str], str, str]] = [
    ("yaml syntax", "onc: [\n", {}, "config.yaml at line 2, column 1",
     "expected the node content, but found '<stream end>'"),
    ("top level list", "- a\n", {}, "config.yaml",
     "expected a mapping of sections at the top level"),
    ("unknown section", cfg(onk={}), {}, "onk", "unknown key (check the spelling)"),
    ("typo in key", cfg(onc={"max_concurency": 3}), {}, "onc.max_concurency",
     "unknown key (check the spelling)"),
    ("zero concurrency", cfg(onc={"max_concurrency": 0}), {}, "onc.max_concurrency",
     "Input should be greater than or equal to 1"),
    ("concurrency too high", cfg(onc={"max_concurrency": 100}), {}, "onc.max_concurrency",
     "Input should be less than or equal to 16"),
    ("bad duration", cfg(onc={"read_timeout": "soon"}), {}, "onc.read_timeout",
     'expected a duration like "30s" or "5m", got "soon"'),
    ("bad url", cfg(onc={"base_url": "data.oceannetworks.ca"}), {}, "onc.base_url",
     'expected an http(s) URL, got "data.oceannetworks.ca"'),
    ("bad state url", cfg(state={"url": "mysql://x"}), {}, "state.url",
     'expected sqlite:///PATH, postgresql://... or memory://, got "mysql://x"'),
    ("bad partition", cfg(output={"partition": "weekly"}), {}, "output.partition",
     "Input should be 'hourly', 'daily' or 'monthly'"),
    ("bad bind", cfg(ops={"bind": "9108"}), {}, "ops.bind",
     'expected "host:port" like "127.0.0.1:9108", got "9108"'),
    ("bad log level", cfg(logging={"level": "loud"}), {}, "logging.level",
     "Input should be 'debug', 'info', 'warning' or 'error'"),
    ("unknown kind", cfg(streams=[{**STREAM, "kind": "wat"}]), {}, "streams[0]",
     'unknown kind "wat"; expected one of scalardata, rawdata, archivefile, dataproduct'),
    ("missing kind", cfg(streams=[{"name": "x", "device_code": "D"}]), {}, "streams[0]",
     'missing "kind"; expected one of scalardata, rawdata, archivefile, dataproduct'),
    ("both addressings", cfg(streams=[{**STREAM, "device_code": "D"}]), {}, "streams[0]",
     "give either location_code and device_category_code, or device_code"),
    ("bad window", cfg(streams=[{**STREAM, "window": "7m"}]), {}, "streams[0].window",
     "expected a window between 1m and 1d that divides a day evenly, got 7m"),
    ("row limit too high", cfg(streams=[{**STREAM, "row_limit": 200_000}]), {},
     "streams[0].row_limit", "Input should be less than or equal to 100000"),
    ("bad format", cfg(streams=[{**STREAM, "formats": ["xlsx"]}]), {}, "streams[0].formats[0]",
     "Input should be 'jsonl', 'netcdf', 'csv', 'rawtext', 'jsonlcsv' or 'parquet'"),
    ("naive start", cfg(streams=[{**STREAM, "start": "2026-01-01T00:00:00"}]), {},
     "streams[0].start",
     'expected a UTC time ending in Z, like "2026-01-01T00:00:00Z", got "2026-01-01T00:00:00"'),
    ("duplicate names", cfg(streams=[STREAM, {**STREAM, "dataset_id": "other"}]), {},
     "streams[1].name", 'stream name "ctd" is also streams[0]\'s; stream names must be unique'),
    ("dpo option", cfg(streams=[{**PRODUCT, "options": {"qualityControl": 1}}]), {},
     "streams[0].options", "option names start with dpo_, got qualityControl"),
    ("archive key on scalar", cfg(streams=[{**STREAM, "file_extensions": ["wav"]}]), {},
     "streams[0].file_extensions", "unknown key (check the spelling)"),
    ("registry without password", cfg(registry={"enabled": True, "email": "a@b.c"}), {},
     "registry.password", "required when registry.enabled is true: set "
     "ONC_PIPELINE_REGISTRY__PASSWORD or the secret file registry_password; "
     "or set registry.dry_run: true"),
    ("harvest for unknown dataset",
     cfg(streams=[ARCHIVE], registry={"harvests": {"onc_nope": "h1"}}), {},
     "registry.harvests.onc_nope",
     'no stream publishes dataset "onc_nope"; known: onc_iclistenhf1560'),
    ("missing token", {"streams": [STREAM]}, {}, "onc.token",
     "required to harvest; set ONC_TOKEN, ONC_PIPELINE_ONC__TOKEN or the secret file onc_token"),
    ("env not an integer", cfg(), {"ONC_PIPELINE_ONC__MAX_CONCURRENCY": "abc"},
     "onc.max_concurrency",
     "Input should be a valid integer, unable to parse string as an integer"),
    ("env list not json", cfg(), {"ONC_PIPELINE_STREAMS": "[{"}, "ONC_PIPELINE_STREAMS",
     "expected JSON for a list or mapping: Expecting property name enclosed in double quotes: "
     "line 1 column 3 (char 2)"),
    ("env section not json", cfg(), {"ONC_PIPELINE_ONC": '{"token": "x'}, "ONC_PIPELINE_ONC",
     "expected JSON for a list or mapping: Unterminated string starting at: line 1 column 11 "
     "(char 10)"),
]  # fmt: skip


def run_cli(
    command: str, config: Path, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """`onc-pipeline COMMAND --config FILE` with only the given ONC_* variables."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ONC_", "CREDENTIALS_"))}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pipeline", command, "--config", str(config)],
        cwd=cwd,
        env={**environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_table_has_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("case", "data", "env", "path", "message"), CASES, ids=[c[0] for c in CASES]
)
def test_check_prints_path_and_message_and_exits_2(
    tmp_path: Path, case: str, data: str | dict[str, Any], env: dict[str, str], path: str,
    message: str,
) -> None:  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    # Run from the config's folder so a YAML error names it as the operator typed it.
    result = run_cli("check", Path("config.yaml"), env, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing resolved is printed for a refused configuration
    lines = result.stderr.splitlines()
    assert lines[0].startswith("onc-pipeline: invalid configuration in config.yaml ("), lines
    assert f"  {path}: {message}" in lines, result.stderr
    assert TOKEN not in result.stderr


@pytest.mark.parametrize("command", ["run", "once", "status", "erddap-config"])
def test_every_command_refuses_a_bad_config_the_same_way(tmp_path: Path, command: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg(streams=[{**STREAM, "cadence": "fast"}])))
    result = run_cli(command, config, {}, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert '  streams[0].cadence: expected a duration like "30s" or "5m", got "fast"' in (
        result.stderr.splitlines()
    )
    assert not (tmp_path / "state").exists(), "nothing is created for a refused configuration"


def test_an_unreadable_secret_file_is_a_config_error() -> None:
    """A secret mounted with the host's owner and mode 0600 (Docker's default for a file
    secret): the daemon's user cannot read it. That is the operator's to fix, so exit 2 with
    the path and what to do, never a PermissionError traceback."""
    uid = 65534 if os.geteuid() == 0 else os.geteuid()  # root reads anything: run as nobody
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        root.chmod(0o755)
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump({"streams": [STREAM]}))
        config.chmod(0o644)
        credentials = root / "credentials"
        credentials.mkdir(mode=0o755)
        secret = credentials / "onc_token"
        secret.write_text(TOKEN)
        # Owned by root and 0600 when the test runs as root (the child runs as nobody);
        # otherwise unreadable by its own owner.
        secret.chmod(0o600 if os.geteuid() == 0 else 0)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ONC_")}
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "check", "--config", str(config)],
            cwd=root,
            env={**environ, "PYTHONPATH": str(REPO), "CREDENTIALS_DIRECTORY": str(credentials)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            user=uid if os.geteuid() == 0 else None,
        )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1:] == [
        f"  onc.token: secret file {secret} cannot be read by uid {uid} (permission denied); "
        f"make it readable by that user (e.g. chown {uid} or a group it is in, mode 0440): "
        "see docs/operations.md, 'Giving the container its token'"
    ], result.stderr
    assert TOKEN not in result.stderr
