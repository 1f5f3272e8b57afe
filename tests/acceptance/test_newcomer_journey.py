"""Issue 19: an operator's first hour, scripted on a pseudo-terminal against the emulator.

The README's two commands, a hand-written configuration with three mistakes, `once`,
`status` and `erddap-config` without the token, a taken port for every command that listens,
the backfill bar beside log lines, and Ctrl-C on the demo, all through the real CLI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pexpect
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TOKEN = "demo-token"  # the emulator's default, as the README's newcomer would use it
ANSI_CLEAR = "\x1b[K"


def environment(**extra: str) -> dict[str, str]:
    """No ONC_* variable and no secret directory; dev.py reuses this very environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONC_", "CREDENTIALS_"))}
    env["ONC_PIPELINE_VENV"] = sys.prefix
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


def spawn(*argv: str, env: dict[str, str] | None = None, timeout: float = 30) -> Any:
    return pexpect.spawn(
        argv[0],
        list(argv[1:]),
        cwd=str(REPO),
        env=env or environment(),
        encoding="utf-8",
        codec_errors="replace",
        timeout=timeout,
        dimensions=(40, 200),
    )


def finish(child: Any, timeout: float = 60) -> tuple[int, str]:
    """Everything the command printed on its terminal, and its exit code."""
    child.expect(pexpect.EOF, timeout=timeout)
    child.close()
    output: str = child.before
    code = child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus
    return code, output


