"""`onc-pipeline demo` as a user runs it: data appears, the registry is triggered, Ctrl-C stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_harvests_every_kind_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    onc, registry, ops = free_port(), free_port(), free_port()
    config["onc"]["base_url"] = f"http://127.0.0.1:{onc}"
    config["registry"]["base_url"] = f"http://127.0.0.1:{registry}"
    config["registry"]["debounce"] = "1s"
    config["ops"]["bind"] = f"127.0.0.1:{ops}"
    config["state"]["url"] = f"sqlite:///{tmp_path / 'state.db'}"
    config["output"]["root"] = str(tmp_path / "out")
    # A 1 s debounce keeps the test short; the config refuses that next to ERDDAP flags
    # (the catalog must not harvest before ERDDAP was flagged), so flags are off here.
    config["output"]["erddap_flag_dir"] = None
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "demo", "--config", str(path), "--log-format", "json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        kinds = {".jsonl", ".wav", ".csv"}
        while time.monotonic() < deadline:
            found = {p.suffix for p in (tmp_path / "out").rglob("*") if p.is_file()}
            if kinds <= found:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        else:
            pytest.fail(f"demo produced only {found}")
        time.sleep(3)  # one debounce period, so the registry trigger goes out
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "output files" in err
    assert str(tmp_path / "out") in err
    assert '"registry_trigger_sent"' in out
    assert '"daemon_stopped"' in out
