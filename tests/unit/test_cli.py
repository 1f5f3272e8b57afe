"""The command line as a user meets it: help, check, exit codes (run as a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ONC_", "ONC_PIPELINE_"))}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_help_lists_every_command() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("run", "once", "backfill", "status", "check", "emulator", "demo"):
        assert command in result.stdout


def test_check_demo_prints_resolved_settings_with_secrets_masked() -> None:
    result = cli("check", "--config", "config/demo.yaml")
    assert result.returncode == 0, result.stderr
    assert "demo-token" not in result.stdout
    assert "emulator-password" not in result.stdout
    assert "token: '********'" in result.stdout
    assert "bacax-ctd" in result.stdout


def test_check_masks_secret_given_by_env() -> None:
    result = cli("check", "--config", "config/example.yaml", env={"ONC_TOKEN": "tok-abcdef-123"})
    assert result.returncode == 0, result.stderr
    assert "tok-abcdef-123" not in result.stdout + result.stderr


def test_three_mistakes_exit_2_with_three_messages_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "onc:\n  token: x1234\n  max_concurency: 3\nstreams:\n"
        "  - {name: a, kind: scalardata, location_code: BACAX, device_category_code: CTD,"
        " cadence: fast}\n"
        "  - {name: b, kind: rawdata, device_code: X, window: 7m}\n"
    )
    result = cli("check", "--config", str(config))
    assert result.returncode == 2
    assert "3 problems" in result.stderr
    assert "onc.max_concurency: unknown key" in result.stderr
    assert 'streams[0].cadence: expected a duration like "30s" or "5m", got "fast"' in result.stderr
    assert "streams[1].window:" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_from_environment_variable() -> None:
    result = cli("check", env={"ONC_PIPELINE_CONFIG": "config/demo.yaml"})
    assert result.returncode == 0
    assert "bacax-ctd" in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    assert cli("frobnicate").returncode == 2


@pytest.mark.parametrize("command", [["status"], ["backfill", "--stream", "x"]])
def test_bad_invocations_exit_2(command: list[str]) -> None:
    result = cli(*command, "--config", "/nonexistent.yaml")
    assert result.returncode == 2


def test_emulator_prints_its_urls_and_stops_on_sigterm() -> None:
    import signal
    import time

    environ = {k: v for k, v in os.environ.items() if not k.startswith("ONC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "emulator", "--onc-port", "0", "--registry-port", "0"],
        cwd=REPO,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first.startswith("Oceans API    http://127.0.0.1:")
    assert second.startswith("IOOS registry http://127.0.0.1:")
    assert proc.returncode == 0
    proc.stderr.close()  # type: ignore[union-attr]
    proc.stdout.close()


@pytest.mark.parametrize("doc", ["README.md", "docs/operations.md"])
def test_the_documented_erddap_snippet_is_what_erddap_config_prints(doc: str) -> None:
    result = cli("erddap-config", "--config", "config/example.yaml", env={"ONC_TOKEN": "t"})
    assert result.returncode == 0, result.stderr
    text = (REPO / doc).read_text(encoding="utf-8")
    marker = "<!-- erddap-config: config/example.yaml -->\n```xml\n"
    assert marker in text, f"{doc} should show the erddap-config snippet"
    shown = text.split(marker, 1)[1].split("```\n", 1)[0]
    assert shown == result.stdout


def test_the_start_up_is_frozen_out_of_the_collector_once_commands_run_their_loop() -> None:
    import asyncio
    import gc

    from pipeline.cli import _run

    async def collecting() -> bool:
        await asyncio.sleep(0)
        return gc.isenabled()

    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        # Collector on (main() called in-process, as here): nothing frozen.
        assert _run(collecting())
        assert gc.get_freeze_count() == frozen
        # Held back by `console_main`: the start-up's objects frozen, collections resume.
        gc.disable()
        assert _run(collecting())
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_command_gets_the_collector_back(tmp_path: Path) -> None:
    # The whole command line, as an operator starts it: `status` runs its loop with
    # collections on (they were held back through the start-up).
    probe = (
        "import gc, pipeline.cli as cli\n"
        "seen = []\n"
        "real = cli.asyncio.run\n"
        "def run(main):\n"
        "    seen.append(gc.isenabled())\n"
        "    return real(main)\n"
        "cli.asyncio.run = run\n"
        "import sys; sys.argv = ['onc-pipeline', 'status', '--config', sys.argv[1]]\n"
        "import atexit; atexit.register(lambda: print('collector during the loop:', seen))\n"
        "cli.console_main()\n"
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        "onc: {token: t}\n"
        f"state: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\n"
        f"output: {{root: '{tmp_path / 'out'}'}}\n"
        "streams: [{name: a, kind: scalardata, device_code: D, dataset_id: a}]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(config)], capture_output=True, text=True, timeout=60
    )
    assert "collector during the loop: [True]" in done.stdout, done.stderr[-2000:]
