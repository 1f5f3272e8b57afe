"""Harvest with a recognisable token and registry password through every path, then search
every byte the pipeline produced for them: zero hits.

Paths: `check`, `erddap-config`, the daemon under hostile and malformed faults with the
registry enabled and the ops server scraped, debug logging, a wrong token (401), a wrong
registry password, `once`, `status` and `status --json`. Searched: stdout and stderr of
every subprocess, the state database and its WAL, every output file, manifest.tsv, ERDDAP
flag files and the /metrics text. Searched for: the token, the password, the password's
SHA-256 hex (what the registry login sends) and every auth token the registry issued.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from pipeline.emulator import Emulator
from pipeline.emulator.registry import DEFAULT_HARVEST_IDS, DEFAULT_ORGANIZATION
from tests.reliability.conftest import (
    TOKEN,
    measure,
    small_workload,
    wait_exit,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Reg1stry-Pa55w0rd-q7Zx"
EMAIL = "secrets-test@example.org"
FLAG_KEY = "erddap-flag-key-c4f1"


# Runs the daemon as the CLI would (its logging, its secrets registered) with the archive
# pass replaced by one that crashes with secrets in the exception text: the traceback path.
CRASH_SCRIPT = """
import asyncio, sys
from pathlib import Path

import pipeline.engine.runner as runner
from pipeline.cli import _secret_values
from pipeline.daemon import run_daemon
from pipeline.logs import configure_logging
from pipeline.settings import load_settings

config = Path(__file__).with_name("config-base-traceback.yaml")
settings = load_settings(config, environ={})
configure_logging(level="debug", fmt="json", secrets=_secret_values(settings), stream=sys.stdout)
token = settings.onc.token.get_secret_value()
password = settings.registry.password.get_secret_value()


stop = asyncio.Event()


async def crash(*_, **__):
    # Stop once the failure has been logged, however long start-up took (a loaded machine).
    asyncio.get_running_loop().call_later(1, stop.set)
    url = f"{settings.onc.base_url}/api/archivefile/download?filename=x.wav&token={token}"
    raise RuntimeError(f"unexpected failure at {url} (login {password})")


runner.harvest_archive = crash


async def main():
    asyncio.get_running_loop().call_later(30, stop.set)  # a backstop, should it never crash
    return await run_daemon(settings, stop)