def onc_pipeline(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    return finish(spawn(sys.executable, "-m", "pipeline", *args, env=env))


def screen_lines(output: str) -> list[str]:
    """What a terminal shows: each `\\r` returns to column 0, ESC[K clears the line."""
    lines = []
    for raw in output.replace("\r\n", "\n").split("\n"):
        shown = ""
        for part in raw.split("\r"):
            if part.startswith(ANSI_CLEAR):
                shown, part = "", part[len(ANSI_CLEAR) :]
            shown = part + shown[len(part) :]
        lines.append(shown)
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture
def emulator() -> Iterator[str]:
    """`onc-pipeline emulator` as the README starts it, on ports the OS picks."""
    child = spawn(
        sys.executable, "-m", "pipeline", "emulator", "--onc-port", "0", "--registry-port", "0"
    )
    child.expect(r"Oceans API +(http://127\.0\.0\.1:\d+)")
    url = child.match.group(1)
    child.expect("IOOS registry")
    yield url
    child.sendintr()
    code, output = finish(child, timeout=20)
    assert code == 0, output
    assert "Traceback" not in output


def demo_config(root: Path, **ports: int) -> Path:
    """config/demo.yaml moved to free ports and a temporary folder."""
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    demo["onc"]["base_url"] = f"http://127.0.0.1:{ports.get('onc') or free_port()}"
    demo["registry"]["base_url"] = f"http://127.0.0.1:{free_port()}"
    demo["ops"]["bind"] = f"127.0.0.1:{ports.get('ops') or free_port()}"
    demo["state"]["url"] = f"sqlite:///{root / 'demo-state.db'}"
    demo["output"]["root"] = str(root / "demo-out")
    demo["output"]["erddap_flag_dir"] = str(root / "flag")
    demo["daemon"] = {"window_workers": 0}
    path = root / "demo.yaml"
    path.write_text(yaml.safe_dump(demo))
    return path


def one_line_error(code: int, output: str, port: int, option: str) -> None:
    assert code == 1, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("onc-pipeline:")]
    assert len(errors) == 1, output
    assert f"port {port}" in errors[0]
    assert option in errors[0]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_the_readme_commands(tmp_path: Path) -> None:
    """`python3 dev.py test` (on one small file, to stay fast) and `python3 dev.py run`,
    stopped with Ctrl-C: no traceback, and the banner's status command runs as printed."""
    code, output = finish(
        spawn("python3", "dev.py", "test", "tests/unit/test_progress.py", "-q", "-p",
              "no:cacheprovider"),
        timeout=120,
    )  # fmt: skip
    assert code == 0, output[-3000:]
    assert re.search(r"\d+ passed", output), output[-2000:]

    config = demo_config(tmp_path)
    demo = spawn("python3", "dev.py", "run", "--config", str(config), timeout=60)
    demo.expect("look at it:")
    demo.expect(r"\n +find [^\n]+\n +([^\n]+ status --config [^\r\n]+)\r?\n")
    status_command = demo.match.group(1).strip()
    demo.expect("daemon_started")
    status = finish(spawn(*shlex.split(status_command)))
    assert status[0] == 0, (status_command, status[1])
    assert "bacax-ctd" in status[1]
    demo.sendintr()
    code, output = finish(demo, timeout=60)
    assert code == 0, output[-3000:]
    assert "daemon_stopped" in output
    assert "Traceback" not in output
    assert "KeyboardInterrupt" not in output


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_first_configuration_against_the_emulator(tmp_path: Path, emulator: str) -> None:
    """Three mistakes at once; once, status and the disk agree; status and erddap-config
    without the token; the backfill bar beside log lines."""
    bad = tmp_path / "mine.yaml"
    bad.write_text(
        f"onc:\n  base_url: {emulator}\n  max_concurency: 2\n"
        "streams:\n"
        "  - {name: ctd, kind: scalardata, location_code: BACAX, device_category_code: CTD,"
        " cadence: fast}\n"
        "  - {name: ctd, kind: rawdata, device_code: RBRQUARTZ3BPR203659}\n"
    )
    code, output = onc_pipeline("check", "--config", str(bad))
    assert code == 2, output
    assert "(4 problems)" in output, output  # the three mistakes and the missing token
    for problem in ("onc.max_concurency:", "streams[0].cadence:", "streams[1].name:",
                    "onc.token:"):  # fmt: skip
        assert problem in output, output
    assert "Traceback" not in output

    start = (datetime.now(UTC) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:00:00Z")
    fixed = {
        "onc": {"base_url": emulator, "max_rate_per_s": 40},
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "output": {"root": str(tmp_path / "out")},
        "ops": {"enabled": False},
        "daemon": {"window_workers": 0},
        "streams": [
            {"name": "ctd", "kind": "scalardata", "location_code": "BACAX",
             "device_category_code": "CTD", "start": start,
             "formats": ["netcdf", "csv", "jsonl"]},
            {"name": "bpr", "kind": "rawdata", "device_code": "RBRQUARTZ3BPR203659",
             "start": start},
        ],
    }  # fmt: skip
    good = tmp_path / "fixed.yaml"
    good.write_text(yaml.safe_dump(fixed))
    with_token = environment(ONC_TOKEN=TOKEN)
    code, once = onc_pipeline("once", "--config", str(good), env=with_token)
    assert code == 0, once
    said = {
        m[1]: int(m[2])
        for m in re.finditer(r"^ok +(\S+): .*?(\d+) files, \d+ bytes", once, re.MULTILINE)
    }
    # Without the token, as an operator's shell is outside the service's credentials.
    code, status = onc_pipeline("status", "--config", str(good), "--json")
    assert code == 0, status
    listed = {row["name"]: row["files"] for row in json.loads(status)["streams"]}
    on_disk = {
        name: sum(1 for p in (tmp_path / "out" / dataset).rglob("*") if p.is_file())
        for name, dataset in (("ctd", "onc_bacax_ctd"), ("bpr", "onc_rbrquartz3bpr203659"))
    }
    assert said == listed == on_disk, (once, status)
    code, xml = onc_pipeline("erddap-config", "--config", str(good))
    assert code == 0, xml
    assert 'datasetID="onc_bacax_ctd"' in xml

    code, output = finish(
        spawn(sys.executable, "-m", "pipeline", "backfill", "--config", str(good),
              "--stream", "ctd", "--from", start, "--to",
              (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:00Z"),
              "--log-format", "console", env=with_token),
    )  # fmt: skip
    assert code == 0, output
    lines = screen_lines(output)
    bars = [line for line in lines if re.match(r"^ctd \[[#.]+\] \d+/\d+", line)]
    logs = [line for line in lines if re.match(r"^\d\d:\d\d:\d\d \w+ ", line)]
    assert bars, output
    assert any("window_harvested" in line for line in logs), output
    # Every line a person sees is a bar, a log line or the summary: never two run together.
    for line in lines:
        assert not (" ETA " in line and re.search(r"\d\d:\d\d:\d\d \w+ ", line)), line
    assert re.search(r"^ok +backfill ctd: \d+ windows", output, re.MULTILINE), output


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_taken_port_is_one_line_naming_it_and_the_way_out(
    tmp_path: Path, taken_port: int
) -> None:
    one_line_error(
        *onc_pipeline("emulator", "--onc-port", str(taken_port), "--registry-port", "0"),
        taken_port,
        "--onc-port",
    )
    config = demo_config(tmp_path, onc=taken_port)
    one_line_error(
        *onc_pipeline("demo", "--config", str(config)), taken_port, "ONC_PIPELINE_ONC__BASE_URL"
    )
    one_line_error(
        *finish(spawn("python3", "dev.py", "run", "--config", str(config))),
        taken_port,
        "ONC_PIPELINE_ONC__BASE_URL",
    )
    config = demo_config(tmp_path, ops=taken_port)
    one_line_error(*onc_pipeline("run", "--config", str(config)), taken_port, "ops.bind")