sys.exit(asyncio.run(main()))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    root: Path,
    name: str,
    *args: str,
    env: dict[str, str] | None = None,
    script: Path | None = None,
) -> Any:
    """`python -m pipeline ARGS` (or `python SCRIPT ARGS`) with stdout and stderr to
    `<root>/<name>.out|.err`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ONC_", "CREDENTIALS_"))}
    environ.update(env or {})
    program = [str(script)] if script is not None else ["-m", "pipeline"]
    with open(root / f"{name}.out", "wb") as out, open(root / f"{name}.err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, *program, *args],
            cwd=REPO,
            env={**environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=err,
        )


def configure(root: Path, base: dict[str, Any], emu: Emulator, **changes: Any) -> Path:
    """A config file derived from `base` with registry, ops and flags on."""
    data = yaml.safe_load(yaml.safe_dump(base))
    data["registry"] = {
        "enabled": True,
        "base_url": emu.registry_url,
        "email": EMAIL,
        "password": PASSWORD,
        "debounce": "10s",  # the least allowed with ERDDAP flags on
        "max_interval": "20s",
        "harvests": {"onc_bacax_ctd": DEFAULT_HARVEST_IDS[0]},
    }
    data["output"]["erddap_flag_dir"] = str(root / "flags")
    data["output"]["erddap_flag_key"] = FLAG_KEY
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values}
    name = "config-" + "-".join(sorted(changes)) if changes else "config-base"
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def haystacks(root: Path, configs: set[Path]) -> list[Path]:
    """Every file the runs produced: logs, state, outputs, manifests, flags (not our configs)."""
    return [p for p in root.rglob("*") if p.is_file() and p not in configs]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_no_secret_anywhere_after_every_path(
    live_emulator: Emulator, tmp_path: Path, reap: list[Any]
) -> None:
    emu = live_emulator
    emu.registry.add_user(EMAIL, PASSWORD, organizations=[DEFAULT_ORGANIZATION])
    harness = small_workload(tmp_path, emu)
    base = yaml.safe_load(harness.config.read_text())
    port = free_port()
    config = configure(tmp_path, base, emu, ops={"enabled": True, "bind": f"127.0.0.1:{port}"})
    configs = {harness.config, config}
    paths = 0

    async def finish(proc: Any, timeout: float = 60) -> int:  # noqa: ASYNC109
        nonlocal paths
        reap.append(proc)
        paths += 1
        return await wait_exit(proc, timeout)

    # check and erddap-config print the configuration (masked) and ERDDAP snippets.
    assert await finish(spawn(tmp_path, "check", "check", "--config", str(config))) == 0
    assert "********" in (tmp_path / "check.out").read_text()
    assert await finish(spawn(tmp_path, "erddap", "erddap-config", "--config", str(config))) == 0

    # The daemon at debug level under hostile and malformed faults, the registry on, the ops
    # server scraped while it works.
    emu.faults = {
        "seed": 4,
        "profile": "hostile",
        "rules": [
            {"kind": "malformed", "endpoint": "scalardata.*", "body": "html", "rate": 0.05},
            {"kind": "status", "endpoint": "registry:*", "status": 500, "rate": 0.2},
        ],
    }
    daemon = spawn(tmp_path, "daemon", "run", "--config", str(config), "--log-level", "debug")
    reap.append(daemon)
    metrics: list[str] = []
    async with aiohttp.ClientSession() as session:

        async def scrape() -> bool:
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as reply:
                    metrics.append(await reply.text())
                for route in ("/healthz", "/readyz"):
                    async with session.get(f"http://127.0.0.1:{port}{route}") as reply:
                        metrics.append(await reply.text())
            except aiohttp.ClientError:
                return False
            return True

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not emu.registry.triggers:
            await scrape()
            await asyncio.sleep(0.5)
        await scrape()
    assert emu.registry.triggers, "the registry was triggered (a login token was issued)"
    daemon.send_signal(signal.SIGTERM)
    assert await finish(daemon) == 0
    (tmp_path / "metrics.txt").write_text("\n".join(metrics))
    assert any("onc_pipeline" in m for m in metrics), "metrics were scraped"

    # A wrong registry password: login refused, logged, the harvest goes on.
    emu.faults = None
    # Without ERDDAP flags the registry may be told after 1 s, which keeps this run short.
    wrong_pw = configure(
        tmp_path,
        base,
        emu,
        registry={
            "password": PASSWORD[::-1],
            "debounce": "1s",
            # Either stream's new data triggers the login: the CTD's synthetic record may be
            # in an outage for longer than this test waits.
            "harvests": {
                "onc_bacax_ctd": DEFAULT_HARVEST_IDS[0],
                "onc_rbrquartz3bpr203659": DEFAULT_HARVEST_IDS[0],
            },
        },
        output={"erddap_flag_dir": None},
    )
    configs.add(wrong_pw)
    proc = spawn(tmp_path, "wrong-pw", "run", "--config", str(wrong_pw), "--log-level", "debug")
    reap.append(proc)
    await wait_for(
        lambda: any(
            r.endpoint.startswith("registry:") and r.status in (401, 403) for r in emu.requests
        ),
        40,
        "the registry refusing the wrong password",
    )
    await asyncio.sleep(1)  # let the refusal be logged
    proc.send_signal(signal.SIGTERM)
    assert await finish(proc) == 0

    # A wrong token: 401 on every request, `once` fails and says so.
    wrong_token = configure(tmp_path, base, emu, onc={"token": TOKEN[::-1]})
    configs.add(wrong_token)
    code = await finish(spawn(tmp_path, "wrong-token", "once", "--config", str(wrong_token)))
    assert code == 1
    assert "OncAuthError" in (tmp_path / "wrong-token.err").read_text()

    # The token from the environment, and then the read-only commands.
    env = {"ONC_TOKEN": TOKEN}
    assert await finish(spawn(tmp_path, "once", "once", "--config", str(config), env=env)) == 0
    assert await finish(spawn(tmp_path, "status", "status", "--config", str(config))) == 0
    assert (
        await finish(spawn(tmp_path, "status-json", "status", "--json", "--config", str(config)))
        == 0
    )
    assert list((tmp_path / "flags").iterdir()), "ERDDAP flag files were written"

    # A traceback: the daemon's own logging with a pass that crashes with an unexpected
    # error whose text carries the token, the password and a token URL.
    crash_config = tmp_path / "config-base-traceback.yaml"
    crash_config.write_text(config.read_text())
    configs.add(crash_config)
    script = tmp_path / "crash_script.py"
    script.write_text(CRASH_SCRIPT)
    configs.add(script)
    code = await finish(spawn(tmp_path, "traceback", env={"PYTHONPATH": str(REPO)}, script=script))
    crash_log = (tmp_path / "traceback.out").read_text()
    assert code == 0, (tmp_path / "traceback.err").read_text()[-2000:]
    assert '"stream_pass_crashed"' in crash_log
    assert '"exception"' in crash_log, "a traceback was rendered"
    assert "RuntimeError" in crash_log

    secrets = {
        "token": TOKEN,
        "reversed token": TOKEN[::-1],
        "password": PASSWORD,
        "wrong password": PASSWORD[::-1],
        "password sha256": hashlib.sha256(PASSWORD.encode()).hexdigest(),
        "wrong password sha256": hashlib.sha256(PASSWORD[::-1].encode()).hexdigest(),
        "flag key": FLAG_KEY,
    }
    issued = list(emu.registry.issued_tokens)
    assert issued, "the registry issued auth tokens"
    secrets.update({f"registry token {i}": t for i, t in enumerate(issued)})
    files = haystacks(tmp_path, configs)
    hits = [
        (label, str(path.relative_to(tmp_path)))
        for path in files
        for label, secret in secrets.items()
        if secret.encode() in path.read_bytes()
    ]
    assert hits == []
    assert any(p.suffix == ".nc" for p in files)
    assert any(p.name == "manifest.tsv" for p in files)
    assert any(p.name.startswith("state.db") for p in files)
    measure("secrets.command_runs", paths)
    measure("secrets.files_searched", len(files))
    measure("secrets.bytes_searched", sum(p.stat().st_size for p in files))
    measure("secrets.values_searched", len(secrets))
    measure("secrets.hits", len(hits))
